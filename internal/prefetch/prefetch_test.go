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
