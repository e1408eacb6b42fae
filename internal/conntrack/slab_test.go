package conntrack

import (
	"runtime"
	"testing"
	"unsafe"

	"github.com/rstscope/rstscope/internal/hugepage"
	"github.com/rstscope/rstscope/internal/smaps"
)

// The slab hands out distinct, zeroed connections, in slabs that grow from
// small (a capture of a few connections allocates little) to the largest.
func TestConnSlab(t *testing.T) {
	var s connSlab
	seen := map[*Conn]bool{}
	var sizes []int
	for i := 0; i < 20000; i++ {
		c := s.get()
		if s.next == 1 { // the first of a new slab
			sizes = append(sizes, len(s.conns))
		}
		if seen[c] {
			t.Fatalf("connection %d handed out twice", i)
		}
		seen[c] = true
		if c.ID != 0 || c.TotalPkts != 0 || c.Ep[1].Pkts != 0 || c.recs[inlineRecs-1].num != 0 {
			t.Fatalf("connection %d not zeroed", i)
		}
		c.ID, c.TotalPkts, c.Ep[1].Pkts, c.recs[inlineRecs-1].num = 1, 1, 1, 1
	}
	want := []int{firstSlab, 8 * firstSlab, maxSlab, maxSlab, maxSlab}
	if len(sizes) < len(want) {
		t.Fatalf("slab sizes %v, want %v", sizes, want)
	}
	for i, n := range want {
		if sizes[i] != n {
			t.Fatalf("slab sizes %v, want %v first", sizes, want)
		}
	}
}

// A full-size slab is advised to the kernel as eligible for transparent huge
// pages: its mapping says "THPeligible: 1" in /proc/self/smaps.
func TestSlabAdvisedHuge(t *testing.T) {
	var s connSlab
	for len(s.conns) < maxSlab {
		s.get()
	}
	// A full-size slab holds a whole huge page unless it starts just past
	// a boundary: take the next one then, up to a few.
	size := uintptr(len(s.conns)) * unsafe.Sizeof(Conn{})
	for i := 0; i < 8; i++ {
		if _, n := hugepage.Range(uintptr(unsafe.Pointer(unsafe.SliceData(s.conns))), size); n > 0 {
			break
		}
		for s.next < len(s.conns) {
			s.get()
		}
		s.get()
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s.conns)))
	ok, skip := smaps.HugeEligible(p, uintptr(len(s.conns))*unsafe.Sizeof(Conn{}))
	if skip != "" {
		t.Skip(skip)
	}
	if !ok {
		t.Error("the slab's mapping is not THPeligible")
	}
	runtime.KeepAlive(s.conns)
}
