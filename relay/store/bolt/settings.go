package bolt

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
)

// Settings returns a workspace's explicit settings; types never set are
// absent (none: an empty map).
func (s *Store) Settings(ctx context.Context, workspace string) (map[string]relay.Setting, error) {
	if err := checkPart("workspace", workspace); err != nil {
		return nil, fmt.Errorf("get settings: %w", err)
	}
	m := map[string]relay.Setting{}
	if err := s.getMap(ctx, bucketSettings, joinKey(workspace), &m); err != nil {
		return nil, fmt.Errorf("get settings %s: %w", workspace, err)
	}
	return m, nil
}

// PutSettings merges settings into a workspace's settings. Every value must
// be a valid relay.Setting; otherwise nothing is written.
func (s *Store) PutSettings(ctx context.Context, workspace string, settings map[string]relay.Setting) error {
	if err := checkPart("workspace", workspace); err != nil {
		return fmt.Errorf("put settings: %w", err)
	}
	for typ, v := range settings {
		if typ == "" {
			return fmt.Errorf("put settings %s: type: must not be empty", workspace)
		}
		if !v.Valid() {
			return fmt.Errorf("put settings %s: type %q: setting %q: want enabled, disabled or enforced", workspace, typ, v)
		}
	}
	in := maps.Clone(settings)
	err := s.mergeMap(ctx, bucketSettings, joinKey(workspace), func(raw []byte) ([]byte, error) {
		m := map[string]relay.Setting{}
		if raw != nil {
			if err := json.Unmarshal(raw, &m); err != nil {
				return nil, err
			}
		}
		maps.Copy(m, in)
		return json.Marshal(m)
	}, len(in))
	if err != nil {
		return fmt.Errorf("put settings %s: %w", workspace, err)
	}
	return nil
}

// Preferences returns a user's explicit preferences (none: an empty map).
func (s *Store) Preferences(ctx context.Context, workspace, user string) (map[string]bool, error) {
	if err := checkUserKey(workspace, user); err != nil {
		return nil, fmt.Errorf("get preferences: %w", err)
	}
	m := map[string]bool{}
	if err := s.getMap(ctx, bucketPrefs, joinKey(workspace, user), &m); err != nil {
		return nil, fmt.Errorf("get preferences %s/%s: %w", workspace, user, err)
	}
	return m, nil
}

// PutPreferences merges preferences into a user's preferences.
func (s *Store) PutPreferences(ctx context.Context, workspace, user string, p map[string]bool) error {
	if err := checkUserKey(workspace, user); err != nil {
		return fmt.Errorf("put preferences: %w", err)
	}
	for typ := range p {
		if typ == "" {
			return fmt.Errorf("put preferences %s/%s: type: must not be empty", workspace, user)
		}
	}
	in := maps.Clone(p)
	err := s.mergeMap(ctx, bucketPrefs, joinKey(workspace, user), func(raw []byte) ([]byte, error) {
		m := map[string]bool{}
		if raw != nil {
			if err := json.Unmarshal(raw, &m); err != nil {
				return nil, err
			}
		}
		maps.Copy(m, in)
		return json.Marshal(m)
	}, len(in))
	if err != nil {
		return fmt.Errorf("put preferences %s/%s: %w", workspace, user, err)
	}
	return nil
}

func checkUserKey(workspace, user string) error {
	if err := checkPart("workspace", workspace); err != nil {
		return err
	}
	return checkPart("user", user)
}

// getMap decodes the JSON value at key into m, leaving m as is when absent.
func (s *Store) getMap(ctx context.Context, bucket, key []byte, m any) error {
	leave, err := s.enter(ctx)
	if err != nil {
		return err
	}
	defer leave()
	return s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucket).Get(key)
		if v == nil {
			return nil
		}
		if err := json.Unmarshal(v, m); err != nil {
			return fmt.Errorf("decode %s: %w", bucket, err)
		}
		return nil
	})
}

// mergeMap replaces the value at key with merge(old value) in a batch.
// merge builds its result afresh on each run, as Batch requires.
func (s *Store) mergeMap(ctx context.Context, bucket, key []byte, merge func([]byte) ([]byte, error), n int) error {
	if n == 0 {
		return nil
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return err
	}
	defer leave()
	return s.write(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket)
		v, err := merge(b.Get(key))
		if err != nil {
			return fmt.Errorf("merge %s: %w", bucket, err)
		}
		return b.Put(key, v)
	})
}
