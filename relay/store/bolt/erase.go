package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// Erase implements store.Eraser in one write transaction: the erasure is
// all or nothing. Events are keyed by workspace and id, so a user's events
// are found by decoding the workspace's events; the answer log and dead
// letters are matched by the erased events (and, for answers, the user).
// bbolt reuses freed pages but does not zero them: the erased bytes stay
// in free pages of the file (and of backups copied from it) until they are
// overwritten; an offline `bbolt compact` writes a file without them
// (docs/operations.md).
func (s *Store) Erase(ctx context.Context, workspace, user string) (store.Erased, error) {
	if err := checkPart("workspace", workspace); err != nil {
		return store.Erased{}, fmt.Errorf("erase: %w", err)
	}
	if user != "" {
		if err := checkPart("user", user); err != nil {
			return store.Erased{}, fmt.Errorf("erase: %w", err)
		}
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return store.Erased{}, fmt.Errorf("erase: %w", err)
	}
	defer leave()
	// No count may write an erased user's counters back: counting waits
	// until the erasure is committed.
	s.recent.mu.Lock()
	defer s.recent.mu.Unlock()
	s.forgetRecent(workspace, user)
	defer s.devices.reset()
	var out store.Erased
	err = s.write(func(tx *bbolt.Tx) error {
		out = store.Erased{}
		scope := prefixKey(workspace) // a workspace's keys in devices and prefs
		if user != "" {
			scope = prefixKey(workspace, user)
		}
		var err error
		if out.Devices, err = eraseDevices(tx, workspace, user); err != nil {
			return err
		}
		// Token move notices, pending proofs (created on first use) and
		// the user.recent counters.
		for _, name := range [][]byte{bucketDeviceMoves, bucketTokenProofs, bucketRecent} {
			if b := tx.Bucket(name); b != nil {
				if _, err := deleteCounted(b, scope); err != nil {
					return err
				}
				if user != "" { // a proof's or counter's key is ws \0 user, without a trailing separator
					if err := b.Delete(joinKey(workspace, user)); err != nil {
						return err
					}
				}
			}
		}
		prefs := tx.Bucket(bucketPrefs)
		if user != "" {
			if prefs.Get(joinKey(workspace, user)) != nil {
				out.Preferences = 1
				if err := prefs.Delete(joinKey(workspace, user)); err != nil {
					return err
				}
			}
		} else {
			if out.Preferences, err = deleteCounted(prefs, scope); err != nil {
				return err
			}
			if tx.Bucket(bucketSettings).Get([]byte(workspace)) != nil {
				out.Settings = 1
				if err := tx.Bucket(bucketSettings).Delete([]byte(workspace)); err != nil {
					return err
				}
			}
		}
		erased, err := eraseEvents(s.wtx(tx), workspace, user)
		if err != nil {
			return err
		}
		out.Events = len(erased)
		if out.Answers, err = eraseAnswerLog(tx, workspace, user, erased); err != nil {
			return err
		}
		out.DeadLetters, err = eraseDeadLetters(tx, workspace, user, erased)
		return err
	})
	if err != nil {
		return store.Erased{}, fmt.Errorf("erase %s/%s: %w", workspace, user, err)
	}
	return out, nil
}

// eraseDevices deletes the workspace's devices of user (all with user
// ""), with their token index entries, and returns how many devices.
func eraseDevices(tx *bbolt.Tx, workspace, user string) (int, error) {
	if user == "" {
		if _, err := deleteCounted(tx.Bucket(bucketDeviceTokens), prefixKey(workspace)); err != nil {
			return 0, err
		}
		return deleteCounted(tx.Bucket(bucketDevices), prefixKey(workspace))
	}
	var keys [][]byte
	unreadable := false
	own := prefixKey(workspace, user)
	c := tx.Bucket(bucketDevices).Cursor()
	for k, v := c.Seek(own); k != nil && bytes.HasPrefix(k, own); k, v = c.Next() {
		keys = append(keys, bytes.Clone(k))
		if _, err := deviceToken(v); err != nil {
			unreadable = true
		}
	}
	for _, k := range keys {
		if _, err := deleteDeviceKey(tx, k); err != nil {
			return 0, err
		}
	}
	if unreadable {
		// A device whose token cannot be read may still have an index
		// entry, which names the user: find it by its key's tail.
		idx := tx.Bucket(bucketDeviceTokens)
		ws := prefixKey(workspace)
		var drop [][]byte
		c := idx.Cursor()
		for k, _ := c.Seek(ws); k != nil && bytes.HasPrefix(k, ws); k, _ = c.Next() {
			if len(k) > len(ws)+tokenHashLen && bytes.HasPrefix(k[len(ws)+tokenHashLen:], prefixKey(user)) {
				drop = append(drop, bytes.Clone(k))
			}
		}
		for _, k := range drop {
			if err := idx.Delete(k); err != nil {
				return 0, err
			}
		}
	}
	return len(keys), nil
}

