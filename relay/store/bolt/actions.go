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

// Buckets of the app API's state. They are created by the first write that
// needs them, so a file written by an older relayd opens unchanged; reads
// treat a missing bucket as empty.
//
//	bucket      key                    value
//	answers     ws \0 id               JSON relay.Answer (the first answer; pruned with its event)
//	answer_log  8-byte big-endian seq  JSON relay.Answer (pruned by PruneAnswers)
//	device_moves ws \0 user \0 id    JSON relay.DeviceMove (cleared when the id registers again)
//	token_proofs ws \0 user           JSON relay.TokenProof (one pending move per user)
var (
	bucketAnswers     = []byte("answers")
	bucketAnswerLog   = []byte("answer_log")
	bucketDeviceMoves = []byte("device_moves")
	bucketTokenProofs = []byte("token_proofs")
)

// pruneChunk bounds the log entries one PruneAnswers transaction deletes,
// so a large prune does not hold the writer for long.
const pruneChunk = 1000

// maxAnswersLimit caps Answers' limit.
const maxAnswersLimit = 10_000

// RegisterDevice registers or replaces d and, in the same transaction,
// removes every other device of d's workspace whose token equals d's (the
// token was taken by another user or device id), leaving a DeviceMove
// notice for each removed device of another user. It returns the removed
// devices.
func (s *Store) RegisterDevice(ctx context.Context, d relay.Device) ([]relay.Device, error) {
	return s.register(ctx, d, true, 0)
}

// RegisterUserDevice implements store.TokenMoves: RegisterDevice, but a
// token held by another user's device is refused (*relay.TokenHeldError).
func (s *Store) RegisterUserDevice(ctx context.Context, d relay.Device) ([]relay.Device, error) {
	return s.register(ctx, d, false, 0)
}

// RegisterDeviceLimit implements store.Directory: the user's devices are
// counted in the write transaction, so bbolt's single writer makes the
// limit exact.
func (s *Store) RegisterDeviceLimit(ctx context.Context, d relay.Device, limit int) ([]relay.Device, error) {
	return s.register(ctx, d, true, limit)
}

// RegisterUserDeviceLimit implements store.TokenMoves.
func (s *Store) RegisterUserDeviceLimit(ctx context.Context, d relay.Device, limit int) ([]relay.Device, error) {
	return s.register(ctx, d, false, limit)
}

func (s *Store) register(ctx context.Context, d relay.Device, moveUsers bool, limit int) ([]relay.Device, error) {
	if err := checkDeviceKey(d.Workspace, d.User, d.ID); err != nil {
		return nil, fmt.Errorf("register device: %w", err)
	}
	if d.Token == "" {
		return nil, errors.New("register device: token: must not be empty")
	}
	v, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("register device %s/%s/%s: %w", d.Workspace, d.User, d.ID, err)
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return nil, fmt.Errorf("register device %s/%s/%s: %w", d.Workspace, d.User, d.ID, err)
	}
	defer leave()

	self := joinKey(d.Workspace, d.User, d.ID)
	// The token's holders, from the token index (tokenidx.go): one seek,
	// whatever the workspace's size.
	prefix := tokenIndexPrefix(d.Workspace, d.Token)
	var taken []relay.Device
	err = s.write(func(tx *bbolt.Tx) error {
		taken = nil
		b := tx.Bucket(bucketDevices)
		if limit > 0 && b.Get(self) == nil {
			n, own := 0, prefixKey(d.Workspace, d.User)
			c := b.Cursor()
			for k, _ := c.Seek(own); k != nil && bytes.HasPrefix(k, own); k, _ = c.Next() {
				n++
			}
			if n >= limit {
				return fmt.Errorf("%w: %d of %d", store.ErrTooManyDevices, n, limit)
			}
		}
		var drop, stale [][]byte
		idx := tx.Bucket(bucketDeviceTokens)
		c := idx.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			dk := indexedDeviceKey(prefix, k)
			if bytes.Equal(dk, self) {
				continue
			}
			v := b.Get(dk)
			if v == nil {
				// Not written by this store (the index is kept in every
				// write of the devices): drop the entry rather than
				// refuse the token for good.
				stale = append(stale, bytes.Clone(k))
				continue
			}
			var o relay.Device
			if err := json.Unmarshal(v, &o); err != nil {
				return fmt.Errorf("decode device %q: %w", dk, err)
			}
			if o.Token != d.Token {
				if !bytes.Equal(tokenIndexKey(dk, o.Token), k) {
					stale = append(stale, bytes.Clone(k))
				}
				continue // or another token with the same hash prefix
			}
			if o.User != d.User && !moveUsers {
				return &relay.TokenHeldError{Holder: o}
			}
			taken = append(taken, o)
			drop = append(drop, dk)
		}
		for _, k := range stale {
			if err := idx.Delete(k); err != nil {
				return err
			}
		}
		for _, k := range drop {
			if _, err := deleteDeviceKey(tx, k); err != nil {
				return err
			}
		}
		moves, err := tx.CreateBucketIfNotExists(bucketDeviceMoves)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", bucketDeviceMoves, err)
		}
		for _, o := range taken {
			if o.User == d.User {
				continue
			}
			mv, err := json.Marshal(relay.DeviceMove{DeviceID: o.ID, Platform: o.Platform, App: o.App, Name: o.Name, MovedAt: d.UpdatedAt})
			if err != nil {
				return err
			}
			if err := moves.Put(joinKey(o.Workspace, o.User, o.ID), mv); err != nil {
				return err
			}
		}
		if err := moves.Delete(self); err != nil {
			return err
		}
		return putDeviceValue(tx, self, v)
	})
	var held *relay.TokenHeldError
	if errors.As(err, &held) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("register device %s/%s/%s: %w", d.Workspace, d.User, d.ID, err)
	}
	if len(taken) > 0 {
		// Removed devices leave the cache; a registration that removes
		// none keeps it (it is keyed by the stored bytes, so the new
		// value is never confused with the old).
		s.devices.reset()
	}
	return taken, nil
}

