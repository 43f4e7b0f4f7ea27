package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// bucketAudit is the audit log: 8-byte big-endian seq → JSON
// relay.AuditEntry. Created by the first append (an older file opens
// unchanged); reads treat it missing as empty.
var bucketAudit = []byte("audit_log")

// AppendAudit implements store.AuditLog.
func (s *Store) AppendAudit(ctx context.Context, e relay.AuditEntry) (relay.AuditEntry, error) {
	if err := store.CheckAuditEntry(&e); err != nil {
		return relay.AuditEntry{}, err
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return relay.AuditEntry{}, fmt.Errorf("append audit entry: %w", err)
	}
	defer leave()
	var out relay.AuditEntry
	err = s.write(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketAudit)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", bucketAudit, err)
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		out = e
		out.Seq = seq
		v, err := json.Marshal(out)
		if err != nil {
			return err
		}
		return b.Put(seqKey(seq), v)
	})
	if err != nil {
		return relay.AuditEntry{}, fmt.Errorf("append audit entry %s: %w", e.Action, err)
	}
	return out, nil
}

// Audit implements store.AuditLog: a walk from the newest entry (or
// f.Before) back to the first one older than f.Since.
func (s *Store) Audit(ctx context.Context, f store.AuditFilter) ([]relay.AuditEntry, error) {
	if f.Limit <= 0 {
		return nil, fmt.Errorf("list audit entries: limit %d: must be positive", f.Limit)
	}
	limit := min(f.Limit, store.MaxAuditLimit)
	leave, err := s.enter(ctx)
	if err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	defer leave()
	out := []relay.AuditEntry{}
	err = s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		if f.Before == 0 {
			k, v = c.Last()
		} else if k, v = c.Seek(seqKey(f.Before)); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev() // Seek lands at or after Before
		}
		for ; k != nil && len(out) < limit; k, v = c.Prev() {
			if err := s.stopped(ctx); err != nil {
				return err
			}
			var e relay.AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode audit entry %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if !f.Since.IsZero() && e.Time.Before(f.Since) {
				break
			}
			if f.Match(&e) {
				out = append(out, e)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	return out, nil
}

// PruneAudit implements store.AuditLog, in chunks of pruneChunk entries
// per transaction, from the oldest, stopping at the first newer entry.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int, error) {
	return s.pruneLog(ctx, bucketAudit, "audit log", before, func(v []byte) (time.Time, error) {
		var e struct {
			Time time.Time `json:"time"`
		}
		err := json.Unmarshal(v, &e)
		return e.Time, err
	})
}

// EraseAudit implements store.AuditLog: one transaction over the log
// (audit entries are few: operator and admin changes).
func (s *Store) EraseAudit(ctx context.Context, workspace, user string) (int, error) {
	if err := checkPart("workspace", workspace); err != nil {
		return 0, fmt.Errorf("erase audit entries: %w", err)
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return 0, fmt.Errorf("erase audit entries: %w", err)
	}
	defer leave()
	f := store.AuditFilter{Workspace: workspace, User: user}
	var n int
	err = s.write(func(tx *bbolt.Tx) error {
		n = 0
		b := tx.Bucket(bucketAudit)
		if b == nil {
			return nil
		}
		var drop [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var e relay.AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode audit entry %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if f.Match(&e) {
				drop = append(drop, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range drop {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(drop)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("erase audit entries: %w", err)
	}
	return n, nil
}
