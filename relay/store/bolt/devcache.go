package bolt

import (
	"encoding/json"
	"sync"

	"github.com/edgerelay/edgerelay/relay"
)

// deviceCache keeps decoded device values by their stored bytes. Every
// decision reads the user's devices and every lease its job's device, and
// decoding the JSON was ~4% of relayd's CPU at load; the directory rarely
// changes. Keyed by the value itself, an entry is never stale; it is
// emptied after every write that removes devices (delete, token removal,
// prune, erase, a registration that takes another device's token) so that
// removed (erased) devices do not linger in memory, and when it is full.
// A registration that removes nothing keeps it: apps register at every
// start, and emptying it there made every decision decode again.
type deviceCache struct {
	mu sync.Mutex
	m  map[string]relay.Device
}

// deviceCacheMax bounds the cache (a few hundred bytes per entry).
const deviceCacheMax = 4096

// decode returns the device stored as v.
func (c *deviceCache) decode(v []byte) (relay.Device, error) {
	c.mu.Lock()
	d, ok := c.m[string(v)]
	c.mu.Unlock()
	if ok {
		return d, nil
	}
	if err := json.Unmarshal(v, &d); err != nil {
		return relay.Device{}, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= deviceCacheMax {
		c.m = make(map[string]relay.Device)
	}
	c.m[string(v)] = d
	c.mu.Unlock()
	return d, nil
}

// reset empties the cache; called after a write that removes devices.
func (c *deviceCache) reset() {
	c.mu.Lock()
	c.m = nil
	c.mu.Unlock()
}