// deleteCounted deletes b's keys under prefix and returns how many.
func deleteCounted(b *bbolt.Bucket, prefix []byte) (int, error) {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// eraseEvents deletes the workspace's events of user (all with user ""),
// with their undecided entry, decision, jobs, schedule entries and first
// answer. It returns the erased events' keys.
func eraseEvents(w *wtx, workspace, user string) (map[string]bool, error) {
	tx := w.tx
	events := tx.Bucket(bucketEvents)
	var keys [][]byte
	var seqs []uint64
	c := events.Cursor()
	prefix := prefixKey(workspace)
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		ev, err := decodeEvent(v)
		if err != nil {
			// Unreadable: it cannot be attributed to a user. Refuse
			// rather than report an erasure that may be incomplete.
			return nil, fmt.Errorf("event %q cannot be read: %w", k, err)
		}
		if user != "" && ev.Event.User != user {
			continue
		}
		seq, err := eventSeq(v)
		if err != nil {
			return nil, err
		}
		keys = append(keys, bytes.Clone(k))
		seqs = append(seqs, seq)
	}
	answers := tx.Bucket(bucketAnswers) // nil until the first answer
	erased := make(map[string]bool, len(keys))
	for i, k := range keys {
		jobs := append(bytes.Clone(k), sep)
		// Open jobs leave the schedule (counts, leases) first. A job
		// whose place cannot be read has no entry to remove: it is
		// erased all the same.
		type placed struct{ jk, place []byte }
		var open []placed
		jc := tx.Bucket(bucketJobs).Cursor()
		for jk, jv := jc.Seek(jobs); jk != nil && bytes.HasPrefix(jk, jobs); jk, jv = jc.Next() {
			if place, _ := jobPlace(jv); place != nil {
				open = append(open, placed{bytes.Clone(jk), bytes.Clone(place)})
			}
		}
		for _, o := range open {
			if err := moveSched(w, o.jk, o.place, nil, nil); err != nil {
				return nil, err
			}
		}
		if err := deletePrefix(tx.Bucket(bucketJobs), jobs); err != nil {
			return nil, err
		}
		for _, b := range []*bbolt.Bucket{tx.Bucket(bucketDecisions), events, answers} {
			if b != nil {
				if err := b.Delete(k); err != nil {
					return nil, err
				}
			}
		}
		if err := tx.Bucket(bucketUndecided).Delete(seqKey(seqs[i])); err != nil {
			return nil, err
		}
		erased[string(k)] = true
	}
	return erased, nil
}

// eraseAnswerLog deletes the answer log entries of erased events, and any
// other answer of the workspace given by user (all with user "").
func eraseAnswerLog(tx *bbolt.Tx, workspace, user string, erased map[string]bool) (int, error) {
	b := tx.Bucket(bucketAnswerLog)
	if b == nil {
		return 0, nil
	}
	var keys [][]byte
	err := b.ForEach(func(k, v []byte) error {
		var a relay.Answer
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("answer %x cannot be read: %w", k, err)
		}
		if a.Event.Workspace == workspace && (user == "" || a.User == user || erased[string(eventKey(a.Event))]) {
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// eraseDeadLetters deletes the dead letters of erased events (all of the
// workspace with user "").
func eraseDeadLetters(tx *bbolt.Tx, workspace, user string, erased map[string]bool) (int, error) {
	b := tx.Bucket(bucketDeadLetters)
	var keys [][]byte
	err := b.ForEach(func(k, v []byte) error {
		var dl store.DeadLetter
		if err := json.Unmarshal(v, &dl); err != nil {
			return errors.Join(fmt.Errorf("dead letter %x cannot be read", k), err)
		}
		if dl.Event.Workspace == workspace && (user == "" || erased[string(eventKey(dl.Event))]) {
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}
