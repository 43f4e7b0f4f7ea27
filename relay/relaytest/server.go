package relaytest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"time"
)

// ServerOptions says where and how a fake listens. The zero value listens on
// a random 127.0.0.1 port with httptest's built-in certificate.
type ServerOptions struct {
	// Listener to serve on (TLS is added on top). Nil: 127.0.0.1:0.
	Listener net.Listener
	// Certificate the server presents. Nil: httptest's built-in
	// certificate for 127.0.0.1, ::1 and example.com.
	Certificate *tls.Certificate
	// MaxConcurrentStreams is the HTTP/2 stream limit advertised per
	// connection (0: Go's default, 250).
	MaxConcurrentStreams int
	// Seed seeds the random source of probability rules.
	Seed uint64
	// MaxRecorded is how many pushes to keep (the oldest half is dropped
	// when full); 0 means DefaultMaxRecorded.
	MaxRecorded int
	// OnPush, when set, is called after each push is recorded (from the
	// handler's goroutine).
	OnPush func(Push)
}

type connKey struct{}

// server is the HTTP/2 TLS plumbing shared by both fakes.
type server struct {
	ts      *httptest.Server
	url     string
	caPEM   []byte
	closing chan struct{}
	once    sync.Once
	rec     *recorder
	script  *script
}

func startServer(h http.Handler, o ServerOptions, clientAuth tls.ClientAuthType, clientCAs *x509.CertPool) (*server, error) {
	ln := o.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	s := &server{closing: make(chan struct{}), rec: newRecorder(o.MaxRecorded, o.OnPush), script: newScript(o.Seed)}
	ts := &httptest.Server{
		Listener:    ln,
		EnableHTTP2: true,
		Config: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          log.New(io.Discard, "", 0),
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				return context.WithValue(ctx, connKey{}, c)
			},
			ConnState: func(_ net.Conn, st http.ConnState) {
				if st == http.StateNew {
					s.rec.conns.Add(1)
				}
			},
		},
		TLS: &tls.Config{ClientAuth: clientAuth, ClientCAs: clientCAs, MinVersion: tls.VersionTLS12},
	}
	if o.MaxConcurrentStreams > 0 {
		ts.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: o.MaxConcurrentStreams}
	}
	if o.Certificate != nil {
		ts.TLS.Certificates = []tls.Certificate{*o.Certificate}
	}
	ts.StartTLS()
	s.ts = ts
	s.url = ts.URL
	if host, port, err := net.SplitHostPort(ln.Addr().String()); err == nil && (host == "127.0.0.1" || host == "::1") {
		s.url = "https://" + net.JoinHostPort(host, port)
	}
	s.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	return s, nil
}

// close stops the server: open requests end (their contexts are canceled)
// and connections are closed. Safe to call more than once.
func (s *server) close() {
	s.once.Do(func() {
		close(s.closing)
		s.ts.CloseClientConnections()
		s.ts.Close()
	})
}

// sleep waits d, or until the request or the server ends; it reports
// whether the full delay passed.
func (s *server) sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	s.rec.holding.Add(1)
	defer s.rec.holding.Add(-1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-s.closing:
	}
	return false
}

// act performs a rule's connection action; it reports whether one was taken
// (the handler must then return without writing).
func (s *server) act(r *http.Request, a Action) bool {
	switch a {
	case ActionCloseConn:
		if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
			c.Close()
		}
		return true
	case ActionResetStream:
		panic(http.ErrAbortHandler)
	}
	return false
}

func writeCA(path string, pemBytes []byte) error {
	if err := os.WriteFile(path, pemBytes, 0o644); err != nil {
		return fmt.Errorf("write CA file: %w", err)
	}
	return nil
}

// bearer returns the token of an "Authorization: Bearer x" header (any case).
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return "", false
	}
	return strings.TrimSpace(h[7:]), true
}
