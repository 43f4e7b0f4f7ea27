package fcm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"golang.org/x/oauth2/jwt"
)

// tokenSource exchanges the service account's signed assertion for access
// tokens at the credentials file's token_uri, caches them, and fetches under
// the sending request's context so a send's deadline bounds the exchange.
type tokenSource struct {
	cfg    *jwt.Config
	client *http.Client // trusts ca_file
	lock   chan struct{}
	cur    atomic.Pointer[oauth2.Token]
}

func newTokenSource(credJSON []byte, client *http.Client) (*tokenSource, error) {
	var f struct {
		Type        string `json:"type"`
		ClientEmail string `json:"client_email"`
		PrivateKey  string `json:"private_key"`
		TokenURI    string `json:"token_uri"`
	}
	if err := json.Unmarshal(credJSON, &f); err != nil {
		return nil, fmt.Errorf("parse credentials: %w", err)
	}
	switch {
	case f.Type != "service_account":
		return nil, fmt.Errorf("type: %q, want \"service_account\"", f.Type)
	case f.ClientEmail == "":
		return nil, errors.New("client_email: must not be empty")
	case f.PrivateKey == "":
		return nil, errors.New("private_key: must not be empty")
	}
	cfg, err := google.JWTConfigFromJSON(credJSON, Scopes...)
	if err != nil {
		return nil, fmt.Errorf("parse credentials: %w", err)
	}
	return &tokenSource{cfg: cfg, client: client, lock: make(chan struct{}, 1)}, nil
}

// token returns a valid access token, fetching one if needed.
func (s *tokenSource) token(ctx context.Context) (*oauth2.Token, error) {
	if t := s.cur.Load(); t.Valid() {
		return t, nil
	}
	select {
	case s.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.lock }()
	if t := s.cur.Load(); t.Valid() {
		return t, nil
	}
	t, err := s.cfg.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, s.client)).Token()
	if err != nil {
		return nil, err
	}
	s.cur.Store(t)
	return t, nil
}

// drop forgets t if it is still the cached token, so the next call fetches
// a new one.
func (s *tokenSource) drop(t *oauth2.Token) { s.cur.CompareAndSwap(t, nil) }

// authTransport adds the bearer token to each FCM request. When the token
// endpoint refuses the credentials (4xx), it answers the request itself with
// a 401 UNAUTHENTICATED in Google's error format, so the SDK neither retries
// nor hides the cause behind an "unknown error".
type authTransport struct {
	base   http.RoundTripper
	tokens *tokenSource
}

func (t *authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, err := t.tokens.token(r.Context())
	if err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500 {
			return unauthenticated(r, fmt.Sprintf("fetch oauth2 token: %v", err)), nil
		}
		return nil, fmt.Errorf("fetch oauth2 token: %w", err)
	}
	r2 := r.Clone(r.Context())
	r2.Header.Set("Authorization", tok.Type()+" "+tok.AccessToken)
	resp, err := t.base.RoundTrip(r2)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || refusedAPNsKey(resp) {
		return resp, err
	}
	// FCM refused the access token itself (revoked, the key rotated, the
	// clock off): forget it, or every send fails until a restart. Try once
	// more with a fresh one when the body can be sent again.
	t.tokens.drop(tok)
	if r.Body != nil && r.GetBody == nil {
		return resp, nil
	}
	fresh, ferr := t.tokens.token(r.Context())
	if ferr != nil || fresh.AccessToken == tok.AccessToken {
		return resp, nil
	}
	r3 := r.Clone(r.Context())
	if r.GetBody != nil {
		body, gerr := r.GetBody()
		if gerr != nil {
			return resp, nil
		}
		r3.Body = body
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	r3.Header.Set("Authorization", fresh.Type()+" "+fresh.AccessToken)
	return t.base.RoundTrip(r3)
}

// refusedAPNsKey reports whether a 401 is FCM's THIRD_PARTY_AUTH_ERROR (the
// APNs key uploaded to Firebase is bad), which a new access token does not
// cure. It peeks at the body and leaves it readable.
func refusedAPNsKey(resp *http.Response) bool {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), resp.Body), resp.Body}
	return bytes.Contains(b, []byte("THIRD_PARTY_AUTH_ERROR"))
}

func unauthenticated(r *http.Request, msg string) *http.Response {
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"code": http.StatusUnauthorized, "status": "UNAUTHENTICATED", "message": msg,
	}})
	return &http.Response{
		Status:        "401 Unauthorized",
		StatusCode:    http.StatusUnauthorized,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       r,
	}
}
