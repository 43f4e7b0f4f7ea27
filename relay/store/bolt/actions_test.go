package bolt

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
)

func answer(ws, id, device, action string, at time.Time) relay.Answer {
	return relay.Answer{Event: relay.EventKey{Workspace: ws, ID: id}, User: "u-42", DeviceID: device, Action: action, AnsweredAt: at}
}

func TestAnswerActionFirstWins(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a, err := s.AnswerAction(ctx, answer("acme", "evt-1", "d1", "approve", t0))
	if err != nil {
		t.Fatal(err)
	}
	if a.Seq != 1 || a.Action != "approve" || !a.AnsweredAt.Equal(t0) {
		t.Fatalf("first answer = %+v", a)
	}
	got, err := s.AnswerAction(ctx, answer("acme", "evt-1", "d2", "deny", t0.Add(time.Second)))
	if !errors.Is(err, relay.ErrConflict) {
		t.Fatalf("second answer err = %v, want ErrConflict", err)
	}
	if got != a {
		t.Fatalf("second answer returned %+v, want the stored %+v", got, a)
	}
	b, err := s.AnswerAction(ctx, answer("acme", "evt-2", "d1", "deny", t0.Add(2*time.Second)))
	if err != nil || b.Seq != 2 {
		t.Fatalf("other event: %+v, %v", b, err)
	}
	if _, err := s.AnswerAction(ctx, answer("acme", "", "d1", "deny", t0)); err == nil {
		t.Fatal("empty event id accepted")
	}
}

func TestAnswerActionConcurrent(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	const n = 50
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		won  []relay.Answer
		lost int
	)
	for i := range n {
		wg.Go(func() {
			ev := "evt-" + string(rune('a'+i%5))
			a, err := s.AnswerAction(ctx, answer("acme", ev, "d1", "approve", t0))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won = append(won, a)
			case errors.Is(err, relay.ErrConflict):
				lost++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(won) != 5 || lost != n-5 {
		t.Fatalf("won %d, lost %d; want 5 and %d", len(won), lost, n-5)
	}
	all, err := s.Answers(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Fatalf("log has %d answers, want 5", len(all))
	}
	for i, a := range all {
		if a.Seq != uint64(i+1) {
			t.Fatalf("answer %d has seq %d", i, a.Seq)
		}
	}
}

func TestAnswersPageAndPrune(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openAt(t, path)
	ctx := context.Background()
	if got, err := s.Answers(ctx, 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("empty store: %v, %v", got, err)
	}
	if n, err := s.PruneAnswers(ctx, t0); err != nil || n != 0 {
		t.Fatalf("prune empty: %d, %v", n, err)
	}
	for i := range 2500 {
		id := "evt-" + string(rune('A'+i/100)) + string(rune('a'+i%100/10)) + string(rune('0'+i%10))
		if _, err := s.AnswerAction(ctx, answer("acme", id, "d1", "approve", t0.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	page, err := s.Answers(ctx, 10, 5)
	if err != nil || len(page) != 5 || page[0].Seq != 11 || page[4].Seq != 15 {
		t.Fatalf("page after 10: %+v, %v", page, err)
	}
	if _, err := s.Answers(ctx, 0, 0); err == nil {
		t.Fatal("limit 0 accepted")
	}
	if got, _ := s.Answers(ctx, ^uint64(0), 5); len(got) != 0 {
		t.Fatalf("after max seq: %v", got)
	}
	// Answers 1..2100 were given before t0+2100s.
	n, err := s.PruneAnswers(ctx, t0.Add(2100*time.Second))
	if err != nil || n != 2100 {
		t.Fatalf("prune: %d, %v; want 2100", n, err)
	}
	rest, err := s.Answers(ctx, 0, 1000)
	if err != nil || len(rest) != 400 || rest[0].Seq != 2101 {
		t.Fatalf("after prune: %d answers, first %+v, %v", len(rest), rest[0], err)
	}
	// A pruned event still refuses a second answer.
	if _, err := s.AnswerAction(ctx, answer("acme", "evt-Aa0", "d2", "deny", t0)); !errors.Is(err, relay.ErrConflict) {
		t.Fatalf("answer to pruned event: %v, want ErrConflict", err)
	}
	// Sequence numbers survive a reopen and keep growing.
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := openAt(t, path)
	a, err := s2.AnswerAction(ctx, answer("acme", "evt-new", "d1", "deny", t0))
	if err != nil || a.Seq != 2501 {
		t.Fatalf("after reopen: %+v, %v", a, err)
	}
	checkDB(t, s2.db)
}

func TestRegisterDeviceTakesToken(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	dev := func(ws, user, id, token string) relay.Device {
		return relay.Device{Workspace: ws, User: user, ID: id, Platform: relay.PlatformIOS, Token: token, App: "demo", UpdatedAt: t0}
	}
	for _, d := range []relay.Device{
		dev("acme", "alice", "phone", "tok-1"),
		dev("acme", "alice", "old-id", "tok-1"),
		dev("acme", "alice", "tablet", "tok-2"),
		dev("other", "carol", "phone", "tok-1"), // another workspace: kept
		dev("acme", "dave", "phone", "tok-10"),  // prefix of nothing: kept
	} {
		if err := s.PutDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	taken, err := s.RegisterDevice(ctx, dev("acme", "bob", "phone", "tok-1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(taken) != 2 || taken[0].User != "alice" || taken[0].ID != "old-id" || taken[1].ID != "phone" {
		t.Fatalf("taken = %+v", taken)
	}
	if devs, _ := s.Devices(ctx, "acme", "alice"); len(devs) != 1 || devs[0].ID != "tablet" {
		t.Fatalf("alice keeps %+v", devs)
	}
	for _, k := range [][3]string{{"acme", "bob", "phone"}, {"other", "carol", "phone"}, {"acme", "dave", "phone"}} {
		if _, err := s.Device(ctx, k[0], k[1], k[2]); err != nil {
			t.Fatalf("device %v: %v", k, err)
		}
	}
	// Re-registering the same device with a new token replaces it and
	// takes nothing.
	taken, err = s.RegisterDevice(ctx, dev("acme", "bob", "phone", "tok-3"))
	if err != nil || len(taken) != 0 {
		t.Fatalf("re-register: %+v, %v", taken, err)
	}
	if d, _ := s.Device(ctx, "acme", "bob", "phone"); d.Token != "tok-3" {
		t.Fatalf("token = %q", d.Token)
	}
	if _, err := s.RegisterDevice(ctx, dev("acme", "bob", "x", "")); err == nil {
		t.Fatal("empty token accepted")
	}
}
