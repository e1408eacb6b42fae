package conntrack

import (
	"unsafe"

	"github.com/rstscope/rstscope/internal/hugepage"
)

// Connections are allocated in slabs, not one by one: a full slab of 2,048
// Conns is one object of 2.9 MB, which the kernel can back with
// transparent huge pages (2 MiB) where they are offered on request (the
// common "madvise" setting; hugepage.Advise). A busy capture touches its
// lingering connections in no order, each on lines of its own, and with
// 4 KiB pages nearly every such touch also missed the TLB: on the bench
// capture these slabs took two goroutines from 0.783 to 0.762 s and one
// from 1.281 to 1.220 s (medians of 10 alternating runs; docs/design.md,
// "Connections in huge pages"; the slabs were up to 11.5 MB then, see
// touchPages).
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
	maxSlab   = 2048 // 2.9 MB: a huge page whole, most of the time
)

// touchPages writes a zero into every page of mem, fresh zeroed memory,
// so that the kernel maps each page for writing now. Untouched, a new
// slab's pages are first read by the garbage collector's scan of it, which
// maps them all to the kernel's shared zero page; the tracker's first
// write to each then faults again, and replacing a mapping the other CPUs
// may have cached flushes their TLBs with an interrupt (2% of the bench
// capture's CPU samples were these flushes under newConn, in a VM where
// an interrupt to another CPU costs more still). Touched at once, a
// slab's resident memory is its whole size, hence slabs of at most 2.9 MB
// (they were up to 11.5 MB): two goroutines 0.68 -> 0.63 s, system time
// 0.22 -> 0.13 s, peak the same (85 MB; medians of 12 alternating runs in
// a slow phase of the machine; in a fast one the same time).
func touchPages(mem []byte) {
	for i := 0; i < len(mem); i += pageSize {
		mem[i] = 0
	}
}

// pageSize is the smallest page size of the platforms rstscope runs on;
// where pages are larger, touchPages writes some of them more than once.
const pageSize = 4096

// get returns a zeroed Conn.
func (s *connSlab) get() *Conn {
	if s.next == len(s.conns) {
		s.size = min(max(8*s.size, firstSlab), maxSlab) // 64, 512, 2048, 2048, ...
		s.conns = make([]Conn, s.size)
		s.next = 0
		mem := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s.conns))), uintptr(len(s.conns))*unsafe.Sizeof(Conn{}))
		hugepage.Advise(unsafe.Pointer(&mem[0]), uintptr(len(mem)))
		touchPages(mem)
	}
	c := &s.conns[s.next]
	s.next++
	return c
}
