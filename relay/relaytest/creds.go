package relaytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File names WriteDevCredentials uses inside its directory.
const (
	DevAPNsKeyFile        = "AuthKey.p8"
	DevFCMCredentialsFile = "fcm-service-account.json"
	DevCAFile             = "fakes-ca.pem"
	DevCertFile           = "fakes-cert.pem"
	DevKeyFile            = "fakes-key.pem"
	DevJWTSecretFile      = "jwt.secret"
)

// Defaults of DevCredentialsOptions and DevFakesOptions.
const (
	DefaultDevProjectID = "demo-project"
	DefaultDevTokenURI  = "https://127.0.0.1:8444/token"
)

// DevCredentialsOptions says what WriteDevCredentials puts in the
// service-account file and the fakes' certificate. Empty fields take the
// defaults.
type DevCredentialsOptions struct {
	ProjectID   string   // default DefaultDevProjectID
	ClientEmail string   // default "relay-dev@<project>.iam.gserviceaccount.com"
	TokenURI    string   // default DefaultDevTokenURI (StartDevFakes' FakeFCM)
	Hosts       []string // names in the fakes' certificate; default 127.0.0.1, ::1, localhost
}

// DevCredentials are development secrets on disk, with their parsed forms.
type DevCredentials struct {
	Dir string

	APNsKeyFile string            // ECDSA P-256 auth key, PKCS#8 PEM (.p8)
	APNsKey     *ecdsa.PrivateKey // the same key, parsed

	FCMCredentialsFile string          // Google service-account JSON
	FCMKey             *rsa.PrivateKey // its private_key
	FCMProjectID       string
	FCMClientEmail     string
	FCMTokenURI        string

	CAFile      string          // the CA that signed the fakes' certificate (config ca_file)
	CertFile    string          // the fakes' certificate (PEM)
	KeyFile     string          // its key (PEM)
	Certificate tls.Certificate // the fakes' certificate, parsed
	CAPool      *x509.CertPool  // a pool holding the CA

	JWTSecretFile string // random HS256 secret for the app API (64 hex characters, no newline)
}

// WriteDevCredentials makes dir and writes any of the development files that
// are missing: AuthKey.p8, fcm-service-account.json, fakes-ca.pem with
// fakes-cert.pem and fakes-key.pem, and jwt.secret. Existing files are reused,
// so keys stay stable across runs; the service-account file is rewritten
// (with the same key) only when its project, client email or token_uri
// differ from opts. The secrets are left with mode 0600, the certificates
// 0644 and dir 0700, as relayd's permission checks want them.
func WriteDevCredentials(dir string, opts DevCredentialsOptions) (*DevCredentials, error) {
	if opts.ProjectID == "" {
		opts.ProjectID = DefaultDevProjectID
	}
	if opts.ClientEmail == "" {
		opts.ClientEmail = "relay-dev@" + opts.ProjectID + ".iam.gserviceaccount.com"
	}
	if opts.TokenURI == "" {
		opts.TokenURI = DefaultDevTokenURI
	}
	if len(opts.Hosts) == 0 {
		opts.Hosts = []string{"127.0.0.1", "::1", "localhost"}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("make credentials dir: %w", err)
	}
	c := &DevCredentials{
		Dir:                dir,
		APNsKeyFile:        filepath.Join(dir, DevAPNsKeyFile),
		FCMCredentialsFile: filepath.Join(dir, DevFCMCredentialsFile),
		CAFile:             filepath.Join(dir, DevCAFile),
		CertFile:           filepath.Join(dir, DevCertFile),
		KeyFile:            filepath.Join(dir, DevKeyFile),
		JWTSecretFile:      filepath.Join(dir, DevJWTSecretFile),
	}
	if err := c.apnsKey(); err != nil {
		return nil, err
	}
	if err := c.serviceAccount(opts); err != nil {
		return nil, err
	}
	if err := c.tls(opts.Hosts); err != nil {
		return nil, err
	}
	if err := c.jwtSecret(); err != nil {
		return nil, err
	}
	// Files written by an older version, or copied in, may be looser:
	// relayd refuses secrets others can read (relay/fsperm).
	for _, f := range []string{c.APNsKeyFile, c.FCMCredentialsFile, c.KeyFile, c.JWTSecretFile} {
		if err := os.Chmod(f, 0o600); err != nil {
			return nil, fmt.Errorf("restrict %s: %w", f, err)
		}
	}
	for _, f := range []string{c.CAFile, c.CertFile} {
		if err := os.Chmod(f, 0o644); err != nil {
			return nil, fmt.Errorf("restrict %s: %w", f, err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restrict %s: %w", dir, err)
	}
	return c, nil
}

func (c *DevCredentials) apnsKey() error {
	b, err := os.ReadFile(c.APNsKeyFile)
	if err == nil {
		k, perr := ParseAPNsKey(b)
		if perr != nil {
			return fmt.Errorf("read %s: %w", c.APNsKeyFile, perr)
		}
		c.APNsKey = k
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read APNs key: %w", err)
	}
	k, pemBytes, err := GenerateAPNsKey()
	if err != nil {
		return err
	}
	c.APNsKey = k
	return writeFile(c.APNsKeyFile, pemBytes, 0o600)
}

func (c *DevCredentials) serviceAccount(o DevCredentialsOptions) error {
	b, err := os.ReadFile(c.FCMCredentialsFile)
	var sa serviceAccount
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &sa); err != nil {
			return fmt.Errorf("parse %s: %w", c.FCMCredentialsFile, err)
		}
		k, err := parseRSAKey([]byte(sa.PrivateKey))
		if err != nil {
			return fmt.Errorf("parse %s: private_key: %w", c.FCMCredentialsFile, err)
		}
		c.FCMKey = k
	case errors.Is(err, fs.ErrNotExist):
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return fmt.Errorf("generate service-account key: %w", err)
		}
		c.FCMKey = k
	default:
		return fmt.Errorf("read service-account file: %w", err)
	}
	c.FCMProjectID, c.FCMClientEmail, c.FCMTokenURI = o.ProjectID, o.ClientEmail, o.TokenURI
	if err == nil && sa.ProjectID == o.ProjectID && sa.ClientEmail == o.ClientEmail && sa.TokenURI == o.TokenURI {
		return nil
	}
	out, err := ServiceAccountJSON(o.ProjectID, o.ClientEmail, o.TokenURI, c.FCMKey)
	if err != nil {
		return err
	}
	return writeFile(c.FCMCredentialsFile, out, 0o600)
}

