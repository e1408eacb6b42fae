//go:build unix

package prefetch

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A prefetch does not fault on a page that is no longer mapped (a mapped
// capture file cut short leaves such pages ahead of the reader).
func TestLinesNeverFaults(t *testing.T) {
	page := unix.Getpagesize()
	b, err := unix.Mmap(-1, 0, 2*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Skip("mmap:", err)
	}
	p := unsafe.Pointer(&b[0])
	if err := unix.Munmap(b); err != nil {
		t.Fatal(err)
	}
	Lines(p, 2*page/LineSize) // a fault here kills the test binary
}
