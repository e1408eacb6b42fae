// Package pcapio reads and writes packet capture files: classic pcap
// (microsecond and nanosecond, either byte order), pcapng (any number of
// sections and interfaces, either byte order) and either of them gzipped.
//
// The reader is hand-written rather than built on gopacket/pcapgo for two
// reasons: speed (one large buffer, no allocation per packet, Frame.Data
// points into the buffer) and correctness on the inputs rstscope cares about
// (pcapgo silently drops pcapng packets whose interface has a different link
// type than the first one, and does not check a block's captured length
// against the block).
//
// Every length read from a file is checked before it is used, so no input
// makes the reader panic, and memory stays bounded: the buffer grows only as
// far as the largest record actually present, and never beyond 16 MiB.
package pcapio

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode"

	"github.com/rstscope/rstscope/internal/source"
)

const (
	// initialBufSize is the buffer a Reader starts with. Small files never
	// need more; the first time the buffer has to be refilled it grows to
	// bufSize, so reading a large file costs one read call per MiB.
	initialBufSize = 64 << 10
	bufSize        = 1 << 20

	// maxBlockLen bounds a pcapng block, and so the reader's buffer.
	maxBlockLen = 16 << 20

	// maxPcapCaplen is the largest captured length accepted in a classic
	// pcap record when the file header's snaplen is not larger: libpcap's
	// MAXIMUM_SNAPLEN.
	maxPcapCaplen = 262144
)

// Capture file magic numbers, as the first four bytes of the file.
var (
	magicGzip   = []byte{0x1f, 0x8b}
	magicPcapng = []byte{0x0a, 0x0d, 0x0d, 0x0a}
)

const (
	pcapMagicMicro = 0xa1b2c3d4
	pcapMagicNano  = 0xa1b23c4d
)

// FormatError says where a capture file went wrong.
type FormatError struct {
	Offset int64  // byte offset of the record in the (decompressed) file
	Record int    // 1-based number of the record (pcap packet record or pcapng block); 0 is the pcap file header
	Msg    string // what is wrong
	Err    error  // underlying read error, if any (e.g. a corrupt gzip stream)
}

// Error returns "record N at offset X: msg", or "file header at offset 0: msg"
// for a classic pcap file header.
func (e *FormatError) Error() string {
	if e.Record == 0 {
		return fmt.Sprintf("file header at offset %d: %s", e.Offset, e.Msg)
	}
	return fmt.Sprintf("record %d at offset %d: %s", e.Record, e.Offset, e.Msg)
}

// Unwrap returns the underlying read error, if any.
func (e *FormatError) Unwrap() error { return e.Err }

// errClosed is returned by Next after Close.
var errClosed = errors.New("pcapio: reader is closed")

// Reader reads frames from a pcap or pcapng file, gzipped or not. It
// implements source.Source.
type Reader struct {
	// Input: raw counts bytes taken from the caller's reader; src is what the
	// records are parsed from (raw itself, or a gzip reader on top of it).
	raw    countingReader
	src    io.Reader
	gz     *gzip.Reader
	closer io.Closer // the file Open opened, if any

	// The buffer: unread bytes are buf[pos:end], and buf[pos] is at offset
	// off in the (decompressed) stream.
	buf      []byte
	pos, end int
	off      int64
	rerr     error // sticky error from src, io.EOF included

	err    error // sticky error from Next
	record int   // number of records (pcap) or blocks (pcapng) consumed
	ng     bool
	format string

	linkTypes []uint32            // distinct, in order of first appearance
	linkSeen  map[uint32]struct{} // the same, for lookup

	// Classic pcap.
	pcap pcapState

	// pcapng.
	png pcapngState

	// A file mapped into memory (OpenMapped), whose buffer is the mapping.
	mapped mapping
}

type pcapState struct {
	big         bool
	nano        bool
	linkType    uint32
	snaplen     int
	maxCaplen   int
	overSnaplen int
}

// countingReader counts the bytes read through it, for BytesRead.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// NewReader reads the start of r to find out what it holds: gzip (and then
// sniffs again inside), classic pcap with microsecond (a1b2c3d4) or
// nanosecond (a1b23c4d) timestamps in either byte order, or pcapng (a section
// header block, either byte order). Any other input is an error saying what
// its first bytes were.
func NewReader(r io.Reader) (*Reader, error) {
	if r == nil {
		return nil, errors.New("pcapio: nil reader")
	}
	rd := &Reader{buf: make([]byte, initialBufSize)}
	rd.raw.r = r
	rd.src = &rd.raw
	rd.fill(4)
	head := rd.buf[rd.pos:rd.end]
	if len(head) >= 2 && head[0] == magicGzip[0] && head[1] == magicGzip[1] {
		// Hand what is already buffered, then the rest, to gzip; the
		// decompressed stream starts again at offset 0.
		pre := append([]byte(nil), head...)
		zr, err := gzip.NewReader(io.MultiReader(bytes.NewReader(pre), &rd.raw))
		if err != nil {
			return nil, fmt.Errorf("reading gzip header: %w", err)
		}
		rd.gz = zr
		rd.src = zr
		rd.pos, rd.end, rd.rerr = 0, 0, nil
		rd.fill(4)
		head = rd.buf[rd.pos:rd.end]
		rd.format = "gzip+"
	}
	if rd.rerr != nil && rd.rerr != io.EOF && len(head) < 4 {
		return nil, fmt.Errorf("reading capture file: %w", rd.rerr)
	}
	if len(head) < 4 {
		return nil, notCapture(rd, head)
	}
	if err := rd.start(head); err != nil {
		return nil, err
	}
	return rd, nil
}