func (c *DevCredentials) tls(hosts []string) error {
	caPEM, err1 := os.ReadFile(c.CAFile)
	certPEM, err2 := os.ReadFile(c.CertFile)
	keyPEM, err3 := os.ReadFile(c.KeyFile)
	if err := errors.Join(err1, err2, err3); err != nil {
		if !errors.Is(err1, fs.ErrNotExist) && !errors.Is(err2, fs.ErrNotExist) && !errors.Is(err3, fs.ErrNotExist) {
			return fmt.Errorf("read fakes certificate: %w", err)
		}
		ca, err := NewCA("edgerelay dev fakes CA")
		if err != nil {
			return err
		}
		leaf, err := NewLeaf(ca, "edgerelay dev fakes", hosts...)
		if err != nil {
			return err
		}
		caPEM, certPEM, keyPEM = ca.CertPEM, leaf.CertPEM, leaf.KeyPEM
		if err := errors.Join(writeFile(c.CAFile, caPEM, 0o644), writeFile(c.CertFile, certPEM, 0o644),
			writeFile(c.KeyFile, keyPEM, 0o600)); err != nil {
			return err
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("load %s: %w", c.CertFile, err)
	}
	c.Certificate = cert
	c.CAPool = x509.NewCertPool()
	if !c.CAPool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("load %s: no certificate found", c.CAFile)
	}
	return nil
}

func (c *DevCredentials) jwtSecret() error {
	if _, err := os.Stat(c.JWTSecretFile); err == nil {
		return nil
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("generate JWT secret: %w", err)
	}
	return writeFile(c.JWTSecretFile, []byte(hex.EncodeToString(b[:])), 0o600)
}

// GenerateAPNsKey returns a new APNs auth key (ECDSA P-256) and its .p8
// encoding (PKCS#8 PEM, "PRIVATE KEY"), as Apple hands them out.
func GenerateAPNsKey() (*ecdsa.PrivateKey, []byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate APNs key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal APNs key: %w", err)
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseAPNsKey parses a .p8 APNs auth key.
func ParseAPNsKey(pemBytes []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("parse APNs key: not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse APNs key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("parse APNs key: not an ECDSA key")
	}
	return ek, nil
}

type serviceAccount struct {
	Type                    string `json:"type"`
	ProjectID               string `json:"project_id"`
	PrivateKeyID            string `json:"private_key_id"`
	PrivateKey              string `json:"private_key"`
	ClientEmail             string `json:"client_email"`
	ClientID                string `json:"client_id"`
	AuthURI                 string `json:"auth_uri"`
	TokenURI                string `json:"token_uri"`
	AuthProviderX509CertURL string `json:"auth_provider_x509_cert_url"`
	UniverseDomain          string `json:"universe_domain"`
}

// ServiceAccountJSON renders a Google service-account credentials file for
// key, as the Google Cloud console downloads it, with the given token_uri.
func ServiceAccountJSON(projectID, clientEmail, tokenURI string, key *rsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("marshal service-account public key: %w", err)
	}
	kid := hex.EncodeToString(pub[len(pub)-20:])
	sa := serviceAccount{
		Type:                    "service_account",
		ProjectID:               projectID,
		PrivateKeyID:            kid,
		PrivateKey:              string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		ClientEmail:             clientEmail,
		ClientID:                "100000000000000000001",
		AuthURI:                 "https://accounts.google.com/o/oauth2/auth",
		TokenURI:                tokenURI,
		AuthProviderX509CertURL: "https://www.googleapis.com/oauth2/v1/certs",
		UniverseDomain:          "googleapis.com",
	}
	out, err := json.MarshalIndent(sa, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal service account: %w", err)
	}
	return append(out, '\n'), nil
}

func parseRSAKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("not PEM")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an RSA key")
	}
	return rk, nil
}

func writeFile(path string, b []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, b, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