// DeviceMoves implements store.TokenMoves.
func (s *Store) DeviceMoves(ctx context.Context, workspace, user string) ([]relay.DeviceMove, error) {
	if err := errors.Join(checkPart("workspace", workspace), checkPart("user", user)); err != nil {
		return nil, fmt.Errorf("device moves: %w", err)
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return nil, fmt.Errorf("device moves of %s/%s: %w", workspace, user, err)
	}
	defer leave()
	out := []relay.DeviceMove{}
	err = s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDeviceMoves)
		if b == nil {
			return nil
		}
		prefix := prefixKey(workspace, user)
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var m relay.DeviceMove
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode device move %q: %w", k, err)
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("device moves of %s/%s: %w", workspace, user, err)
	}
	return out, nil
}

// PutTokenProof implements store.TokenMoves.
func (s *Store) PutTokenProof(ctx context.Context, p relay.TokenProof) error {
	if err := errors.Join(checkPart("workspace", p.Workspace), checkPart("user", p.User)); err != nil {
		return fmt.Errorf("put token proof: %w", err)
	}
	v, err := json.Marshal(p)
	if err != nil {
		return err
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return fmt.Errorf("put token proof: %w", err)
	}
	defer leave()
	err = s.write(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketTokenProofs)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", bucketTokenProofs, err)
		}
		return b.Put(joinKey(p.Workspace, p.User), v)
	})
	if err != nil {
		return fmt.Errorf("put token proof of %s/%s: %w", p.Workspace, p.User, err)
	}
	return nil
}

// TokenProof implements store.TokenMoves.
func (s *Store) TokenProof(ctx context.Context, workspace, user string) (relay.TokenProof, error) {
	return s.tokenProof(ctx, workspace, user, false)
}

// TakeTokenProof implements store.TokenMoves; bbolt's single writer makes
// the read and the delete one step.
func (s *Store) TakeTokenProof(ctx context.Context, workspace, user string) (relay.TokenProof, error) {
	return s.tokenProof(ctx, workspace, user, true)
}

func (s *Store) tokenProof(ctx context.Context, workspace, user string, take bool) (relay.TokenProof, error) {
	var p relay.TokenProof
	if err := errors.Join(checkPart("workspace", workspace), checkPart("user", user)); err != nil {
		return p, fmt.Errorf("token proof: %w", err)
	}
	k := joinKey(workspace, user)
	get := func(tx *bbolt.Tx) error {
		p = relay.TokenProof{}
		b := tx.Bucket(bucketTokenProofs)
		if b == nil {
			return relay.ErrNotFound
		}
		v := b.Get(k)
		if v == nil {
			return relay.ErrNotFound
		}
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		if take {
			return b.Delete(k)
		}
		return nil
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return p, fmt.Errorf("token proof of %s/%s: %w", workspace, user, err)
	}
	defer leave()
	if take {
		err = s.write(get)
	} else {
		err = s.db.View(get)
	}
	if err != nil {
		return relay.TokenProof{}, fmt.Errorf("token proof of %s/%s: %w", workspace, user, err)
	}
	return p, nil
}

