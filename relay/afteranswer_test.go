package relay

import (
	"context"
	"slices"
	"testing"
)

// Work queued on a request's AfterAnswer runs once, in order, when the
// handler runs it; without one, or once it is closed, the caller runs it.
func TestAfterAnswer(t *testing.T) {
	if RunAfterAnswer(context.Background(), func() { t.Fatal("ran") }) {
		t.Fatal("queued on a context without an AfterAnswer")
	}
	ctx, a := WithAfterAnswer(context.Background())
	var got []int
	queue := func(i int) {
		t.Helper()
		if !RunAfterAnswer(ctx, func() { got = append(got, i) }) {
			t.Fatalf("work %d not queued", i)
		}
	}
	queue(0)
	queue(1)
	if len(got) != 0 || !a.Pending() {
		t.Fatalf("ran %v before the answer (pending %v)", got, a.Pending())
	}
	a.Run() // a batch's chunk: run what waits, keep queueing
	queue(2)
	if !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("Run ran %v, want 0, 1", got)
	}
	a.Close()
	a.Close()
	if !slices.Equal(got, []int{0, 1, 2}) || a.Pending() {
		t.Fatalf("ran %v, want 0, 1, 2 once each", got)
	}
	if RunAfterAnswer(ctx, func() {}) {
		t.Fatal("queued after Close: it would never run")
	}
}
