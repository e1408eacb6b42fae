package hugepage

import (
	"testing"
	"unsafe"
)

func TestRange(t *testing.T) {
	const h = Size
	for _, tc := range []struct{ p, n, off, size uintptr }{
		{0, 4 * h, 0, 4 * h},
		{h / 2, 3 * h, h / 2, 2 * h},    // starts mid-page: from the next one
		{h + 8, 2*h - 16, 0, 0},         // no whole page inside
		{3 * h, h - 1, 0, 0},            // shorter than a page
		{5*h - 4096, h + 8192, 4096, h}, // one whole page in the middle
	} {
		off, size := Range(tc.p, tc.n)
		if off != tc.off || size != tc.size {
			t.Errorf("Range(%#x, %#x) = %#x, %#x; want %#x, %#x", tc.p, tc.n, off, size, tc.off, tc.size)
		}
	}
}

func TestAlloc(t *testing.T) {
	for _, n := range []int{1, 4096, Size - 1, Size, Size + 1, 3*Size + 12345} {
		b := Alloc(n)
		p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		if len(b) != n || cap(b) != n || p%Size != 0 {
			t.Errorf("Alloc(%d): %d/%d bytes at %#x, want %d on a %d boundary", n, len(b), cap(b), p, n, Size)
		}
		for i := range b {
			if b[i] != 0 {
				t.Fatalf("Alloc(%d)[%d] = %d", n, i, b[i])
			}
		}
	}
}
