package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// DeadLetters returns up to limit dead letters, newest first, after the one
// with id after ("" starts at the newest).
func (s *Store) DeadLetters(ctx context.Context, after string, limit int) ([]store.DeadLetter, error) {
	var from []byte
	if after != "" {
		var err error
		if from, err = parseDeadLetterID(after); err != nil {
			return nil, fmt.Errorf("list dead letters: after: %w", err)
		}
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	defer leave()
	s.waitUnsynced() // the dead letters of the settles returned so far
	var out []store.DeadLetter
	err = s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketDeadLetters).Cursor()
		var k, v []byte
		if from == nil {
			k, v = c.Last()
		} else {
			k, v = c.Seek(from)
			if k == nil {
				k, v = c.Last()
			}
			for k != nil && bytes.Compare(k, from) >= 0 {
				k, v = c.Prev()
			}
		}
		for ; k != nil && len(out) < limit; k, v = c.Prev() {
			var dl store.DeadLetter
			if err := json.Unmarshal(v, &dl); err != nil {
				return fmt.Errorf("decode dead letter %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, dl)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// ReplayDeadLetter re-opens the dead letter's job as a fresh pending job
// (no attempts, due at now) and marks the dead letter replayed, in one
// commit. It fails with relay.ErrNotFound, store.ErrReplayed or
// relay.ErrExpired (the event's expires_at is not after now).
func (s *Store) ReplayDeadLetter(ctx context.Context, id string, now time.Time) (relay.Job, error) {
	dk, err := parseDeadLetterID(id)
	if err != nil {
		return relay.Job{}, fmt.Errorf("replay dead letter: %w: %w", relay.ErrNotFound, err)
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return relay.Job{}, fmt.Errorf("replay dead letter %s: %w", id, err)
	}
	defer leave()
	var out relay.Job
	var outcome error // an ordinary outcome (not found, replayed, expired)
	err = s.write(func(tx *bbolt.Tx) error {
		out, outcome = relay.Job{}, nil
		err := replayTx(s.wtx(tx), dk, now, &out)
		if errors.Is(err, relay.ErrNotFound) || errors.Is(err, store.ErrReplayed) || errors.Is(err, relay.ErrExpired) {
			// Reported through outcome, not by failing the commit: a
			// failed function makes bbolt re-run its whole batch.
			outcome, err = err, nil
		}
		return err
	})
	if err == nil {
		err = outcome
	}
	if err != nil {
		return relay.Job{}, fmt.Errorf("replay dead letter %s: %w", id, err)
	}
	return out, nil
}

// replayTx is ReplayDeadLetter's transaction.
func replayTx(w *wtx, dk []byte, now time.Time, out *relay.Job) error {
	tx := w.tx
	{
		b := tx.Bucket(bucketDeadLetters)
		dv := b.Get(dk)
		if dv == nil {
			return relay.ErrNotFound
		}
		var dl store.DeadLetter
		if err := json.Unmarshal(dv, &dl); err != nil {
			return fmt.Errorf("decode dead letter: %w", err)
		}
		if !dl.ReplayedAt.IsZero() {
			return fmt.Errorf("%w at %s", store.ErrReplayed, dl.ReplayedAt.Format(time.RFC3339))
		}
		ek := eventKey(dl.Event)
		ev := tx.Bucket(bucketEvents).Get(ek)
		if ev == nil {
			return fmt.Errorf("event %s: %w", dl.Event, relay.ErrNotFound)
		}
		evv, err := decodeEvent(ev)
		if err != nil {
			return err
		}
		if evv.Event.Expired(now) {
			return fmt.Errorf("event %s expired at %s: %w", dl.Event, evv.Event.ExpiresAt.Format(time.RFC3339), relay.ErrExpired)
		}
		jk := jobKey(dl.Event, dl.DeviceID)
		jv := tx.Bucket(bucketJobs).Get(jk)
		if jv == nil {
			return fmt.Errorf("job %s/%s: %w", dl.Event, dl.DeviceID, relay.ErrNotFound)
		}
		j, err := decodeJob(jk, jv)
		if err != nil {
			return err
		}
		if !j.State.Final() {
			return fmt.Errorf("job %s/%s is not finished: %w", dl.Event, dl.DeviceID, relay.ErrNotFound)
		}
		j.State, j.Attempts, j.LastError, j.NextAt, j.UpdatedAt = relay.StatePending, 0, "", time.Time{}, now
		scheduleLane(tx, &j)
		var alert *relay.Alert
		decv, err := decisionOf(tx, ek, ev)
		if err != nil {
			return err
		}
		if decv != nil {
			d, err := decodeDecision(decv)
			if err != nil {
				return err
			}
			alert = d.Alert
		}
		place := placeOf(&j, rankOf(alert))
		if err := history(tx, bucketJobs).Put(jk, appendJob(nil, &j, place)); err != nil {
			return fmt.Errorf("put job: %w", err)
		}
		if err := moveSched(w, jk, nil, place, nil); err != nil {
			return err
		}
		dl.ReplayedAt = now
		nv, err := json.Marshal(dl)
		if err != nil {
			return fmt.Errorf("encode dead letter: %w", err)
		}
		if err := b.Put(dk, nv); err != nil {
			return fmt.Errorf("put dead letter: %w", err)
		}
		*out = j
		return nil
	}
}
