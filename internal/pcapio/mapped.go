package pcapio

import (
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"github.com/rstscope/rstscope/internal/prefetch"
)

// A mapped file. OpenMapped maps a regular, uncompressed capture file into
// memory and parses it there: no read calls, and a frame's Data points into
// the mapping. On the bench capture (919 MB on tmpfs) that takes the
// kernel's copy of every byte off the path every packet takes: 8% less time
// on one goroutine (see docs/design.md, "Reading a file in place").
//
// Two things come with it. Memory: the mapped pages a reader touched count
// as the process's resident memory, so they are given back (madvise
// MADV_DONTNEED) behind the reader, dropStep bytes at a time. Faults: a
// file truncated while it is mapped (tcpdump -W reusing a ring file) makes
// a touch of a page past its new end fault with SIGBUS, which kills a Go
// program unless the goroutine set debug.SetPanicOnFault: the consumer must
// read under it and hand what it recovers to Fault. Frames are valid until
// the next call to Next, as from any Reader; the mapping goes with Close.

// dropStep is how much released input is given back to the kernel at once
// (a variable for the tests). Each madvise call also flushes the other
// CPUs' TLBs for the mapping; on the bench capture 4 MiB steps took two
// goroutines from 0.63 to 0.605 s against 2 MiB (medians of 8 alternating
// runs), for 2 MB more at the peak (8 MiB: 0.60 s, but --json up to 98 MB).
var dropStep int64 = 4 << 20

// mapping is the mapped state of a Reader.
type mapping struct {
	data    []byte // the whole mapping; nil when not mapped
	dropped int64  // input before this offset is given back (page aligned)
	fetched int64  // input before this offset was prefetched (line aligned)
	// mmapped: data is a mapping of mapFile's, to give back and unmap
	// (false for a parse of memory the tests hand over: madvise would
	// zero heap memory).
	mmapped bool
}

var errNotMappable = errors.New("not mappable")

// OpenMapped is Open for a consumer that reads under
// debug.SetPanicOnFault (engine.Run does): a regular file that is not
// gzip-compressed is mapped into memory, up to the size it had when
// opened; anything else (stdin, a FIFO, gzip, an empty file, a platform
// without mmap) is read as Open reads it.
func OpenMapped(path string, stdin io.Reader) (*Reader, error) {
	if path == "-" {
		return Open(path, stdin)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() < 4 || int64(int(fi.Size())) != fi.Size() {
		f.Close()
		return Open(path, nil)
	}
	data, err := mapFile(f, fi.Size())
	f.Close() // the mapping stays valid without the descriptor
	if err != nil {
		return Open(path, nil)
	}
	if data[0] == magicGzip[0] && data[1] == magicGzip[1] {
		unmapFile(data)
		return Open(path, nil)
	}
	rd, err := newMapped(data, true)
	if err != nil {
		unmapFile(data)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rd, nil
}

// newMapped parses the capture in data, which it owns from then on (Close
// unmaps it if mmapped).
func newMapped(data []byte, mmapped bool) (*Reader, error) {
	rd := &Reader{buf: data, end: len(data), rerr: io.EOF}
	rd.mapped = mapping{data: data, mmapped: mmapped}
	if len(data) < 4 {
		return nil, notCapture(rd, data)
	}
	if err := rd.start(data[:4]); err != nil {
		return nil, err
	}
	return rd, nil
}

// Mapped reports whether the reader parses a file mapped into memory.
func (r *Reader) Mapped() bool { return r.mapped.data != nil }

// fetchDistance is how far ahead of the reader NextBatch has the CPU load
// the mapped input (see Reader.fetchAhead).
const fetchDistance = 8 << 10

// fetchAhead asks the CPU to load the mapped input up to fetchDistance bytes
// past the reader, 8 lines or more at a time (prefetch.Lines: it does not
// wait for them, and never faults, even past a file cut short).
//
// Every frame passes through this goroutine, and its first read of a
// frame's record header was the largest single cost of a sharded run:
// 13% of all CPU samples on the bench capture, all of it waiting for
// memory. The hardware's own prefetcher follows the stream only within a
// 4 KiB page, and the file's pages are 4 KiB (page cache). With the
// prefetch that read fell to 5% of the samples, and two goroutines took
// 0.62 s instead of 0.69 (medians of 10 alternating runs; 2 KiB ahead:
// 0.65 s, 4 KiB: 0.63 s, 32 KiB: 0.68 s). Populating the page tables
// ahead as well (MADV_POPULATE_READ, 256 KiB or 1 MiB at a time), so that
// no prefetch is dropped at a page not yet mapped, gained nothing more.
func (r *Reader) fetchAhead() {
	m := &r.mapped
	to := min(r.off+fetchDistance, int64(len(m.data)))
	from := max(m.fetched, r.off) &^ (prefetch.LineSize - 1)
	if to-from < 8*prefetch.LineSize {
		return
	}
	prefetch.Lines(unsafe.Pointer(&m.data[from]), int((to-from)/prefetch.LineSize))
	m.fetched = to &^ (prefetch.LineSize - 1)
}

// drop gives back the pages of the mapping wholly before offset off, once
// there are dropStep bytes of them.
func (r *Reader) drop(off int64) {
	m := &r.mapped
	off = min(off, int64(len(m.data))) &^ (pageSize - 1)
	if off-m.dropped < dropStep {
		return
	}
	if m.mmapped {
		dontNeed(m.data[m.dropped:off])
	}
	m.dropped = off
}

// Fault turns v, a value recovered by a goroutine that touched this
// reader's frames under debug.SetPanicOnFault, into an error if it is a
// memory fault inside the mapping: the file was truncated while being
// read. Anything else gives nil, for the caller to panic again with.
func (r *Reader) Fault(v any) error {
	fe, ok := v.(interface{ Addr() uintptr })
	if !ok || r.mapped.data == nil {
		return nil
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(r.mapped.data)))
	a := fe.Addr()
	if a < base || a >= base+uintptr(len(r.mapped.data)) {
		return nil
	}
	return &ShrankError{Offset: int64(a - base)}
}

// ShrankError is Fault's error: a mapped file was cut short while it was
// read, and touching Offset faulted.
type ShrankError struct{ Offset int64 }

func (e *ShrankError) Error() string {
	return fmt.Sprintf("the file shrank while it was being read (reading offset %d faulted: truncated by another program?)", e.Offset)
}

// unmap releases the mapping (Close).
func (r *Reader) unmap() {
	if r.mapped.mmapped {
		unmapFile(r.mapped.data)
	}
	r.mapped = mapping{}
}