// start tells the format from head, the input's first four bytes (after
// any gzip header), and reads a classic pcap file header.
func (rd *Reader) start(head []byte) error {
	if string(head[:4]) == string(magicPcapng) {
		rd.ng = true
		rd.format += "pcapng"
		return nil
	}
	switch m := le32(head); m {
	case pcapMagicMicro, pcapMagicNano:
		rd.pcap.nano = m == pcapMagicNano
	default:
		switch m = be32(head); m {
		case pcapMagicMicro, pcapMagicNano:
			rd.pcap.big = true
			rd.pcap.nano = m == pcapMagicNano
		default:
			return notCapture(rd, head)
		}
	}
	rd.format += "pcap"
	if rd.pcap.nano {
		rd.format += " (ns)"
	}
	return rd.readPcapHeader()
}

// notCapture describes the start of an input that is not a capture file.
func notCapture(rd *Reader, head []byte) error {
	inside := ""
	if rd.gz != nil {
		inside = " (inside gzip)"
	}
	if rd.fill(16); rd.end-rd.pos > 0 {
		head = rd.buf[rd.pos:min(rd.end, rd.pos+16)]
	}
	if len(head) == 0 {
		return fmt.Errorf("not a capture file%s: empty input", inside)
	}
	text := make([]rune, 0, len(head))
	for _, b := range head {
		if b < 0x80 && unicode.IsPrint(rune(b)) {
			text = append(text, rune(b))
		} else {
			text = append(text, '.')
		}
	}
	return fmt.Errorf("not a capture file%s: starts with % x (%q)", inside, head, string(text))
}

