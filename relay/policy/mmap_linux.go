//go:build linux

package policy

import (
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// mmapAllocator backs each linear memory with one anonymous mapping that
// reserves the memory's maximum up front. Growing only reslices it, so a
// guest that grows memory to the limit costs neither copies nor Go heap;
// pages it never touches cost no RSS.
type mmapAllocator struct{}

func newMmapAllocator() experimental.MemoryAllocator { return mmapAllocator{} }

func (mmapAllocator) Allocate(_, max uint64) experimental.LinearMemory {
	if max == 0 {
		max = 1 << 16
	}
	buf, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
	if err != nil {
		return &heapMemory{}
	}
	return &mmapMemory{buf: buf}
}

type mmapMemory struct{ buf []byte }

func (m *mmapMemory) Reallocate(size uint64) []byte {
	if m.buf == nil || size > uint64(len(m.buf)) {
		return nil
	}
	return m.buf[:size:size]
}

func (m *mmapMemory) Free() {
	if m.buf != nil {
		_ = syscall.Munmap(m.buf)
		m.buf = nil
	}
}

// heapMemory is the fallback when mmap fails: plain Go slices.
type heapMemory struct{ buf []byte }

func (m *heapMemory) Reallocate(size uint64) []byte {
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	nb := make([]byte, size)
	copy(nb, m.buf)
	m.buf = nb
	return nb
}

func (m *heapMemory) Free() { m.buf = nil }
