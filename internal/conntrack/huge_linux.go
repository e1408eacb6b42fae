package conntrack

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// adviseHuge asks the kernel to back the whole huge pages within the n
// bytes at p with transparent huge pages (madvise MADV_HUGEPAGE). The
// memory is a Go heap object; the advice only changes how the kernel maps
// it. Errors (THP switched off, an old kernel) are ignored: the memory
// stays in small pages.
func adviseHuge(p unsafe.Pointer, n uintptr) {
	off, size := hugeRange(uintptr(p), n)
	if size == 0 {
		return
	}
	unix.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, off)), size), unix.MADV_HUGEPAGE)
}
