package conntrack

import (
	"unsafe"

	"github.com/rstscope/rstscope/internal/hugepage"
)

// Connections are allocated in slabs, not one by one: a slab of thousands
// of Conns is one object of several MB, which the kernel can back with
// transparent huge pages (2 MiB) where they are offered on request (the
// common "madvise" setting; hugepage.Advise). A busy capture touches its
// lingering connections in no order, each on lines of its own, and with
// 4 KiB pages nearly every such touch also missed the TLB: on the bench
// capture these slabs took two goroutines from 0.783 to 0.762 s and one
// from 1.281 to 1.220 s (medians of 10 alternating runs; docs/design.md,
// "Connections in huge pages").
//
// A slab lives as long as any of its connections is referenced; the
// tracker recycles connections through its free list, so memory is that of
// the most connections live at once, as before.
type connSlab struct {
	conns []Conn
	next  int
	size  int // Conns in the next slab
}

const (
	firstSlab = 64   // small captures allocate little
	maxSlab   = 8192 // 11.5 MB: several huge pages whole
)

// get returns a zeroed Conn.
func (s *connSlab) get() *Conn {
	if s.next == len(s.conns) {
		s.size = min(max(8*s.size, firstSlab), maxSlab) // 64, 512, 4096, 8192, ...
		s.conns = make([]Conn, s.size)
		s.next = 0
		hugepage.Advise(unsafe.Pointer(unsafe.SliceData(s.conns)), uintptr(len(s.conns))*unsafe.Sizeof(Conn{}))
	}
	c := &s.conns[s.next]
	s.next++
	return c
}
