package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgerelay/edgerelay/relay"
)

// maxAnswersLimit bounds one Answers call.
const maxAnswersLimit = 1000

func (s *Store) answerSubject(k relay.EventKey) string {
	return s.subj.answers + "." + tok(k.Workspace) + "." + tok(k.ID)
}

// AnswerAction implements store.AnswerLog. The answer log is a stream with
// one subject per event; the answer is published with "expected last
// sequence for this subject: 0", so the server itself lets exactly one
// answer per event in, numbered by the stream sequence (Seq). The answered
// mark in the event bucket keeps first-answer-wins once the log message
// is pruned; PruneAnswers writes it before it deletes a message.
func (s *Store) AnswerAction(ctx context.Context, a relay.Answer) (relay.Answer, error) {
	key := answerKey(a.Event.Workspace, a.Event.ID)
	a.Seq = 0
	b, err := json.Marshal(a)
	if err != nil {
		return relay.Answer{}, fmt.Errorf("answer %s: encode: %w", a.Event, err)
	}
	subj := s.answerSubject(a.Event)
	for attempt := range maxCAS {
		var stored relay.Answer
		rev, err := getJSON(ctx, s.events, key, &stored)
		if err != nil {
			return relay.Answer{}, fmt.Errorf("answer %s: %w", a.Event, err)
		}
		if rev != 0 {
			return stored, fmt.Errorf("answer %s: answered before: %w", a.Event, relay.ErrConflict)
		}
		ack, err := s.js.Publish(ctx, subj, b, jetstream.WithExpectLastSequencePerSubject(0))
		if isWrongLast(err) {
			// A replicated stream also refuses while another answer to
			// the event is in flight, not yet readable: read again.
			msg, gerr := retryUnavailable(ctx, func() (*jetstream.RawStreamMsg, error) {
				return s.answer.GetLastMsgForSubject(ctx, subj)
			})
			if errors.Is(gerr, jetstream.ErrMsgNotFound) {
				if err := backoff(ctx, attempt); err != nil {
					return relay.Answer{}, fmt.Errorf("answer %s: %w", a.Event, err)
				}
				continue
			}
			if gerr != nil {
				return relay.Answer{}, fmt.Errorf("answer %s: answered before, reading that answer: %w", a.Event, gerr)
			}
			stored, derr := decodeAnswer(msg)
			if derr != nil {
				return relay.Answer{}, fmt.Errorf("answer %s: %w", a.Event, derr)
			}
			return stored, fmt.Errorf("answer %s: answered before: %w", a.Event, relay.ErrConflict)
		}
		if err != nil {
			return relay.Answer{}, fmt.Errorf("answer %s: %w", a.Event, err)
		}
		a.Seq = ack.Sequence
		if _, err := putJSON(ctx, s.events, key, 0, &a); err != nil && !isWrongLast(err) {
			// The log holds the answer and guards it until pruned; the
			// prune writes the mark.
			s.log.Warn("answer: answered mark not written", relay.LogKeyEventID, a.Event.ID, relay.LogKeyError, err)
		}
		return a, nil
	}
	return relay.Answer{}, fmt.Errorf("answer %s: %w", a.Event, errTooManyConflicts)
}

func decodeAnswer(msg *jetstream.RawStreamMsg) (relay.Answer, error) {
	var a relay.Answer
	if err := json.Unmarshal(msg.Data, &a); err != nil {
		return relay.Answer{}, fmt.Errorf("decode answer %d: %w", msg.Sequence, err)
	}
	a.Seq = msg.Sequence
	return a, nil
}

// Answers implements store.AnswerLog.
func (s *Store) Answers(ctx context.Context, afterSeq uint64, limit int) ([]relay.Answer, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("list answers: limit %d: must be positive", limit)
	}
	limit = min(limit, maxAnswersLimit)
	out := []relay.Answer{}
	if afterSeq == ^uint64(0) {
		return out, nil
	}
	for seq := afterSeq + 1; len(out) < limit; seq++ {
		msg, err := nextMsg(ctx, s.answer, seq, s.subj.answers+".>")
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list answers: %w", err)
		}
		a, err := decodeAnswer(msg)
		if err != nil {
			return nil, fmt.Errorf("list answers: %w", err)
		}
		out = append(out, a)
		seq = msg.Sequence
	}
	return out, nil
}

// PruneAnswers implements store.AnswerLog: from the oldest answer, while
// answers are older than before, it makes sure the event's answered mark
// exists and deletes the log message.
func (s *Store) PruneAnswers(ctx context.Context, before time.Time) (int, error) {
	n := 0
	for seq := uint64(1); ; seq++ {
		msg, err := nextMsg(ctx, s.answer, seq, s.subj.answers+".>")
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("prune answers: %w", err)
		}
		seq = msg.Sequence
		a, err := decodeAnswer(msg)
		if err != nil {
			return n, fmt.Errorf("prune answers: %w", err)
		}
		if !a.AnsweredAt.Before(before) {
			return n, nil
		}
		if _, err := putJSON(ctx, s.events, answerKey(a.Event.Workspace, a.Event.ID), 0, &a); err != nil && !isWrongLast(err) {
			return n, fmt.Errorf("prune answers: answered mark of %s: %w", a.Event, err)
		}
		if err := s.answer.DeleteMsg(ctx, seq); !msgGone(err) {
			return n, fmt.Errorf("prune answers: delete %d: %w", seq, err)
		}
		n++
	}
}

// Answered implements store.AnswerLog: the answered mark, else the
// event's message in the answer log (the mark may not be written yet).
func (s *Store) Answered(ctx context.Context, key relay.EventKey) (relay.Answer, error) {
	var a relay.Answer
	rev, err := getJSON(ctx, s.events, answerKey(key.Workspace, key.ID), &a)
	if err != nil {
		return relay.Answer{}, fmt.Errorf("answered %s: %w", key, err)
	}
	if rev != 0 {
		return a, nil
	}
	msg, err := retryUnavailable(ctx, func() (*jetstream.RawStreamMsg, error) {
		return s.answer.GetLastMsgForSubject(ctx, s.answerSubject(key))
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return relay.Answer{}, fmt.Errorf("answered %s: %w", key, relay.ErrNotFound)
	}
	if err != nil {
		return relay.Answer{}, fmt.Errorf("answered %s: %w", key, err)
	}
	a, err = decodeAnswer(msg)
	if err != nil {
		return relay.Answer{}, fmt.Errorf("answered %s: %w", key, err)
	}
	return a, nil
}
