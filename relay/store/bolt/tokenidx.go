package bolt

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"

	bbolt "go.etcd.io/bbolt"
)

// Token index: bucket device_tokens, key ws \0 h user \0 device, where h is
// the first 16 bytes of the SHA-256 of the device's token; empty value. A
// registration finds the devices holding its token with one seek instead
// of scanning the workspace's devices (a 50,000-device workspace took
// ~20 ms per registration, on the committer every write waits for). The
// hash has a fixed length (a token may be long, or contain NUL), so
// "ws \0 h" is the prefix of exactly the token's holders, in (user, device)
// order. Every write of bucket devices goes through putDeviceValue and
// deleteDeviceKey, which keep the index in the same transaction; at open
// the index is rebuilt unless this relayd's clean Close wrote the file
// last (openTokenIndex).
var bucketDeviceTokens = []byte("device_tokens")

const tokenHashLen = 16

// tokenIndexPrefix returns the prefix of the index keys of the devices of
// workspace holding token.
func tokenIndexPrefix(workspace, token string) []byte {
	h := sha256.Sum256([]byte(token))
	k := make([]byte, 0, len(workspace)+1+tokenHashLen)
	k = append(k, workspace...)
	k = append(k, sep)
	return append(k, h[:tokenHashLen]...)
}

// tokenIndexKey returns the index key of the device stored under devKey
// (ws \0 user \0 device) holding token.
func tokenIndexKey(devKey []byte, token string) []byte {
	i := bytes.IndexByte(devKey, sep)
	h := sha256.Sum256([]byte(token))
	k := make([]byte, 0, len(devKey)+tokenHashLen)
	k = append(k, devKey[:i+1]...)
	k = append(k, h[:tokenHashLen]...)
	return append(k, devKey[i+1:]...)
}

// indexedDeviceKey returns the devices key named by index key k under
// prefix (tokenIndexPrefix).
func indexedDeviceKey(prefix, k []byte) []byte {
	ws := len(prefix) - tokenHashLen // ws and its separator
	out := make([]byte, 0, len(k)-tokenHashLen)
	out = append(out, k[:ws]...)
	return append(out, k[len(prefix):]...)
}

// deviceToken decodes the token of a stored device value.
func deviceToken(v []byte) (string, error) {
	var d struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(v, &d); err != nil {
		return "", err
	}
	return d.Token, nil
}

// putDeviceValue stores device value v under k and keeps the token index:
// the entry of the value it replaces goes, the new one comes.
func putDeviceValue(tx *bbolt.Tx, k, v []byte) error {
	devices, idx := tx.Bucket(bucketDevices), tx.Bucket(bucketDeviceTokens)
	token, err := deviceToken(v)
	if err != nil {
		return fmt.Errorf("decode device %q: %w", k, err)
	}
	if old := devices.Get(k); old != nil {
		// An undecodable old value has no entry to drop (it was never
		// indexed, or its entry is checked on use).
		if ot, err := deviceToken(old); err == nil {
			if ot == token {
				// The common registration (an app start): the entry is
				// there, and leaving it spares the commit its pages.
				return devices.Put(k, v)
			}
			if err := idx.Delete(tokenIndexKey(k, ot)); err != nil {
				return err
			}
		}
	}
	if err := devices.Put(k, v); err != nil {
		return err
	}
	return idx.Put(tokenIndexKey(k, token), []byte{})
}

// deleteDeviceKey deletes the device stored under k, if any, with its
// token index entry. It reports whether there was one.
func deleteDeviceKey(tx *bbolt.Tx, k []byte) (bool, error) {
	devices := tx.Bucket(bucketDevices)
	v := devices.Get(k)
	if v == nil {
		return false, nil
	}
	if token, err := deviceToken(v); err == nil {
		if err := tx.Bucket(bucketDeviceTokens).Delete(tokenIndexKey(k, token)); err != nil {
			return false, err
		}
	}
	return true, devices.Delete(k)
}

// openTokenIndex makes the token index current at open and returns how
// many devices it indexed (0: it was current). Going back to an older
// relayd is allowed (docs/operations.md), and an older relayd writes
// devices without the index, so the index is trusted only when this
// relayd's clean Close was the file's last commit: Close records that
// commit's id in the bucket's sequence (markTokenIndex), and open clears
// it. Otherwise (a file from before the index, a crash, an older relayd
// in between, a restored backup) it is rebuilt from the devices. An
// undecodable device is left out (the store check reports it).
func openTokenIndex(tx *bbolt.Tx) (int, error) {
	idx := tx.Bucket(bucketDeviceTokens)
	if idx != nil && idx.Sequence() == uint64(tx.ID()-1) {
		return 0, idx.SetSequence(0)
	}
	if idx != nil {
		if err := tx.DeleteBucket(bucketDeviceTokens); err != nil {
			return 0, fmt.Errorf("drop bucket %s: %w", bucketDeviceTokens, err)
		}
	}
	idx, err := tx.CreateBucket(bucketDeviceTokens)
	if err != nil {
		return 0, fmt.Errorf("create bucket %s: %w", bucketDeviceTokens, err)
	}
	// Put in key order: bbolt splits a transaction's nodes only at
	// commit, so 100,000 keys put in hash order each shifted a node of
	// all the keys before them (25 s; sorted, well under a second).
	var keys [][]byte
	err = tx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
		if token, err := deviceToken(v); err == nil {
			keys = append(keys, tokenIndexKey(k, token))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	slices.SortFunc(keys, bytes.Compare)
	idx.FillPercent = 0.9 // written once in order, then mostly read
	for _, k := range keys {
		if err := idx.Put(k, []byte{}); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// markTokenIndex records, as Close's last commit, that the index agrees
// with the devices (see openTokenIndex).
func markTokenIndex(tx *bbolt.Tx) error {
	idx := tx.Bucket(bucketDeviceTokens)
	if idx == nil {
		return nil // dropped meanwhile (tests): open builds it
	}
	return idx.SetSequence(uint64(tx.ID()))
}
