package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// The audit log is a stream with one subject (subj.audit); the stream
// sequence is the entry's Seq. Entries are small and rare (operator and
// admin changes), so Audit reads them one by one from the newest.

func decodeAudit(msg *jetstream.RawStreamMsg) (relay.AuditEntry, error) {
	var e relay.AuditEntry
	if err := json.Unmarshal(msg.Data, &e); err != nil {
		return relay.AuditEntry{}, fmt.Errorf("decode audit entry %d: %w", msg.Sequence, err)
	}
	e.Seq = msg.Sequence
	return e, nil
}

// AppendAudit implements store.AuditLog.
func (s *Store) AppendAudit(ctx context.Context, e relay.AuditEntry) (relay.AuditEntry, error) {
	if err := store.CheckAuditEntry(&e); err != nil {
		return relay.AuditEntry{}, err
	}
	e.Seq = 0
	b, err := json.Marshal(e)
	if err != nil {
		return relay.AuditEntry{}, fmt.Errorf("append audit entry %s: %w", e.Action, err)
	}
	ack, err := s.js.Publish(ctx, s.subj.audit, b)
	if err != nil {
		return relay.AuditEntry{}, fmt.Errorf("append audit entry %s: %w", e.Action, err)
	}
	e.Seq = ack.Sequence
	return e, nil
}

// Audit implements store.AuditLog.
func (s *Store) Audit(ctx context.Context, f store.AuditFilter) ([]relay.AuditEntry, error) {
	if f.Limit <= 0 {
		return nil, fmt.Errorf("list audit entries: limit %d: must be positive", f.Limit)
	}
	limit := min(f.Limit, store.MaxAuditLimit)
	info, err := retryUnavailable(ctx, func() (*jetstream.StreamInfo, error) { return s.audit.Info(ctx) })
	if err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	out := []relay.AuditEntry{}
	first, seq := info.State.FirstSeq, info.State.LastSeq
	if f.Before != 0 && f.Before-1 < seq {
		seq = f.Before - 1
	}
	for ; seq >= first && seq > 0 && len(out) < limit; seq-- {
		msg, err := retryUnavailable(ctx, func() (*jetstream.RawStreamMsg, error) { return s.audit.GetMsg(ctx, seq) })
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // pruned meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("list audit entries: %w", err)
		}
		e, err := decodeAudit(msg)
		if err != nil {
			return nil, fmt.Errorf("list audit entries: %w", err)
		}
		if !f.Since.IsZero() && e.Time.Before(f.Since) {
			break
		}
		if f.Match(&e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// PruneAudit implements store.AuditLog: from the oldest entry, while
// entries are older than before, it deletes them.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int, error) {
	return s.deleteAudit(ctx, "prune audit log", func(e *relay.AuditEntry) (bool, bool) {
		older := e.Time.Before(before)
		return older, !older
	})
}

// EraseAudit implements store.AuditLog: it reads the log from the oldest
// entry and deletes the matching messages.
func (s *Store) EraseAudit(ctx context.Context, workspace, user string) (int, error) {
	if workspace == "" {
		return 0, errors.New("erase audit entries: workspace: must not be empty")
	}
	f := store.AuditFilter{Workspace: workspace, User: user}
	return s.deleteAudit(ctx, "erase audit entries", func(e *relay.AuditEntry) (bool, bool) {
		return f.Match(e), false
	})
}

// deleteAudit walks the audit log from the oldest entry and deletes the
// entries judge says to, until judge says stop or the log ends. what
// names the work in errors.
func (s *Store) deleteAudit(ctx context.Context, what string, judge func(e *relay.AuditEntry) (del, stop bool)) (int, error) {
	n := 0
	for seq := uint64(1); ; seq++ {
		msg, err := nextMsg(ctx, s.audit, seq, s.subj.audit)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("%s: %w", what, err)
		}
		seq = msg.Sequence
		e, err := decodeAudit(msg)
		if err != nil {
			return n, fmt.Errorf("%s: %w", what, err)
		}
		del, stop := judge(&e)
		if stop {
			return n, nil
		}
		if !del {
			continue
		}
		if err := s.audit.DeleteMsg(ctx, seq); !msgGone(err) {
			return n, fmt.Errorf("%s: delete %d: %w", what, seq, err)
		}
		n++
	}
}
