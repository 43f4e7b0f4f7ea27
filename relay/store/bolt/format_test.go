package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// TestEventValueCarriesItsDecision: a format-3 events value holds the
// decision, and withDecision turns an undecided value of any format into
// the value a decided accept writes, keeping its seq.
func TestEventValueCarriesItsDecision(t *testing.T) {
	at := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	e := ev("acme", "evt-1")
	dec, err := encodeDecision(relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnabled},
		&relay.Alert{EventID: "evt-1", Workspace: "acme", Title: "Code", ExpiresAt: at})
	if err != nil {
		t.Fatal(err)
	}
	want := appendEvent(nil, e, at, dec)
	setEventSeq(want, 7)
	if _, d, err := eventParts(want); err != nil || !bytes.Equal(d, dec) {
		t.Fatalf("decision of a decided value: %x, %v", d, err)
	}
	if got, err := decodeEvent(want); err != nil || !reflect.DeepEqual(got.Event, e) || !got.ReceivedAt.Equal(at) {
		t.Fatalf("event of a decided value: %+v, %v", got, err)
	}
	if u, _, err := eventUser(want); err != nil || u != e.User {
		t.Fatalf("user of a decided value: %q, %v", u, err)
	}
	if err := checkEventValue(want); err != nil {
		t.Fatal(err)
	}

	undecided := map[string][]byte{"format 3": appendEvent(nil, e, at, nil), "format 2": format2(t, appendEvent(nil, e, at, nil))}
	js, err := jsonEvent(e, at)
	if err != nil {
		t.Fatal(err)
	}
	undecided["format 1"] = js
	for name, v := range undecided {
		setEventSeq(v, 7)
		if _, d, err := eventParts(v); err != nil || d != nil {
			t.Fatalf("%s undecided: decision %x, %v", name, d, err)
		}
		got, err := withDecision(v, dec)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s with its decision:\n got %x (%v)\nwant %x", name, got, err, want)
		}
	}
	// A decision whose length runs past the value is damage, not a panic.
	if _, _, err := eventParts(want[:eventHeaderLen+3]); err == nil {
		t.Error("a cut decision split without an error")
	}
}

// format2 rewrites a format-3 events value as relayd wrote it before
// 2026-12-07: format 2, the event's fields only (its decision, if any, went
// to the decisions bucket).
func format2(t *testing.T, v []byte) []byte {
	t.Helper()
	fields, _, err := eventParts(v)
	if err != nil {
		t.Fatal(err)
	}
	b := append([]byte{eventFormatSeparate}, v[1:eventHeaderLen]...)
	return append(b, fields...)
}

// jsonEvent is an undecided events value in format 1.
func jsonEvent(e relay.Event, at time.Time) ([]byte, error) {
	js, err := json.Marshal(eventValue{Event: e, ReceivedAt: at})
	return append([]byte{eventFormatJSON, 0, 0, 0, 0, 0, 0, 0, 0}, js...), err
}

// TestFormat2FileStillWorks: a file a relayd before format 3 wrote (events
// in format 2, decisions in their own bucket) reads, decides, leases and
// prunes as before, and the values it rewrites move to format 3.
func TestFormat2FileStillWorks(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	s, err := Open(path, Options{Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	d := relay.Device{Workspace: "acme", User: "u-42", ID: "phone", Platform: relay.PlatformIOS, Token: "tok", App: "demo"}
	if _, err := s.RegisterDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	addLeaseable(t, s, relay.PriorityHigh, "leased")
	mustAdd(t, s, ev("acme", "undecided"))
	done := ev("acme", "done")
	done.ExpiresAt = t0.Add(-time.Hour)
	j := job(done.Key(), "phone", relay.StateDelivered)
	if res, err := s.AddDecided(ctx, []relay.Event{done}, []*store.Decided{{Decision: relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnabled},
		Alert: &relay.Alert{EventID: "done", Workspace: "acme"}, Jobs: []relay.Job{j}}}, t0); err != nil || res[0] != nil {
		t.Fatalf("add done: %v %v", res, err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		events, decisions := tx.Bucket(bucketEvents), tx.Bucket(bucketDecisions)
		type kv struct{ k, v, d []byte }
		var old []kv
		err := events.ForEach(func(k, v []byte) error {
			_, d, err := eventParts(v)
			old = append(old, kv{bytes.Clone(k), format2(t, v), bytes.Clone(d)})
			return err
		})
		if err != nil {
			return err
		}
		for _, o := range old {
			if err := events.Put(o.k, o.v); err != nil {
				return err
			}
			if o.d != nil {
				if err := decisions.Put(o.k, o.d); err != nil {
					return err
				}
			}
		}
		return nil
	})

	s = openAt(t, path)
	key := func(id string) relay.EventKey { return relay.EventKey{Workspace: "acme", ID: id} }
	rec, err := s.Event(ctx, key("leased"))
	if err != nil || rec.Decision == nil || rec.Alert == nil || rec.Alert.EventID != "leased" {
		t.Fatalf("decided format-2 event: %+v, %v", rec, err)
	}
	if rec, err := s.Event(ctx, key("undecided")); err != nil || rec.Decision != nil {
		t.Fatalf("undecided format-2 event: %+v, %v", rec, err)
	}
	if err := s.Decide(ctx, key("leased"), relay.Decision{Verdict: relay.VerdictSuppress}, nil, nil); !errors.Is(err, relay.ErrConflict) {
		t.Fatalf("deciding a format-2 event decided before: %v, want ErrConflict", err)
	}
	ls, _, err := s.Lease(ctx, store.LeaseRequest{Lane: relay.Lane("demo", relay.PlatformIOS), Owner: "r1", Now: t0.Add(time.Second), TTL: time.Minute, Max: 5})
	if err != nil || len(ls) != 1 || ls[0].Alert == nil || ls[0].Alert.EventID != "leased" || ls[0].User != "u-42" {
		t.Fatalf("lease of a format-2 event's job: %+v, %v", ls, err)
	}

	uj := job(key("undecided"), "phone", relay.StateDelivered)
	if err := s.Decide(ctx, key("undecided"), relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnabled},
		&relay.Alert{EventID: "undecided", Title: "now"}, []relay.Job{uj}); err != nil {
		t.Fatal(err)
	}
	if rec, err := s.Event(ctx, key("undecided")); err != nil || rec.Alert == nil || rec.Alert.Title != "now" || rec.Event.User != "u-42" {
		t.Fatalf("format-2 event decided now: %+v, %v", rec, err)
	}

	if n, err := s.PruneEvents(ctx, t0); err != nil || n != 1 {
		t.Fatalf("prune: %d, %v; want the expired format-2 event pruned", n, err)
	}
	err = s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketDecisions).Get(eventKey(key("done"))); v != nil {
			t.Error("the pruned event's decision stayed in the decisions bucket")
		}
		if v := tx.Bucket(bucketEvents).Get(eventKey(key("undecided"))); v == nil || v[0] != eventFormat {
			t.Errorf("the event decided now is stored as %x, want format %d", v, eventFormat)
		}
		for err := range tx.Check() {
			t.Error(err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
