// Package hugepage asks the kernel to back large, long-lived allocations
// with transparent huge pages (2 MiB).
//
// Where transparent huge pages are offered on request (the "madvise"
// setting, the default of Debian and Ubuntu), a program gets them only for
// memory it advises with MADV_HUGEPAGE. The Go runtime does not advise its
// heap, but a program can advise a large object of its own: a slab of
// connections the tracker touches in no order, the arenas frames are
// copied into on their way to the shards. Each touch of such memory in 4
// KiB pages is likely to miss the TLB as well; in 2 MiB pages it rarely
// does. The advice changes only how the kernel maps the memory, never its
// contents, and is ignored where it cannot be followed.
package hugepage

import "unsafe"

// Size is the size of a transparent huge page on x86-64 and arm64 with 4
// KiB base pages.
const Size = 2 << 20

// Range returns the part of [p, p+n) made of whole huge pages, as an
// offset from p and a length (0 if there is none).
func Range(p, n uintptr) (off, size uintptr) {
	lo := (p + Size - 1) &^ (Size - 1)
	hi := (p + n) &^ (Size - 1)
	if hi <= lo {
		return 0, 0
	}
	return lo - p, hi - lo
}

// Advise asks the kernel to back the whole huge pages within the n bytes
// at p, a Go heap object, with transparent huge pages (madvise
// MADV_HUGEPAGE). Errors (huge pages switched off, an old kernel, another
// system) are ignored: the memory stays in small pages.
func Advise(p unsafe.Pointer, n uintptr) {
	off, size := Range(uintptr(p), n)
	if size == 0 {
		return
	}
	advise(unsafe.Slice((*byte)(unsafe.Add(p, off)), size))
}

// Alloc returns n zeroed bytes starting on a huge page boundary, the huge
// pages they span advised (Advise): unlike a plain allocation, whose whole
// huge pages may be none of it, all of it can be in huge pages. It
// allocates up to two huge pages more than n, which stay untouched but for
// the rest of the last page.
func Alloc(n int) []byte {
	span := (uintptr(n) + Size - 1) &^ (Size - 1)
	mem := make([]byte, span+Size)
	p := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
	off := (Size - p%Size) % Size
	Advise(unsafe.Pointer(&mem[off]), span)
	return mem[off : off+uintptr(n) : off+uintptr(n)]
}
