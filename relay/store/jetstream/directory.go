package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgerelay/edgerelay/relay"
)

// tokenHolder is the value of a token index key: the device that holds a
// push token in a workspace. It is a hint, checked against the device.
type tokenHolder struct {
	User string `json:"user"`
	ID   string `json:"device_id"`
}

func (s *Store) getDevice(ctx context.Context, ws, user, id string) (relay.Device, uint64, error) {
	var d relay.Device
	rev, err := getJSON(ctx, s.dir, deviceKey(ws, user, id), &d)
	return d, rev, err
}

// RegisterDevice implements store.Directory. KV has no multi-key
// transaction, so the write is ordered to be safe at every step: first
// the holder of the token in the token index loses the device (if it
// still holds the token: compare-and-set delete), then the index names
// the new holder (compare-and-set), then the device is written. A relay
// dying in between leaves at worst a device removed whose successor is
// not yet registered (the app registers again) or an index entry naming
// a device that does not hold the token (checked on use).
// A removed device of another user leaves a DeviceMove notice, written
// after the removal (a relay dying in between loses the notice, never the
// move's safety).
func (s *Store) RegisterDevice(ctx context.Context, d relay.Device) ([]relay.Device, error) {
	return s.register(ctx, d, true)
}

// RegisterUserDevice implements store.TokenMoves: RegisterDevice, but a
// token held by another user's device is refused (*relay.TokenHeldError).
// The holder is read in the same compare-and-set loop that writes the
// token index, so a holder registered concurrently is never removed.
func (s *Store) RegisterUserDevice(ctx context.Context, d relay.Device) ([]relay.Device, error) {
	return s.register(ctx, d, false)
}

func (s *Store) register(ctx context.Context, d relay.Device, moveUsers bool) ([]relay.Device, error) {
	if d.Workspace == "" || d.User == "" || d.ID == "" || d.Token == "" {
		return nil, errors.New("register device: workspace, user, device id and token are required")
	}
	var removed []relay.Device
	tk := tokenKey(d.Workspace, d.Token)
	for attempt := 0; ; attempt++ {
		if attempt == maxCAS {
			return nil, fmt.Errorf("register device %s: %w", d.ID, errTooManyConflicts)
		}
		var h tokenHolder
		hrev, err := getJSON(ctx, s.dir, tk, &h)
		if err != nil {
			return nil, fmt.Errorf("register device %s: %w", d.ID, err)
		}
		if hrev != 0 && (h.User != d.User || h.ID != d.ID) {
			old, orev, err := s.getDevice(ctx, d.Workspace, h.User, h.ID)
			if err != nil {
				return nil, fmt.Errorf("register device %s: %w", d.ID, err)
			}
			if orev != 0 && old.Token == d.Token {
				if old.User != d.User && !moveUsers {
					return nil, &relay.TokenHeldError{Holder: old}
				}
				err := s.dir.Delete(ctx, deviceKey(d.Workspace, h.User, h.ID), jetstream.LastRevision(orev))
				if isWrongLast(err) {
					continue
				}
				if err != nil {
					return nil, fmt.Errorf("register device %s: remove %s holding its token: %w", d.ID, h.ID, err)
				}
				removed = append(removed, old)
				if old.User != d.User {
					s.noteMove(ctx, old, d.UpdatedAt)
				}
				s.releaseDevice(ctx, old.Workspace, old.User, old.ID)
			}
		}
		if hrev == 0 || h.User != d.User || h.ID != d.ID {
			if _, err := putJSON(ctx, s.dir, tk, hrev, tokenHolder{User: d.User, ID: d.ID}); err != nil {
				if isWrongLast(err) {
					if err := backoff(ctx, attempt); err != nil {
						return nil, err
					}
					continue
				}
				return nil, fmt.Errorf("register device %s: token index: %w", d.ID, err)
			}
		}
		break
	}
	// The device itself, and the index entry of its previous token.
	for attempt := 0; ; attempt++ {
		if attempt == maxCAS {
			return nil, fmt.Errorf("register device %s: %w", d.ID, errTooManyConflicts)
		}
		prev, rev, err := s.getDevice(ctx, d.Workspace, d.User, d.ID)
		if err != nil {
			return nil, fmt.Errorf("register device %s: %w", d.ID, err)
		}
		if _, err := putJSON(ctx, s.dir, deviceKey(d.Workspace, d.User, d.ID), rev, d); err != nil {
			if isWrongLast(err) {
				continue
			}
			return nil, fmt.Errorf("register device %s: %w", d.ID, err)
		}
		if rev != 0 && prev.Token != d.Token {
			s.dropTokenIndex(ctx, prev)
		}
		s.clearMove(ctx, d)
		return removed, nil
	}
}

