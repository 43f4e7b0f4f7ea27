package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/edgerelay/edgerelay/relay"
)

// maxPartLen bounds one key part, far above relay.MaxIDLen, so that a key
// of three parts stays under bbolt's 32 KiB key limit.
const maxPartLen = 4096

const sep = 0

// checkPart validates one key part.
func checkPart(field, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%s: must not be empty", field)
	case len(v) > maxPartLen:
		return fmt.Errorf("%s: %d bytes, longer than %d", field, len(v), maxPartLen)
	case strings.IndexByte(v, sep) >= 0:
		return fmt.Errorf("%s %q: must not contain NUL", field, v)
	}
	return nil
}

// checkEventKey validates an event key.
func checkEventKey(k relay.EventKey) error {
	return errors.Join(checkPart("workspace", k.Workspace), checkPart("id", k.ID))
}

// keyLen is the length of joinKey(parts...).
func keyLen(parts ...string) int {
	n := len(parts) - 1
	for _, p := range parts {
		n += len(p)
	}
	return n
}

// joinKey joins checked parts with NUL.
func joinKey(parts ...string) []byte {
	b := make([]byte, 0, keyLen(parts...))
	for i, p := range parts {
		if i > 0 {
			b = append(b, sep)
		}
		b = append(b, p...)
	}
	return b
}

// prefixKey returns joinKey(parts...) followed by NUL: the prefix of every
// child key.
func prefixKey(parts ...string) []byte {
	return append(joinKey(parts...), sep)
}

func eventKey(k relay.EventKey) []byte { return joinKey(k.Workspace, k.ID) }

func jobKey(k relay.EventKey, device string) []byte { return joinKey(k.Workspace, k.ID, device) }

// splitEventKey parses an events key.
func splitEventKey(b []byte) (relay.EventKey, error) {
	i := bytes.IndexByte(b, sep)
	if i < 0 {
		return relay.EventKey{}, fmt.Errorf("event key %q: no separator", b)
	}
	return relay.EventKey{Workspace: string(b[:i]), ID: string(b[i+1:])}, nil
}

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}
