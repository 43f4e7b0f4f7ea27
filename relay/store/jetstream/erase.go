package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// Erase implements store.Eraser. Every key is removed with a stream purge
// of its subject, which drops the value, its history and any delete marker
// (a KV delete or purge would leave a marker whose subject names the user).
// KV has no multi-key transaction: an Erase that fails part-way leaves the
// rest in place, and running it again finishes it. Job messages and
// undecided index entries naming erased events are deleted too.
func (s *Store) Erase(ctx context.Context, workspace, user string) (store.Erased, error) {
	var out store.Erased
	if workspace == "" {
		return out, fmt.Errorf("erase: workspace: must not be empty")
	}
	wrap := func(err error) (store.Erased, error) {
		return out, fmt.Errorf("erase %s/%s: %w", workspace, user, err)
	}
	ws := tok(workspace)
	scope := ws + ".>"
	if user != "" {
		scope = ws + "." + tok(user) + ".*"
	}
	// Devices, with their token index entries and the roster.
	var purge []string
	err := scanBucket(ctx, s.dirStr, "dev."+scope, func(key string, val []byte) error {
		var d relay.Device
		if err := json.Unmarshal(val, &d); err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
		out.Devices++
		purge = append(purge, key, tokenKey(d.Workspace, d.Token))
		return nil
	})
	if err != nil {
		return wrap(err)
	}
	// Every device subject of the scope, also the delete markers of
	// devices removed before (their subject names the user).
	purge = append(purge, "dev."+scope)
	// Token move notices and the pending proof.
	if user != "" {
		purge = append(purge, "mov."+scope, proofKey(workspace, user))
	} else {
		purge = append(purge, "mov."+scope, "prf."+ws+".*")
	}
	if user != "" {
		purge = append(purge, rosterKey(workspace, user))
		if rev, err := getJSON(ctx, s.dir, prefsKey(workspace, user), &map[string]bool{}); err != nil {
			return wrap(err)
		} else if rev != 0 {
			out.Preferences = 1
			purge = append(purge, prefsKey(workspace, user))
		}
	} else {
		if err := scanBucket(ctx, s.dirStr, "pref."+ws+".*", func(key string, _ []byte) error {
			out.Preferences++
			purge = append(purge, key)
			return nil
		}); err != nil {
			return wrap(err)
		}
		if rev, err := getJSON(ctx, s.dir, settingsKey(workspace), &map[string]relay.Setting{}); err != nil {
			return wrap(err)
		} else if rev != 0 {
			out.Settings = 1
			purge = append(purge, settingsKey(workspace))
		}
		purge = append(purge, "roster."+ws+".*", "tok."+ws+".*")
	}
	// Devices first: no new job can be made for a device that is gone.
	if err := purgeKeys(ctx, s.dirStr, purge...); err != nil {
		return wrap(err)
	}
	recent := "rc." + ws + ".>"
	if user != "" {
		recent = recentKey(workspace, user)
	}
	if err := s.purgeRecent(ctx, recent); err != nil {
		return wrap(err)
	}

	// Events, with their answered marks, answer log entries and dead
	// letters.
	erased := map[relay.EventKey]bool{}
	purge = purge[:0]
	err = scanBucket(ctx, s.eventsStr, "ev."+ws+".*", func(key string, val []byte) error {
		var r eventRec
		if err := json.Unmarshal(val, &r); err != nil {
			return fmt.Errorf("decode %s: the event cannot be attributed to a user: %w", key, err)
		}
		if user != "" && r.Event.User != user {
			return nil
		}
		k := r.Event.Key()
		erased[k] = true
		purge = append(purge, key, answerKey(k.Workspace, k.ID))
		for _, j := range r.Jobs {
			if j.Dead != "" {
				purge = append(purge, deadKey(j.Dead))
			}
		}
		return nil
	})
	if err != nil {
		return wrap(err)
	}
	out.Events = len(erased)
	dead := map[string]bool{}
	err = scanBucket(ctx, s.eventsStr, "dl.*", func(key string, val []byte) error {
		var dl store.DeadLetter
		if err := json.Unmarshal(val, &dl); err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
		if dl.Event.Workspace == workspace && (user == "" || erased[dl.Event]) {
			dead[key] = true
		}
		return nil
	})
	if err != nil {
		return wrap(err)
	}
	for _, p := range purge {
		if strings.HasPrefix(p, "dl.") {
			dead[p] = true
		}
	}
	out.DeadLetters = len(dead)
	for k := range dead {
		purge = append(purge, k)
	}
	if err := purgeKeys(ctx, s.eventsStr, purge...); err != nil {
		return wrap(err)
	}
	if err := s.eraseMessages(ctx, erased); err != nil {
		return wrap(err)
	}
	// The answer log: one subject per event.
	for k := range erased {
		n, err := s.purgeAnswers(ctx, s.answerSubject(k))
		if err != nil {
			return wrap(err)
		}
		out.Answers += n
	}
	if user == "" { // answers of events pruned before
		n, err := s.purgeAnswers(ctx, s.subj.answers+"."+ws+".*")
		if err != nil {
			return wrap(err)
		}
		out.Answers += n
	}
	return out, nil
}

