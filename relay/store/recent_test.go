package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestAppendRecentJSONMatchesEncodingJSON: the hand-written encoding of a
// user's counters is byte for byte what json.Marshal writes, for counters
// of every shape and keys and ids that need escaping.
func TestAppendRecentJSONMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	names := []string{"identity_verification", "otp_received", "a\"b", "<x>&y", "é", "tab\tnl\n", "\x00", ""}
	buckets := func() [][2]int64 {
		if r.IntN(3) == 0 {
			return nil
		}
		bs := make([][2]int64, r.IntN(5))
		for i := range bs {
			bs[i] = [2]int64{r.Int64N(1<<40) - 1<<39, r.Int64N(1000)}
		}
		return bs
	}
	cases := []map[string]*RecentCounter{nil, {}, {"t": nil}}
	for range 500 {
		m := map[string]*RecentCounter{}
		for range r.IntN(12) {
			c := &RecentCounter{Tens: buckets(), Mins: buckets()}
			if r.IntN(2) == 0 {
				c.Last = names[r.IntN(len(names))] + fmt.Sprint(r.IntN(100))
			}
			m[names[r.IntN(len(names))]+fmt.Sprint(r.IntN(3))] = c
		}
		cases = append(cases, m)
	}
	for _, m := range cases {
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendRecentJSON(nil, m); !bytes.Equal(got, want) {
			t.Fatalf("AppendRecentJSON(%v):\n got %s\nwant %s", m, got, want)
		}
	}
}

func BenchmarkAppendRecentJSON(b *testing.B) {
	m := map[string]*RecentCounter{
		"identity_verification": {Tens: [][2]int64{{1, 2}, {2, 5}, {3, 1}}, Mins: [][2]int64{{100, 8}, {101, 3}}, Last: "e-41"},
		"otp_received":          {Tens: [][2]int64{{3, 1}}, Mins: [][2]int64{{101, 1}}, Last: "e-40"},
	}
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			json.Marshal(m)
		}
	})
	b.Run("append", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = AppendRecentJSON(buf[:0], m)
		}
	})
}