// noteMove leaves the notice that old lost its token to another user
// (best effort: the move itself is done).
func (s *Store) noteMove(ctx context.Context, old relay.Device, at time.Time) {
	m := relay.DeviceMove{DeviceID: old.ID, Platform: old.Platform, App: old.App, Name: old.Name, MovedAt: at}
	b, err := json.Marshal(m)
	if err == nil {
		_, err = s.dir.Put(ctx, moveKey(old.Workspace, old.User, old.ID), b)
	}
	if err != nil {
		s.log.Warn("device moves: could not store a notice", relay.LogKeyWorkspace, old.Workspace, relay.LogKeyUser, old.User,
			relay.LogKeyDevice, old.ID, relay.LogKeyError, err)
	}
}

// clearMove removes d's own DeviceMove notice, if any (best effort; a
// read first, so most registrations write nothing more).
func (s *Store) clearMove(ctx context.Context, d relay.Device) {
	key := moveKey(d.Workspace, d.User, d.ID)
	var m relay.DeviceMove
	rev, err := getJSON(ctx, s.dir, key, &m)
	if err == nil && rev != 0 {
		err = s.dir.Delete(ctx, key, jetstream.LastRevision(rev))
	}
	if err != nil && !isWrongLast(err) {
		s.log.Warn("device moves: could not clear a notice", relay.LogKeyDevice, d.ID, relay.LogKeyError, err)
	}
}

// DeviceMoves implements store.TokenMoves.
func (s *Store) DeviceMoves(ctx context.Context, workspace, user string) ([]relay.DeviceMove, error) {
	out := []relay.DeviceMove{}
	err := scanBucket(ctx, s.dirStr, "mov."+tok(workspace)+"."+tok(user)+".*", func(key string, val []byte) error {
		var m relay.DeviceMove
		if err := json.Unmarshal(val, &m); err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("device moves of %s: %w", user, err)
	}
	slices.SortFunc(out, func(a, b relay.DeviceMove) int { return strings.Compare(a.DeviceID, b.DeviceID) })
	return out, nil
}

// PutTokenProof implements store.TokenMoves.
func (s *Store) PutTokenProof(ctx context.Context, p relay.TokenProof) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if _, err := s.dir.Put(ctx, proofKey(p.Workspace, p.User), b); err != nil {
		return fmt.Errorf("put token proof of %s: %w", p.User, err)
	}
	return nil
}

// TokenProof implements store.TokenMoves.
func (s *Store) TokenProof(ctx context.Context, workspace, user string) (relay.TokenProof, error) {
	var p relay.TokenProof
	rev, err := getJSON(ctx, s.dir, proofKey(workspace, user), &p)
	if err != nil {
		return relay.TokenProof{}, fmt.Errorf("token proof of %s: %w", user, err)
	}
	if rev == 0 {
		return relay.TokenProof{}, fmt.Errorf("token proof of %s: %w", user, relay.ErrNotFound)
	}
	return p, nil
}

// TakeTokenProof implements store.TokenMoves: read, then delete at the
// revision read (compare-and-set), so two relays never both take it.
func (s *Store) TakeTokenProof(ctx context.Context, workspace, user string) (relay.TokenProof, error) {
	key := proofKey(workspace, user)
	for attempt := range maxCAS {
		var p relay.TokenProof
		rev, err := getJSON(ctx, s.dir, key, &p)
		if err != nil {
			return relay.TokenProof{}, fmt.Errorf("take token proof of %s: %w", user, err)
		}
		if rev == 0 {
			return relay.TokenProof{}, fmt.Errorf("take token proof of %s: %w", user, relay.ErrNotFound)
		}
		err = s.dir.Delete(ctx, key, jetstream.LastRevision(rev))
		if err == nil {
			return p, nil
		}
		if !isWrongLast(err) {
			return relay.TokenProof{}, fmt.Errorf("take token proof of %s: %w", user, err)
		}
		if err := backoff(ctx, attempt); err != nil {
			return relay.TokenProof{}, err
		}
	}
	return relay.TokenProof{}, errTooManyConflicts
}

// dropTokenIndex removes d's token index entry if it still names d (best
// effort: the index is a hint).
func (s *Store) dropTokenIndex(ctx context.Context, d relay.Device) {
	tk := tokenKey(d.Workspace, d.Token)
	var h tokenHolder
	rev, err := getJSON(ctx, s.dir, tk, &h)
	if err == nil && rev != 0 && h.User == d.User && h.ID == d.ID {
		err = s.dir.Delete(ctx, tk, jetstream.LastRevision(rev))
	}
	if err != nil && !isWrongLast(err) {
		s.log.Warn("token index: could not drop an entry", relay.LogKeyDevice, d.ID, relay.LogKeyError, err)
	}
}