// purgeKeys purges the subjects of keys (or key filters) of a bucket.
func purgeKeys(ctx context.Context, str jetstream.Stream, keys ...string) error {
	pre := "$KV." + strings.TrimPrefix(str.CachedInfo().Config.Name, "KV_") + "."
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		if err := str.Purge(ctx, jetstream.WithPurgeSubject(pre+k)); err != nil {
			return fmt.Errorf("purge %s: %w", k, err)
		}
	}
	return nil
}

// purgeRecent purges user.recent counters (a key or a filter).
func (s *Store) purgeRecent(ctx context.Context, key string) error {
	str, err := s.js.Stream(ctx, "KV_"+strings.TrimPrefix(s.recent.Bucket(), "KV_"))
	if err != nil {
		return fmt.Errorf("recent counters: %w", err)
	}
	return purgeKeys(ctx, str, key)
}

// purgeAnswers purges an answer log subject (or filter) and returns how
// many answers it removed.
func (s *Store) purgeAnswers(ctx context.Context, subject string) (int, error) {
	info, err := s.answer.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, fmt.Errorf("answer log: %w", err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	if n == 0 {
		return 0, nil
	}
	if err := s.answer.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
		return 0, fmt.Errorf("answer log: purge: %w", err)
	}
	return n, nil
}

// eraseMessages deletes the job messages of erased events and takes them
// out of the undecided index (a message naming other events too is
// written again without them).
func (s *Store) eraseMessages(ctx context.Context, erased map[relay.EventKey]bool) error {
	if len(erased) == 0 {
		return nil
	}
	for seq := uint64(1); ; seq++ {
		msg, err := nextMsg(ctx, s.jobs, seq, s.subj.jobs+".>")
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("job messages: %w", err)
		}
		seq = msg.Sequence
		var m jobMsg
		if json.Unmarshal(msg.Data, &m) != nil || !erased[relay.EventKey{Workspace: m.Workspace, ID: m.ID}] {
			continue
		}
		if err := s.jobs.SecureDeleteMsg(ctx, seq); !msgGone(err) {
			return fmt.Errorf("job messages: delete %d: %w", seq, err)
		}
	}
	for seq := uint64(1); ; seq++ {
		msg, err := nextMsg(ctx, s.accept, seq, s.subj.accepted)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("undecided index: %w", err)
		}
		seq = msg.Sequence
		var m acceptedMsg
		if json.Unmarshal(msg.Data, &m) != nil {
			continue
		}
		keep := m.Keys[:0:0]
		for _, k := range m.Keys {
			if !erased[relay.EventKey{Workspace: k[0], ID: k[1]}] {
				keep = append(keep, k)
			}
		}
		if len(keep) == len(m.Keys) {
			continue
		}
		if len(keep) > 0 {
			if err := s.index(ctx, acceptedMsg{ReceivedAt: m.ReceivedAt, Keys: keep}); err != nil {
				return err
			}
		}
		if err := s.accept.SecureDeleteMsg(ctx, seq); !msgGone(err) {
			return fmt.Errorf("undecided index: delete %d: %w", seq, err)
		}
	}
}
