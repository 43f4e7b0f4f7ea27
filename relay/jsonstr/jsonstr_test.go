package jsonstr

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// TestAppendMatchesEncodingJSON: Append writes what json.Marshal writes for
// the same string, for the characters it escapes and random bytes
// (invalid UTF-8 included).
func TestAppendMatchesEncodingJSON(t *testing.T) {
	cases := []string{"", "plain", `a"b\c`, "<b>&amp;", "tab\tnl\nret\rbs\bff\f", "\x00\x1f\x7f",
		"é ü 漢", "\u2028\u2029", "\xff", "a\xc3", "\xed\xa0\x80"}
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		b := make([]byte, r.IntN(24))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := Append([]byte("x"), s); !bytes.Equal(got[1:], want) || got[0] != 'x' {
			t.Fatalf("Append(%q) = %s, want %s", s, got[1:], want)
		}
	}
}