// AnswerAction stores the first answer to a.Event and returns it with its
// sequence number. A later answer stores nothing and returns the stored
// one with an error wrapping relay.ErrConflict. Concurrent answers to one
// event are serialized by bbolt's single writer, so exactly one wins.
func (s *Store) AnswerAction(ctx context.Context, a relay.Answer) (relay.Answer, error) {
	if err := errors.Join(checkEventKey(a.Event), checkPart("user", a.User),
		checkPart("device_id", a.DeviceID), checkPart("action", a.Action)); err != nil {
		return relay.Answer{}, fmt.Errorf("answer action: %w", err)
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return relay.Answer{}, fmt.Errorf("answer action %s: %w", a.Event, err)
	}
	defer leave()

	k := eventKey(a.Event)
	var (
		out      relay.Answer
		conflict bool
	)
	err = s.write(func(tx *bbolt.Tx) error {
		out, conflict = relay.Answer{}, false
		idx, err := tx.CreateBucketIfNotExists(bucketAnswers)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", bucketAnswers, err)
		}
		logb, err := tx.CreateBucketIfNotExists(bucketAnswerLog)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", bucketAnswerLog, err)
		}
		if v := idx.Get(k); v != nil {
			conflict = true
			if err := json.Unmarshal(v, &out); err != nil {
				return fmt.Errorf("decode answer %s: %w", a.Event, err)
			}
			return nil
		}
		seq, err := logb.NextSequence()
		if err != nil {
			return fmt.Errorf("next answer sequence: %w", err)
		}
		out = a
		out.Seq = seq
		v, err := json.Marshal(out)
		if err != nil {
			return err
		}
		if err := idx.Put(k, v); err != nil {
			return err
		}
		return logb.Put(seqKey(seq), v)
	})
	if err != nil {
		return relay.Answer{}, fmt.Errorf("answer action %s: %w", a.Event, err)
	}
	if conflict {
		return out, fmt.Errorf("answer action %s: already answered %q: %w", a.Event, out.Action, relay.ErrConflict)
	}
	return out, nil
}

// Answers returns up to limit (at most 10,000) logged answers with
// Seq > afterSeq, in Seq order.
func (s *Store) Answers(ctx context.Context, afterSeq uint64, limit int) ([]relay.Answer, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("list answers: limit %d: must be positive", limit)
	}
	limit = min(limit, maxAnswersLimit)
	leave, err := s.enter(ctx)
	if err != nil {
		return nil, fmt.Errorf("list answers: %w", err)
	}
	defer leave()

	out := []relay.Answer{}
	err = s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAnswerLog)
		if b == nil || afterSeq == ^uint64(0) {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(seqKey(afterSeq + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			var a relay.Answer
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("decode answer %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list answers: %w", err)
	}
	return out, nil
}

// PruneAnswers deletes log entries answered before before, walking from
// the oldest sequence number and stopping at the first newer one (answers
// are logged in time order, give or take clock steps). The answers bucket,
// which makes later answers conflict, is kept. It returns how many entries
// it deleted.
func (s *Store) PruneAnswers(ctx context.Context, before time.Time) (int, error) {
	return s.pruneLog(ctx, bucketAnswerLog, "answers", before, func(v []byte) (time.Time, error) {
		var a struct {
			AnsweredAt time.Time `json:"answered_at"`
		}
		err := json.Unmarshal(v, &a)
		return a.AnsweredAt, err
	})
}

// Answered returns the first answer to an event, or relay.ErrNotFound.
func (s *Store) Answered(ctx context.Context, key relay.EventKey) (relay.Answer, error) {
	if err := checkEventKey(key); err != nil {
		return relay.Answer{}, fmt.Errorf("answered: %w", err)
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return relay.Answer{}, fmt.Errorf("answered %s: %w", key, err)
	}
	defer leave()
	var out relay.Answer
	err = s.db.View(func(tx *bbolt.Tx) error {
		idx := tx.Bucket(bucketAnswers)
		if idx == nil {
			return relay.ErrNotFound
		}
		v := idx.Get(eventKey(key))
		if v == nil {
			return relay.ErrNotFound
		}
		return json.Unmarshal(v, &out)
	})
	if err != nil {
		return relay.Answer{}, fmt.Errorf("answered %s: %w", key, err)
	}
	return out, nil
}
