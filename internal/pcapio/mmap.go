package pcapio

import (
	"fmt"
	"io"
	"os"
)

// Reading a file in place (see Open): the file is mapped read-only and
// whole, but the reader takes it a window at a time. Before moving into
// the next window it checks the file has not shrunk, releases the pages
// behind the read position, and asks the kernel to map the whole window at
// once.
const (
	// mmapMinSize is the smallest file Open maps: a smaller one takes a
	// single read call into the initial buffer anyway.
	mmapMinSize = initialBufSize

	// mmapWindow is how much of a mapped file is made available at a time.
	// The pages mapped into the process stay within about two windows.
	mmapWindow = 4 << 20
)

var pageSize = os.Getpagesize()

// fillInPlace is fill for an input that is all in memory: it moves end
// forward to at least pos+n, by a window or more, or to the end of the
// input (then rerr is io.EOF), or, for a mapped file that has shrunk since
// it was opened, as far as what is left of it (then rerr says so).
func (r *Reader) fillInPlace(n int) {
	if r.rerr != nil || r.end-r.pos >= n {
		return
	}
	size, eof := len(r.buf), error(io.EOF)
	if r.mapping != nil {
		// The pages behind pos are done with (as far as this reader
		// knows: a caller may still hold frames there, and touching them
		// maps them in again, unchanged).
		if stop := r.pos &^ (pageSize - 1); stop > r.released {
			adviseDone(r.mapping[r.released:stop])
			r.released = stop
		}
		// Past the end of a file that shrank, the mapping has no pages
		// left: touching one would kill the process (SIGBUS).
		if now := r.fileSize(); now < int64(size) {
			size, eof = max(int(max(now, 0)), r.pos), errShrank(now)
		}
	}
	end := r.pos + max(n, r.window)
	if end >= size || end < r.pos {
		end = size
	}
	if r.mapping != nil && end > r.end {
		if err := populate(r.mapping[r.end&^(pageSize-1) : end]); err != nil {
			// Some page could not be read: the file shrank just now,
			// or an I/O error.
			if now := r.fileSize(); now < int64(len(r.buf)) {
				size, eof = max(int(max(now, 0)), r.pos), errShrank(now)
				end = min(end, size)
			} else {
				size, end, eof = r.end, r.end, fmt.Errorf("reading the mapped file: %w", err)
			}
		}
	}
	r.end = end
	if end == size {
		r.rerr = eof
	}
}

// fileSize returns the mapped file's size now.
func (r *Reader) fileSize() int64 {
	if fi, err := r.file.Stat(); err == nil {
		return fi.Size()
	}
	return int64(len(r.buf)) // no news is good news: the file is still there
}

func errShrank(size int64) error {
	return fmt.Errorf("the file shrank to %d bytes while being read", size)
}
