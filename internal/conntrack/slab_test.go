package conntrack

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"unsafe"

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
	want := []int{firstSlab, 8 * firstSlab, 64 * firstSlab, maxSlab, maxSlab}
	if len(sizes) < len(want) {
		t.Fatalf("slab sizes %v, want %v", sizes, want)
	}
	for i, n := range want {
		if sizes[i] != n {
			t.Fatalf("slab sizes %v, want %v first", sizes, want)
		}
	}
}

func TestHugeRange(t *testing.T) {
	const h = hugePage
	for _, tc := range []struct{ p, n, off, size uintptr }{
		{0, 4 * h, 0, 4 * h},
		{h / 2, 3 * h, h / 2, 2 * h},    // starts mid-page: from the next one
		{h + 8, 2*h - 16, 0, 0},         // no whole page inside
		{3 * h, h - 1, 0, 0},            // shorter than a page
		{5*h - 4096, h + 8192, 4096, h}, // one whole page in the middle
	} {
		off, size := hugeRange(tc.p, tc.n)
		if off != tc.off || size != tc.size {
			t.Errorf("hugeRange(%#x, %#x) = %#x, %#x; want %#x, %#x", tc.p, tc.n, off, size, tc.off, tc.size)
		}
	}
}

// A full-size slab is advised to the kernel as eligible for transparent huge
// pages: its mapping says "THPeligible: 1" in /proc/self/smaps.
func TestSlabAdvisedHuge(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("MADV_HUGEPAGE is Linux's")
	}
	if b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil || strings.Contains(string(b), "[never]") {
		t.Skipf("transparent huge pages are off here (%q, %v)", b, err)
	}
	var s connSlab
	for len(s.conns) < maxSlab {
		s.get()
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s.conns)))
	off, size := hugeRange(p, uintptr(len(s.conns))*unsafe.Sizeof(Conn{}))
	if size == 0 {
		t.Fatal("a full slab holds no whole huge page")
	}
	v, err := smaps.Field(p+off, "THPeligible")
	if err != nil {
		t.Skipf("cannot read /proc/self/smaps: %v", err)
	}
	if v != "1" {
		t.Errorf("the slab's mapping says THPeligible: %s, want 1", v)
	}
	runtime.KeepAlive(s.conns)
}
