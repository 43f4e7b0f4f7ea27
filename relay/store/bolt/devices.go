package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
)

// checkDeviceKey validates a device's key parts.
func checkDeviceKey(workspace, user, id string) error {
	return errors.Join(checkPart("workspace", workspace), checkPart("user", user), checkPart("device_id", id))
}

// PutDevice registers or replaces a device, keyed by (workspace, user, id).
func (s *Store) PutDevice(ctx context.Context, d relay.Device) error {
	if err := checkDeviceKey(d.Workspace, d.User, d.ID); err != nil {
		return fmt.Errorf("put device: %w", err)
	}
	v, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("put device %s/%s/%s: %w", d.Workspace, d.User, d.ID, err)
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return fmt.Errorf("put device %s/%s/%s: %w", d.Workspace, d.User, d.ID, err)
	}
	defer leave()

	k := joinKey(d.Workspace, d.User, d.ID)
	err = s.write(func(tx *bbolt.Tx) error {
		return putDeviceValue(tx, k, v)
	})
	if err != nil {
		return fmt.Errorf("put device %s/%s/%s: %w", d.Workspace, d.User, d.ID, err)
	}
	return nil
}

// Device returns one device, or an error wrapping relay.ErrNotFound.
func (s *Store) Device(ctx context.Context, workspace, user, id string) (relay.Device, error) {
	var d relay.Device
	if err := checkDeviceKey(workspace, user, id); err != nil {
		return d, fmt.Errorf("get device: %w", err)
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return d, fmt.Errorf("get device %s/%s/%s: %w", workspace, user, id, err)
	}
	defer leave()

	err = s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketDevices).Get(joinKey(workspace, user, id))
		if v == nil {
			return relay.ErrNotFound
		}
		return json.Unmarshal(v, &d)
	})
	if err != nil {
		return relay.Device{}, fmt.Errorf("get device %s/%s/%s: %w", workspace, user, id, err)
	}
	return d, nil
}

// Devices returns a user's devices ordered by id (none: an empty slice).
func (s *Store) Devices(ctx context.Context, workspace, user string) ([]relay.Device, error) {
	if err := errors.Join(checkPart("workspace", workspace), checkPart("user", user)); err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return nil, fmt.Errorf("list devices %s/%s: %w", workspace, user, err)
	}
	defer leave()

	var devices []relay.Device
	err = s.db.View(func(tx *bbolt.Tx) (err error) {
		devices, err = s.devicesUnder(tx.Bucket(bucketDevices).Cursor(), prefixKey(workspace, user))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list devices %s/%s: %w", workspace, user, err)
	}
	return devices, nil
}

// devicesUnder decodes the devices whose keys start with prefix (a user's:
// prefixKey(ws, user)), in key order; none is an empty slice.
func (s *Store) devicesUnder(c *bbolt.Cursor, prefix []byte) ([]relay.Device, error) {
	devices := []relay.Device{}
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		d, err := s.devices.decode(v)
		if err != nil {
			return nil, fmt.Errorf("decode device %q: %w", k, err)
		}
		devices = append(devices, d)
	}
	return devices, nil
}

// ReadUsers implements store.UsersReader: the users' preferences and
// devices in one read transaction.
func (s *Store) ReadUsers(ctx context.Context, workspace string, users []string) ([]map[string]bool, [][]relay.Device, error) {
	if err := checkPart("workspace", workspace); err != nil {
		return nil, nil, fmt.Errorf("read users: %w", err)
	}
	for _, u := range users {
		if err := checkPart("user", u); err != nil {
			return nil, nil, fmt.Errorf("read users of %s: %w", workspace, err)
		}
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("read users of %s: %w", workspace, err)
	}
	defer leave()
	prefs := make([]map[string]bool, len(users))
	devices := make([][]relay.Device, len(users))
	err = s.db.View(func(tx *bbolt.Tx) error {
		pc, dc := tx.Bucket(bucketPrefs).Cursor(), tx.Bucket(bucketDevices).Cursor()
		for i, u := range users {
			key := joinKey(workspace, u)
			prefs[i] = map[string]bool{}
			if k, v := pc.Seek(key); bytes.Equal(k, key) {
				if err := json.Unmarshal(v, &prefs[i]); err != nil {
					return fmt.Errorf("decode %s: %w", bucketPrefs, err)
				}
			}
			var err error
			if devices[i], err = s.devicesUnder(dc, append(key, sep)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read users of %s: %w", workspace, err)
	}
	return prefs, devices, nil
}

// DeleteDevice removes a device; an error wrapping relay.ErrNotFound if it
// is absent.
func (s *Store) DeleteDevice(ctx context.Context, workspace, user, id string) error {
	if err := checkDeviceKey(workspace, user, id); err != nil {
		return fmt.Errorf("delete device: %w", err)
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return fmt.Errorf("delete device %s/%s/%s: %w", workspace, user, id, err)
	}
	defer leave()
	defer s.devices.reset()

	k := joinKey(workspace, user, id)
	var found bool
	err = s.write(func(tx *bbolt.Tx) error {
		var err error
		found, err = deleteDeviceKey(tx, k)
		return err
	})
	if err == nil && !found {
		err = relay.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete device %s/%s/%s: %w", workspace, user, id, err)
	}
	return nil
}

// RemoveDeviceToken removes a device only if its token is still token,
// comparing inside the write transaction, so a device re-registered with a
// new token meanwhile is kept. It reports whether it removed the device.
func (s *Store) RemoveDeviceToken(ctx context.Context, workspace, user, id, token string) (bool, error) {
	if err := checkDeviceKey(workspace, user, id); err != nil {
		return false, fmt.Errorf("remove device token: %w", err)
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return false, fmt.Errorf("remove device token %s/%s/%s: %w", workspace, user, id, err)
	}
	defer leave()
	defer s.devices.reset()

	k := joinKey(workspace, user, id)
	var removed bool
	err = s.write(func(tx *bbolt.Tx) error {
		removed = false
		b := tx.Bucket(bucketDevices)
		v := b.Get(k)
		if v == nil {
			return nil
		}
		var d struct {
			Token string `json:"token"`
		}
		if err := json.Unmarshal(v, &d); err != nil {
			return fmt.Errorf("decode device: %w", err)
		}
		if d.Token != token {
			return nil
		}
		removed = true
		_, err := deleteDeviceKey(tx, k)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("remove device token %s/%s/%s: %w", workspace, user, id, err)
	}
	return removed, nil
}
