package relaytest

import (
	"testing"
)

func FuzzParseJWT(f *testing.F) {
	key, _, err := GenerateAPNsKey()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(bearerFor(key, "K", "T"))
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJFUzI1NiJ9.e30.")
	f.Add("..")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := parseJWT(s)
		if err != nil {
			return
		}
		// Verification of arbitrary input must fail cleanly, never panic.
		_ = tok.verifyES256(&key.PublicKey)
		tok.num("iat")
		tok.str(tok.header, "kid")
	})
}
