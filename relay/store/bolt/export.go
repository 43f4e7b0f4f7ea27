package bolt

import (
	"bytes"
	"encoding/json"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
)

// Directory is the directory of a store, whole: what moving from one relay
// on bolt to a cluster carries over (see docs/cluster.md).
type Directory struct {
	Devices     []relay.Device
	Settings    map[string]map[string]relay.Setting // workspace → type → setting
	Preferences []UserPreferences
}

// UserPreferences are one user's explicit preferences.
type UserPreferences struct {
	Workspace, User string
	Preferences     map[string]bool
}

// ExportDirectory reads every device, workspace setting and user preference
// in one read transaction (a consistent snapshot).
func (s *Store) ExportDirectory() (Directory, error) {
	out := Directory{Settings: map[string]map[string]relay.Setting{}}
	err := s.db.View(func(tx *bbolt.Tx) error {
		err := tx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
			var d relay.Device
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("device %q: %w", k, err)
			}
			out.Devices = append(out.Devices, d)
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketSettings).ForEach(func(k, v []byte) error {
			m := map[string]relay.Setting{}
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("settings of %q: %w", k, err)
			}
			out.Settings[string(k)] = m
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketPrefs).ForEach(func(k, v []byte) error {
			i := bytes.IndexByte(k, sep)
			if i < 0 {
				return fmt.Errorf("%w: preferences key %q", errCorrupt, k)
			}
			m := map[string]bool{}
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("preferences of %q: %w", k, err)
			}
			out.Preferences = append(out.Preferences, UserPreferences{Workspace: string(k[:i]), User: string(k[i+1:]), Preferences: m})
			return nil
		})
	})
	if err != nil {
		return Directory{}, fmt.Errorf("export directory: %w", err)
	}
	return out, nil
}
