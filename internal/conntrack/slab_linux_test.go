package conntrack

import (
	"runtime"
	"syscall"
	"testing"
	"unsafe"
)

// minorFaults returns the process's minor page faults so far.
func minorFaults(t *testing.T) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Skip("getrusage:", err)
	}
	return ru.Minflt
}

// A new slab's pages are mapped for writing when it is made (touchPages):
// once a garbage collection has scanned it (which reads every page),
// writing into every connection of it faults almost no page in again.
// Untouched, each of its small pages would fault for the write, after
// the scan had mapped it to the zero page.
func TestSlabPagesMappedForWriting(t *testing.T) {
	var s connSlab
	for len(s.conns) < maxSlab {
		s.get()
	}
	runtime.GC()
	before := minorFaults(t)
	for i := range s.conns {
		c := &s.conns[i]
		c.ID, c.Ep[1].Pkts, c.recs[inlineRecs-1].num = 1, 1, 1
	}
	faults := minorFaults(t) - before
	pages := int64(uintptr(len(s.conns)) * unsafe.Sizeof(Conn{}) / pageSize)
	if faults > pages/20 {
		t.Errorf("writing a scanned slab of %d pages faulted %d times", pages, faults)
	}
	runtime.KeepAlive(s.conns)
}
