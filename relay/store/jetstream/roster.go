package jetstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// rosterGrace is how long a roster entry whose device is not (yet) written
// is kept: a registration between its reservation and its device write.
const rosterGrace = time.Minute

// rosterKey names a user's device roster: the device ids the user holds or
// is registering, each with when it was reserved. KV has no multi-key
// transaction, so the per-user device limit is enforced on this one key
// (compare-and-set): a new device id must win a place in the roster before
// its device is written.
func rosterKey(ws, user string) string { return "roster." + tok(ws) + "." + tok(user) }

// reserveDevice gives d's id a place in its user's roster of at most limit
// ids, or fails with store.ErrTooManyDevices.
func (s *Store) reserveDevice(ctx context.Context, d relay.Device, limit int) error {
	key := rosterKey(d.Workspace, d.User)
	for attempt := range maxCAS {
		roster := map[string]time.Time{}
		rev, err := getJSON(ctx, s.dir, key, &roster)
		if err != nil {
			return err
		}
		if _, ok := roster[d.ID]; ok && rev != 0 {
			return nil
		}
		if rev == 0 || len(roster) >= limit {
			// First use (a store written before rosters) or full: rebuild
			// from the devices, keeping recent reservations not written yet.
			if roster, err = s.rebuildRoster(ctx, d.Workspace, d.User, roster); err != nil {
				return err
			}
		}
		if _, ok := roster[d.ID]; !ok {
			if len(roster) >= limit {
				return fmt.Errorf("%w: %d of %d", store.ErrTooManyDevices, len(roster), limit)
			}
			roster[d.ID] = time.Now().UTC()
		}
		_, err = putJSON(ctx, s.dir, key, rev, roster)
		if err == nil {
			return nil
		}
		if !isWrongLast(err) {
			return fmt.Errorf("device roster: %w", err)
		}
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
	}
	return errTooManyConflicts
}

// rebuildRoster returns the user's registered device ids plus the entries
// of old reserved less than rosterGrace ago.
func (s *Store) rebuildRoster(ctx context.Context, ws, user string, old map[string]time.Time) (map[string]time.Time, error) {
	devs, err := s.Devices(ctx, ws, user)
	if err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(devs))
	for _, d := range devs {
		out[d.ID] = old[d.ID]
		if out[d.ID].IsZero() {
			out[d.ID] = d.UpdatedAt
		}
	}
	for id, at := range old {
		if _, ok := out[id]; !ok && time.Since(at) < rosterGrace {
			out[id] = at
		}
	}
	return out, nil
}

// releaseDevice drops a removed device's id from its user's roster (best
// effort: a stale entry is dropped when the roster is next full).
func (s *Store) releaseDevice(ctx context.Context, ws, user, id string) {
	key := rosterKey(ws, user)
	for attempt := range maxCAS {
		roster := map[string]time.Time{}
		rev, err := getJSON(ctx, s.dir, key, &roster)
		if err != nil || rev == 0 {
			return
		}
		if _, ok := roster[id]; !ok {
			return
		}
		delete(roster, id)
		if len(roster) == 0 {
			err = s.dir.Delete(ctx, key, jetstream.LastRevision(rev))
		} else {
			_, err = putJSON(ctx, s.dir, key, rev, roster)
		}
		if err == nil || !isWrongLast(err) || backoff(ctx, attempt) != nil {
			if err != nil && !isWrongLast(err) && !errors.Is(err, context.Canceled) {
				s.log.Warn("device roster: could not drop an entry", relay.LogKeyDevice, id, relay.LogKeyError, err)
			}
			return
		}
	}
}

// RegisterDeviceLimit implements store.Directory.
func (s *Store) RegisterDeviceLimit(ctx context.Context, d relay.Device, limit int) ([]relay.Device, error) {
	return s.registerLimit(ctx, d, limit, s.RegisterDevice)
}

// RegisterUserDeviceLimit implements store.TokenMoves.
func (s *Store) RegisterUserDeviceLimit(ctx context.Context, d relay.Device, limit int) ([]relay.Device, error) {
	return s.registerLimit(ctx, d, limit, s.RegisterUserDevice)
}

// registerLimit reserves d's place in its user's roster, then registers
// it with register; a registration that fails gives the place back.
func (s *Store) registerLimit(ctx context.Context, d relay.Device, limit int, register func(context.Context, relay.Device) ([]relay.Device, error)) ([]relay.Device, error) {
	if limit <= 0 || d.Workspace == "" || d.User == "" || d.ID == "" {
		return register(ctx, d)
	}
	had, err := s.Device(ctx, d.Workspace, d.User, d.ID)
	if err != nil && !errors.Is(err, relay.ErrNotFound) {
		return nil, fmt.Errorf("register device %s: %w", d.ID, err)
	}
	if err := s.reserveDevice(ctx, d, limit); err != nil {
		return nil, fmt.Errorf("register device %s: %w", d.ID, err)
	}
	taken, err := register(ctx, d)
	if err != nil && had.ID == "" {
		s.releaseDevice(context.WithoutCancel(ctx), d.Workspace, d.User, d.ID)
	}
	return taken, err
}
