//go:build linux

package pcapio

import (
	"errors"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps f into memory, read-only, if it is a regular file of at
// least minSize bytes (and at most 1 GiB on 32-bit systems) that is not
// gzip-compressed. Otherwise, or if mapping fails, it returns nil, and f's
// offset is unchanged.
func mapFile(f *os.File, minSize int64) []byte {
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	size := fi.Size()
	if size < max(minSize, 1) || size > math.MaxInt/2 {
		return nil
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	// Reading the magic touches the first page: if the file has already
	// shrunk to nothing, that is a SIGBUS. Populating it first turns
	// that into an error (on kernels from 5.14).
	if err := populate(m[:min(len(m), pageSize)]); err != nil || !mappable(m) {
		unix.Munmap(m)
		return nil
	}
	return m
}

func munmap(m []byte) error { return unix.Munmap(m) }

// adviseDone tells the kernel that pages m (page-aligned) are not needed
// for now. For a shared file mapping this drops only the page table
// entries: touching the pages again maps them in again from the page
// cache (or the file), with the same contents.
func adviseDone(m []byte) { unix.Madvise(m, unix.MADV_DONTNEED) }

// populate maps pages m (starting on a page boundary) in one call rather
// than a fault every few pages, which measured faster when the page
// cache holds the file in small folios. It returns an error only when some
// page cannot be read (EFAULT: touching it would raise SIGBUS), and not
// when the kernel is too old to populate (before 5.14).
func populate(m []byte) error {
	if len(m) == 0 {
		return nil
	}
	if err := unix.Madvise(m, unix.MADV_POPULATE_READ); errors.Is(err, unix.EFAULT) {
		return err
	}
	return nil
}
