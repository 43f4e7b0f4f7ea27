//go:build !linux

package policy

import "github.com/tetratelabs/wazero/experimental"

// newMmapAllocator returns nil off Linux: wazero's default allocator is used.
func newMmapAllocator() experimental.MemoryAllocator { return nil }
