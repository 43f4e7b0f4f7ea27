package bolt

import (
	"bytes"
	"slices"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// Jobs leased in an accept's write are handed out as soon as the write is
// queued, before it runs (see store.AcceptLeaser): a push then waits
// neither for the commit in progress, which on a slow disk took up to 15
// ms when its fsync stalled, nor for its own. So the leases are built
// before the write, from what it will write: the job, its event's user,
// alert and accept time, the device as registered, and the ticket the
// write gives the job (its place in the leased range, and its key).
//
// A duplicate must not send a push: an event already stored is found with
// a read, and one being accepted by another call, not yet committed, in
// s.accepting. Either way its jobs are not leased early; the write then
// finds the duplicate as always. (Two calls racing with one id still
// resolve in the write: the loser's jobs are not written, and the push
// its early lease sent is the at-least-once of a crash.)

// leaseEarly returns the leases of the jobs lease.Want names, built as the
// write will store them, and want with the jobs of events it cannot
// lease early cleared (already stored, or being accepted by another call,
// or posted earlier in this one: order is the events' indexes in key
// order, stable, as the write stores them). It marks the events it leased
// as being accepted: the caller removes held from s.accepting once the
// write returned.
func (s *Store) leaseEarly(events []relay.Event, keys [][]byte, order []int, decisions []*decision, decided []*store.Decided, receivedAt time.Time, lease *store.AcceptLease) (leased []store.Leased, held [][]byte, want [][]bool, err error) {
	want = slices.Clone(lease.Want)
	repeated := make([]bool, len(keys)) // a key posted earlier in this call
	for n := 1; n < len(order); n++ {
		repeated[order[n]] = bytes.Equal(keys[order[n]], keys[order[n-1]])
	}
	err = s.db.View(func(tx *bbolt.Tx) error {
		evb, devb := tx.Bucket(bucketEvents), tx.Bucket(bucketDevices)
		var dk []byte
		for i, d := range decisions {
			if d == nil || i >= len(want) || !slices.Contains(want[i], true) {
				continue
			}
			k := keys[i]
			if repeated[i] || evb.Get(k) != nil || !s.accepting.add(k) {
				want[i] = nil // the write decides; Lease sends what it stores
				continue
			}
			held = append(held, k)
			w := slices.Clone(want[i])
			want[i] = w
			e := &events[i]
			for j := range d.puts {
				p := &d.puts[j]
				if j >= len(w) || !w[j] {
					continue
				}
				if p.place == nil { // a job without a lane of its own: leased by Lease
					w[j] = false
					continue
				}
				l := store.Leased{Job: p.job, User: e.User, Alert: decided[i].Alert, AcceptedAt: receivedAt,
					Until: lease.Until, Ticket: append(leasedPlace(p.place, lease.Until), p.key...)}
				dk = appendJoined(dk[:0], []string{e.Workspace, e.User, p.job.DeviceID})
				if dv := devb.Get(dk); dv != nil {
					dev, err := s.devices.decode(dv)
					if err != nil {
						return err
					}
					l.Device = dev
				}
				leased = append(leased, l)
			}
		}
		return nil
	})
	if err != nil {
		s.accepting.remove(held)
		return nil, nil, nil, err
	}
	return leased, held, want, nil
}

// acceptingSet holds the keys of the events whose jobs were leased early
// by a write not yet returned.
type acceptingSet struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

// add marks k as being accepted, false if it already was.
func (a *acceptingSet) add(k []byte) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.keys[string(k)]; ok {
		return false
	}
	if a.keys == nil {
		a.keys = make(map[string]struct{})
	}
	a.keys[string(k)] = struct{}{}
	return true
}

func (a *acceptingSet) remove(keys [][]byte) {
	if len(keys) == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range keys {
		delete(a.keys, string(k))
	}
}
