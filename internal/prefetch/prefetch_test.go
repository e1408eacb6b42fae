package prefetch

import (
	"bytes"
	"testing"
	"unsafe"
)

// Lines only hints: the memory it is given reads the same afterwards, and
// counts of zero or less do nothing.
func TestLinesLeavesMemoryAlone(t *testing.T) {
	buf := make([]byte, 64*LineSize+7)
	for i := range buf {
		buf[i] = byte(i*7 + 3)
	}
	want := bytes.Clone(buf)
	for _, n := range []int{-1, 0, 1, 3, 64} {
		Lines(unsafe.Pointer(&buf[0]), n)
		Lines(unsafe.Pointer(&buf[5]), n)
	}
	if !bytes.Equal(buf, want) {
		t.Fatal("Lines changed the memory it prefetched")
	}
}

// A prefetch never faults, not even at address 0 (prefetch_unix_test.go
// tries a page no longer mapped).
func TestLinesNilNeverFaults(t *testing.T) {
	Lines(nil, 4) // a fault here kills the test binary
}

func BenchmarkLines(b *testing.B) {
	buf := make([]byte, 8<<10)
	for b.Loop() {
		Lines(unsafe.Pointer(&buf[0]), len(buf)/LineSize)
	}
}

// Bytes covers every line the range touches, from the line of its first
// byte to that of its last, whatever their alignment: a count off by one
// would leave the end of a slice cold.
func TestSpan(t *testing.T) {
	for _, c := range []struct {
		addr, n, back uintptr
		lines         int
	}{
		{0, 1, 0, 1}, {0, 64, 0, 1}, {0, 65, 0, 2}, {63, 2, 63, 2}, {1, 63, 1, 1}, {1, 64, 1, 2},
		{4096 + 10, 480, 10, 8}, {4096 + 40, 480, 40, 9}, {128, 0, 0, 0},
	} {
		back, lines := span(c.addr, c.n)
		if back != c.back || lines != c.lines {
			t.Errorf("%d bytes at %d: start %d back, %d lines; want %d back, %d lines", c.n, c.addr, back, lines, c.back, c.lines)
		}
	}
	buf := make([]byte, 1024)
	Bytes(unsafe.Pointer(&buf[10]), 480) // and it runs
	Bytes(nil, 0)
}