// Device implements store.Directory.
func (s *Store) Device(ctx context.Context, workspace, user, id string) (relay.Device, error) {
	d, rev, err := s.getDevice(ctx, workspace, user, id)
	if err != nil {
		return relay.Device{}, fmt.Errorf("device %s: %w", id, err)
	}
	if rev == 0 {
		return relay.Device{}, fmt.Errorf("device %s: %w", id, relay.ErrNotFound)
	}
	return d, nil
}

// Devices implements store.Directory.
func (s *Store) Devices(ctx context.Context, workspace, user string) ([]relay.Device, error) {
	devs := []relay.Device{}
	err := scanBucket(ctx, s.dirStr, "dev."+tok(workspace)+"."+tok(user)+".*", func(key string, val []byte) error {
		var d relay.Device
		if err := json.Unmarshal(val, &d); err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
		devs = append(devs, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("devices of %s: %w", user, err)
	}
	slices.SortFunc(devs, func(a, b relay.Device) int { return strings.Compare(a.ID, b.ID) })
	return devs, nil
}

// DeleteDevice implements store.Directory.
func (s *Store) DeleteDevice(ctx context.Context, workspace, user, id string) error {
	_, err := s.removeDevice(ctx, workspace, user, id, func(relay.Device) bool { return true })
	if err != nil {
		return fmt.Errorf("delete device %s: %w", id, err)
	}
	return nil
}

// RemoveDeviceToken implements store.Directory.
func (s *Store) RemoveDeviceToken(ctx context.Context, workspace, user, id, token string) (bool, error) {
	ok, err := s.removeDevice(ctx, workspace, user, id, func(d relay.Device) bool { return d.Token == token })
	if errors.Is(err, relay.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("remove device %s: %w", id, err)
	}
	return ok, nil
}

// removeDevice deletes a device if cond holds for it (compare-and-set on
// the revision it read) and drops its token index entry.
func (s *Store) removeDevice(ctx context.Context, ws, user, id string, cond func(relay.Device) bool) (bool, error) {
	for attempt := range maxCAS {
		d, rev, err := s.getDevice(ctx, ws, user, id)
		if err != nil {
			return false, err
		}
		if rev == 0 {
			return false, relay.ErrNotFound
		}
		if !cond(d) {
			return false, nil
		}
		err = s.dir.Delete(ctx, deviceKey(ws, user, id), jetstream.LastRevision(rev))
		if err == nil {
			s.dropTokenIndex(ctx, d)
			s.releaseDevice(ctx, ws, user, id)
			return true, nil
		}
		if !isWrongLast(err) {
			return false, err
		}
		if err := backoff(ctx, attempt); err != nil {
			return false, err
		}
	}
	return false, errTooManyConflicts
}

// Settings implements store.Directory.
func (s *Store) Settings(ctx context.Context, workspace string) (map[string]relay.Setting, error) {
	m := map[string]relay.Setting{}
	if _, err := getJSON(ctx, s.dir, settingsKey(workspace), &m); err != nil {
		return nil, fmt.Errorf("settings of %s: %w", workspace, err)
	}
	return m, nil
}

// PutSettings implements store.Directory (merge, compare-and-set).
func (s *Store) PutSettings(ctx context.Context, workspace string, set map[string]relay.Setting) error {
	if err := mergeMap(ctx, s, settingsKey(workspace), set); err != nil {
		return fmt.Errorf("put settings of %s: %w", workspace, err)
	}
	return nil
}

// Preferences implements store.Directory.
func (s *Store) Preferences(ctx context.Context, workspace, user string) (map[string]bool, error) {
	m := map[string]bool{}
	if _, err := getJSON(ctx, s.dir, prefsKey(workspace, user), &m); err != nil {
		return nil, fmt.Errorf("preferences of %s: %w", user, err)
	}
	return m, nil
}

// PutPreferences implements store.Directory (merge, compare-and-set).
func (s *Store) PutPreferences(ctx context.Context, workspace, user string, p map[string]bool) error {
	if err := mergeMap(ctx, s, prefsKey(workspace, user), p); err != nil {
		return fmt.Errorf("put preferences of %s: %w", user, err)
	}
	return nil
}

// mergeMap merges add into the JSON map at key: read, merge, write if
// unchanged since the read, else again.
func mergeMap[V any](ctx context.Context, s *Store, key string, add map[string]V) error {
	for attempt := range maxCAS {
		m := map[string]V{}
		rev, err := getJSON(ctx, s.dir, key, &m)
		if err != nil {
			return err
		}
		maps.Copy(m, add)
		if _, err = putJSON(ctx, s.dir, key, rev, m); err == nil {
			return nil
		}
		if !isWrongLast(err) {
			return err
		}
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
	}
	return errTooManyConflicts
}
