//go:build unix

package pcapio

import (
	"os"

	"golang.org/x/sys/unix"
)

var pageSize = int64(os.Getpagesize())

func mapFile(f *os.File, size int64) ([]byte, error) {
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	unix.Madvise(data, unix.MADV_SEQUENTIAL) // read-ahead for files on disk
	return data, nil
}

func unmapFile(data []byte) { unix.Munmap(data) }

// dontNeed drops b's pages from the process (they stay in the page cache).
func dontNeed(b []byte) { unix.Madvise(b, unix.MADV_DONTNEED) }
