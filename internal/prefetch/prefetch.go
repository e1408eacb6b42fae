// Package prefetch asks the CPU to start loading memory that will be read
// or written soon, without waiting for it.
//
// Go has no prefetch in its standard library (the runtime's is internal),
// and a plain load is no substitute: the load must finish before the
// instructions after it retire, so a cold line stalls the core for its
// whole latency once the reorder buffer fills. A prefetch instruction
// retires at once and the line arrives in the background. rstscope uses
// it where it knows what comes next and the hardware does not: the mapped
// capture a few KiB ahead of the reader, across the 4 KiB pages the
// hardware's own prefetcher stops at (pcapio), and the record and message
// slices a connection is handed, last written a second or more before
// (conntrack).
//
// On amd64 and arm64 Lines is a few instructions of assembly; elsewhere it
// does nothing. A prefetch never faults, so any address may be given.
package prefetch

import "unsafe"

// LineSize is the cache line size Lines steps by.
const LineSize = 64

// Bytes starts loading the lines that hold the n bytes at p (see Lines):
// its first and last lines too when they hold only part of it.
func Bytes(p unsafe.Pointer, n uintptr) {
	back, lines := span(uintptr(p), n)
	Lines(unsafe.Add(p, -int(back)), lines)
}

// span returns how far before addr its line starts, and how many lines
// the n bytes at addr touch.
func span(addr, n uintptr) (back uintptr, lines int) {
	if n == 0 {
		return 0, 0
	}
	first := addr &^ (LineSize - 1)
	last := (addr + n - 1) &^ (LineSize - 1)
	return addr - first, int((last-first)/LineSize) + 1
}
