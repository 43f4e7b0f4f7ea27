package daemon

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/delivery"
	"github.com/edgerelay/edgerelay/relay/seal"
)

type recordingNotifier struct{ sent []*relay.Alert }

func (r *recordingNotifier) Notify(_ context.Context, _ relay.Device, a *relay.Alert) error {
	r.sent = append(r.sent, a)
	return nil
}

// TestSealingNotifier: which alert each device gets for each seal mode,
// and that a key that cannot be sealed to sends nothing rather than
// plaintext.
func TestSealingNotifier(t *testing.T) {
	cfg := config.Default()
	cfg.Notifications["req"] = &config.Notification{Type: "req", Seal: true, SealRequired: true}
	cfg.Notifications["on"] = &config.Notification{Type: "on", Seal: true}
	cfg.Notifications["off"] = &config.Notification{Type: "off"}
	k, _ := ecdh.X25519().GenerateKey(rand.Reader)
	keyed := relay.Device{ID: "k", PublicKey: base64.StdEncoding.EncodeToString(k.PublicKey().Bytes())}
	bare := relay.Device{ID: "b"}
	alert := func(typ string, silent bool) *relay.Alert {
		return &relay.Alert{EventID: "e1", Workspace: "acme", Type: typ, Title: "secret title", Body: "secret body",
			Data: map[string]string{"otp": "1"}, ThreadID: "t", ExpiresAt: time.Now().Add(time.Minute), Silent: silent}
	}
	const (
		plain = iota
		sealed
		generic
	)
	tests := []struct {
		name   string
		typ    string
		silent bool
		dev    relay.Device
		want   int
	}{
		{"required, keyless", "req", false, bare, generic},
		{"required, keyed", "req", false, keyed, sealed},
		{"required, silent withdraw", "req", true, bare, plain},
		{"true, keyless", "on", false, bare, plain},
		{"true, keyed", "on", false, keyed, sealed},
		{"false, keyed", "off", false, keyed, plain},
		{"unknown type", "nope", false, keyed, plain},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recordingNotifier{}
			a := alert(tc.typ, tc.silent)
			if err := (sealingNotifier{next: rec, cfg: cfg}).Notify(t.Context(), tc.dev, a); err != nil {
				t.Fatal(err)
			}
			if len(rec.sent) != 1 {
				t.Fatalf("%d sends", len(rec.sent))
			}
			got := rec.sent[0]
			switch tc.want {
			case plain:
				if got != a {
					t.Fatalf("sent %+v, want the alert unchanged", got)
				}
			case sealed:
				p, err := seal.Open(k, seal.BindingOf(got), got.Data[seal.DataKeySealed])
				if err != nil || p.Title != "secret title" || got.Title != seal.FallbackTitle || got.ThreadID != "" {
					t.Fatalf("sent %+v; opened %+v, %v", got, p, err)
				}
			case generic:
				if got.Title != seal.FallbackTitle || got.Body != seal.FallbackBody || got.ThreadID != "" ||
					len(got.Data) != 1 || got.Data[seal.DataKeyContent] != seal.ContentFetch {
					t.Fatalf("sent %+v, want the generic alert", got)
				}
			}
		})
	}
	// A stored key that no longer parses: a permanent failure, nothing sent.
	rec := &recordingNotifier{}
	err := (sealingNotifier{next: rec, cfg: cfg}).Notify(t.Context(), relay.Device{PublicKey: "not a key"}, alert("on", false))
	var de *delivery.Error
	if !errors.As(err, &de) || de.Outcome != delivery.Permanent || len(rec.sent) != 0 {
		t.Fatalf("err %v, %d sends", err, len(rec.sent))
	}
}
