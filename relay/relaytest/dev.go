package relaytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// Default addresses of the development fakes.
const (
	DefaultDevAPNSAddr = "127.0.0.1:8443"
	DefaultDevFCMAddr  = "127.0.0.1:8444"
)

// DevFakesOptions configures StartDevFakes.
type DevFakesOptions struct {
	Dir       string // credentials directory (WriteDevCredentials); required
	APNSAddr  string // default DefaultDevAPNSAddr
	FCMAddr   string // default DefaultDevFCMAddr
	Topic     string // APNs topic the app config uses; required
	KeyID     string // APNs key id; required
	TeamID    string // APNs team id; required
	ProjectID string // FCM project; default DefaultDevProjectID
	// Output, when set, gets one line per push (Push.String).
	Output io.Writer
	// Logger, when set, logs one line per push at info level.
	Logger hclog.Logger
}

// DevFakes are both fakes serving on fixed addresses with the development
// certificate, for `make run`.
type DevFakes struct {
	APNs        *FakeAPNs
	FCM         *FakeFCM
	Credentials *DevCredentials

	stop func() bool
	once sync.Once
}

// StartDevFakes writes (or reuses) the development credentials in o.Dir,
// with token_uri https://<FCMAddr>/token, and serves FakeAPNs and FakeFCM on
// o.APNSAddr and o.FCMAddr with the certificate in fakes-cert.pem. The
// relay's config points its apns and fcm endpoints at them, with
// ca_file = fakes-ca.pem. The fakes stop when ctx ends or Close is called.
func StartDevFakes(ctx context.Context, o DevFakesOptions) (*DevFakes, error) {
	if o.APNSAddr == "" {
		o.APNSAddr = DefaultDevAPNSAddr
	}
	if o.FCMAddr == "" {
		o.FCMAddr = DefaultDevFCMAddr
	}
	if o.ProjectID == "" {
		o.ProjectID = DefaultDevProjectID
	}
	var missing []error
	for _, f := range []struct{ name, v string }{{"Dir", o.Dir}, {"Topic", o.Topic}, {"KeyID", o.KeyID}, {"TeamID", o.TeamID}} {
		if f.v == "" {
			missing = append(missing, fmt.Errorf("start dev fakes: %s: must not be empty", f.name))
		}
	}
	if err := errors.Join(missing...); err != nil {
		return nil, err
	}
	var outMu sync.Mutex
	onPush := func(p Push) {
		line := p.String()
		if o.Output != nil {
			outMu.Lock()
			fmt.Fprintln(o.Output, line)
			outMu.Unlock()
		}
		if o.Logger != nil {
			o.Logger.Info("push", "provider", p.Provider, "status", p.Status, "push", line)
		}
	}
	apnsLn, err := net.Listen("tcp", o.APNSAddr)
	if err != nil {
		return nil, fmt.Errorf("start dev fakes: listen APNs: %w", err)
	}
	fcmLn, err := net.Listen("tcp", o.FCMAddr)
	if err != nil {
		apnsLn.Close()
		return nil, fmt.Errorf("start dev fakes: listen FCM: %w", err)
	}
	creds, err := WriteDevCredentials(o.Dir, DevCredentialsOptions{
		ProjectID: o.ProjectID,
		TokenURI:  "https://" + fcmLn.Addr().String() + "/token",
	})
	if err != nil {
		apnsLn.Close()
		fcmLn.Close()
		return nil, fmt.Errorf("start dev fakes: %w", err)
	}
	d := &DevFakes{Credentials: creds}
	d.APNs, err = StartFakeAPNs(APNsOptions{
		ServerOptions: ServerOptions{Listener: apnsLn, Certificate: &creds.Certificate, OnPush: onPush},
		Topic:         o.Topic,
		AuthKey:       &creds.APNsKey.PublicKey,
		KeyID:         o.KeyID,
		TeamID:        o.TeamID,
	})
	if err != nil {
		apnsLn.Close()
		fcmLn.Close()
		return nil, fmt.Errorf("start dev fakes: %w", err)
	}
	d.FCM, err = StartFakeFCM(FCMOptions{
		ServerOptions:     ServerOptions{Listener: fcmLn, Certificate: &creds.Certificate, OnPush: onPush},
		ProjectID:         o.ProjectID,
		ServiceAccountKey: &creds.FCMKey.PublicKey,
		ClientEmail:       creds.FCMClientEmail,
		TokenURI:          creds.FCMTokenURI,
	})
	if err != nil {
		d.APNs.Close()
		fcmLn.Close()
		return nil, fmt.Errorf("start dev fakes: %w", err)
	}
	d.APNs.CAFile, d.FCM.CAFile = creds.CAFile, creds.CAFile
	d.stop = context.AfterFunc(ctx, d.shutdown)
	return d, nil
}

// Close stops both fakes. Safe to call more than once.
func (d *DevFakes) Close() {
	d.stop()
	d.shutdown()
}

func (d *DevFakes) shutdown() {
	d.once.Do(func() {
		d.APNs.Close()
		d.FCM.Close()
	})
}
