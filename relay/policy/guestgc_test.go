package policy

import (
	"context"
	"testing"
	"time"
)

// A standard-Go guest runs only inside host calls, so its garbage
// collector's mark workers (goroutines) never ran unless the SDK yielded
// to them: a collection started and never finished, the heap grew with
// every call and the instance trapped "out of memory" at its limit —
// after about 200,000 calls of otp_redaction, after ~5,000 of this plugin,
// which allocates 64 KiB of garbage per call.
func TestGuestGarbageIsCollected(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go plugin")
	}
	w, err := buildGoPlugin(t.TempDir(), "./testdata/gogarbage")
	if err != nil {
		t.Fatal(err)
	}
	e := openEngine(t, Options{Timeout: time.Second, MemoryLimit: 32 << 20})
	p := mustLoad(t, e, "gogarbage", w)
	in := policyInput("gogarbage", &Manifest{})
	ctx := context.Background()
	const calls = 20000 // 1.25 GiB of garbage in a 32 MiB instance
	for i := range calls {
		if _, err := p.Evaluate(ctx, in); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if s := p.Stats(); s.Created != 1 || s.Failures != 0 {
		t.Fatalf("stats %+v: want one instance serving every call", s)
	}
}