// Open opens the capture file at path; "-" means stdin (os.Stdin if stdin
// is nil). Closing the returned Reader closes the file, but not stdin.
func Open(path string, stdin io.Reader) (*Reader, error) {
	if path == "-" {
		if stdin == nil {
			stdin = os.Stdin
		}
		r, err := NewReader(stdin)
		if err != nil {
			return nil, fmt.Errorf("standard input: %w", err)
		}
		return r, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var r *Reader
	if fi, serr := f.Stat(); serr == nil && fi.Mode().IsRegular() {
		r, err = NewReaderAt(f, fi.Size())
	} else {
		r, err = NewReader(f) // a FIFO, a device: read once, as it comes
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r.closer = f
	return r, nil
}

// NewReaderAt is NewReader over the first size bytes of ra: Open reads a
// regular file up to the size it had when opened, so that a capture
// tcpdump is still writing is read consistently.
func NewReaderAt(ra io.ReaderAt, size int64) (*Reader, error) {
	return NewReader(io.NewSectionReader(ra, 0, size))
}

// Next fills f with the next frame. f.Data and f.Comment are valid until
// the next call. It returns io.EOF at the clean end of the input; a damaged
// input gives a *FormatError (frames before it remain valid), and every
// later call returns the same error.
func (r *Reader) Next(f *source.Frame) error {
	if r.err != nil {
		return r.err
	}
	r.release()
	return r.next(f)
}

// release gives back the mapped input behind the frames returned so far,
// once there is a dropStep of it: those frames are no longer valid.
func (r *Reader) release() {
	if m := &r.mapped; m.data != nil && r.off-m.dropped >= dropStep {
		r.drop(r.off)
	}
}

// next reads one frame of either format into f; an error is kept, for
// every later call to return.
func (r *Reader) next(f *source.Frame) error {
	var err error
	if r.ng {
		err = r.nextPcapng(f)
	} else {
		err = r.nextPcap(f)
	}
	if err != nil {
		r.err = err
	}
	return err
}

// NextBatch fills fs with the next frames, as that many calls to Next
// would, and returns how many: at least one (for a non-empty fs), or none
// and the error Next would have returned (io.EOF at the end; sticky, like
// Next's). The frames are
// valid until the next call to NextBatch or Next. It may return fewer than
// len(fs) frames before the end: it stops where the buffer would have to
// be refilled, which would move the bytes under the frames it returned.
//
// For classic pcap it takes the records already buffered (a whole mapped
// file, or a read buffer's worth) in one loop: on the bench capture about
// 80 instructions a frame, against 120 through Next (callgrind).
func (r *Reader) NextBatch(fs []source.Frame) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(fs) == 0 {
		return 0, nil
	}
	r.release()
	if r.mapped.data != nil {
		r.fetchAhead()
	}
	if !r.ng {
		if n := r.pcapRun(fs); n > 0 {
			return n, nil
		}
	}
	if err := r.next(&fs[0]); err != nil {
		return 0, err
	}
	return 1, nil
}

// Close releases the buffer (or the mapping: frames are invalid from then
// on) and closes the file if Open opened it.
func (r *Reader) Close() error {
	if r.err == errClosed {
		return nil
	}
	r.err = errClosed
	r.buf = nil
	r.unmap()
	r.pos, r.end = 0, 0
	var err error
	if r.gz != nil {
		err = r.gz.Close()
	}
	if r.closer != nil {
		if cerr := r.closer.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Format names the file format: "pcap", "pcap (ns)" or "pcapng", prefixed
// with "gzip+" when the input is gzip-compressed.
func (r *Reader) Format() string { return r.format }

// LinkTypes returns the distinct link types seen so far, in order of first
// appearance: the file header's for pcap, every interface description
// block's for pcapng.
func (r *Reader) LinkTypes() []uint32 { return append([]uint32(nil), r.linkTypes...) }

// BytesRead returns how many bytes of the input (compressed bytes for gzip)
// have been consumed so far, for progress reporting. Because of read-ahead
// it runs up to a buffer's size ahead of the frames returned.
func (r *Reader) BytesRead() int64 {
	if r.mapped.data != nil {
		return r.off
	}
	return r.raw.n
}

// OverSnaplen returns how many classic pcap records so far had a captured
// length larger than the file header's snaplen. Such records are accepted
// (some writers get the header wrong), up to 262144 bytes.
func (r *Reader) OverSnaplen() int { return r.pcap.overSnaplen }

func (r *Reader) addLinkType(lt uint32) {
	if _, ok := r.linkSeen[lt]; ok {
		return
	}
	if r.linkSeen == nil {
		r.linkSeen = make(map[uint32]struct{})
	}
	r.linkSeen[lt] = struct{}{}
	r.linkTypes = append(r.linkTypes, lt)
}

// fill tries to make at least n bytes available in buf[pos:end]; n must be
// at most maxBlockLen plus a few bytes. Fewer are available only when the
// input ended or failed (then r.rerr is set). The buffer grows only as far
// as data actually arrives, so a bogus length does not allocate.
func (r *Reader) fill(n int) {
	empty := 0
	for r.end-r.pos < n && r.rerr == nil {
		if r.end == len(r.buf) {
			r.makeRoom(n)
		}
		m, err := r.src.Read(r.buf[r.end:])
		r.end += m
		if err != nil {
			r.rerr = err
		} else if m == 0 {
			if empty++; empty >= 100 {
				r.rerr = io.ErrNoProgress
			}
		}
	}
}

// makeRoom makes space to read into once the buffer is full to its end:
// it moves the unread bytes to the front, and grows the buffer to bufSize
// the first time, and beyond (doubling, up to n) only when the unread bytes
// fill all of it and n bytes are still needed.
func (r *Reader) makeRoom(n int) {
	avail := r.end - r.pos
	size := len(r.buf)
	switch {
	case size < bufSize:
		size = bufSize
	case avail == size:
		size = min(2*size, n)
	}
	if size != len(r.buf) {
		nb := make([]byte, size)
		copy(nb, r.buf[r.pos:r.end])
		r.buf = nb
	} else {
		copy(r.buf, r.buf[r.pos:r.end])
	}
	r.pos, r.end = 0, avail
}

// skip discards n bytes of input, reading through the buffer without
// growing it. It reports how many bytes it could discard.
func (r *Reader) skip(n int64) int64 {
	var done int64
	for done < n {
		if r.end == r.pos {
			r.fill(1)
			if r.end == r.pos {
				break
			}
		}
		k := int(min(n-done, int64(r.end-r.pos)))
		r.consume(k)
		done += int64(k)
	}
	return done
}

// consume advances past n buffered bytes.
func (r *Reader) consume(n int) {
	r.pos += n
	r.off += int64(n)
}

// truncated builds the error for an input that ends inside the record
// at offset off, which should be want bytes long and of which have bytes
// are present.
func (r *Reader) truncated(record int, off, have, want int64) error {
	e := &FormatError{Offset: off, Record: record,
		Msg: fmt.Sprintf("file ends inside record %d: have %d of %d bytes", record, have, want)}
	switch r.rerr {
	case nil, io.EOF:
	case io.ErrUnexpectedEOF: // a cut gzip stream
		e.Msg += " (compressed stream cut short)"
		e.Err = r.rerr
	default:
		e.Msg = fmt.Sprintf("read failed after %d of %d bytes: %v", have, want, r.rerr)
		e.Err = r.rerr
	}
	return e
}

func (r *Reader) formatErr(record int, format string, args ...any) *FormatError {
	return &FormatError{Offset: r.off, Record: record, Msg: fmt.Sprintf(format, args...)}
}

func le16(b []byte) uint16 { _ = b[1]; return uint16(b[0]) | uint16(b[1])<<8 }
func be16(b []byte) uint16 { _ = b[1]; return uint16(b[1]) | uint16(b[0])<<8 }
func le32(b []byte) uint32 {
	_ = b[3]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
func be32(b []byte) uint32 {
	_ = b[3]
	return uint32(b[3]) | uint32(b[2])<<8 | uint32(b[1])<<16 | uint32(b[0])<<24
}
