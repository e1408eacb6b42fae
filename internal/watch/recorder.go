package watch

import (
	"encoding/binary"

	"github.com/rstscope/rstscope/internal/source"
)

// recorder is the flight recorder: the last packets captured, kept in one
// preallocated circular byte buffer so that memory stays flat however long
// watch runs and however fast packets come (no allocation per packet, nothing
// for the garbage collector to chase).
//
// Each record is a fixed header followed by the captured bytes:
//
//	seq      uint64  packet number (1-based, increasing by one)
//	ts       int64   capture time, Unix ns
//	origLen  uint32  length on the wire
//	capLen   uint32  bytes stored after the header
//
// A record never wraps around the end of the buffer: when it does not fit
// before the end, the tail jumps to offset 0 and the unused end is skipped.
// Records older than the time limit are evicted, and the oldest ones are
// evicted to make room, but never a record whose seq is at or after protect:
// those have not been analysed yet (see Watcher.pending) and add reports
// false instead, so the caller can analyse them first.
//
// Kernel reasons are attached to records after they are stored (when the
// RST is joined to its event); they are kept in comments, in seq order.
type recorder struct {
	buf     []byte
	head    int // offset of the oldest record
	tail    int // offset where the next record goes
	end     int // when wrapped: where the records before offset 0 end
	wrapped bool
	n       int    // records held
	first   uint64 // seq of the oldest record
	next    uint64 // seq the next record gets
	bytes   int    // bytes held, headers included
	newest  int64  // ts of the newest record
	maxAge  int64  // ns

	comments []recComment
	evicted  uint64
}

type recComment struct {
	seq  uint64
	text string
}

const recHeader = 24

func newRecorder(size int, maxAge int64) *recorder {
	if size < 1<<16 {
		size = 1 << 16
	}
	return &recorder{buf: make([]byte, size), maxAge: maxAge, first: 1, next: 1}
}

// add stores f and returns its seq and offset, or false if the record would need room
// held by records at or after protect (or is larger than the buffer).
func (r *recorder) add(f *source.Frame, protect uint64) (seq uint64, off int, ok bool) {
	size := recHeader + len(f.Data)
	if size > len(r.buf) {
		return 0, 0, false
	}
	if f.Timestamp > r.newest {
		r.newest = f.Timestamp
	}
	r.expire(protect)
	off = -1
	for off < 0 {
		if r.n == 0 {
			r.head, r.tail, r.end, r.wrapped = 0, 0, 0, false
		}
		switch {
		case !r.wrapped && len(r.buf)-r.tail >= size:
			off = r.tail
		case !r.wrapped && r.head >= size:
			r.end, r.wrapped = r.tail, true
			off = 0
		case r.wrapped && r.head-r.tail >= size:
			off = r.tail
		default:
			if r.n == 0 || r.first >= protect {
				return 0, 0, false
			}
			r.evict()
		}
	}
	b := r.buf[off:]
	binary.LittleEndian.PutUint64(b[0:], r.next)
	binary.LittleEndian.PutUint64(b[8:], uint64(f.Timestamp))
	binary.LittleEndian.PutUint32(b[16:], uint32(f.OrigLen))
	binary.LittleEndian.PutUint32(b[20:], uint32(len(f.Data)))
	copy(b[recHeader:], f.Data)
	r.tail = off + size
	r.n++
	r.bytes += size
	seq = r.next
	r.next++
	return seq, off, true
}

// expire evicts records older than maxAge before the newest one, except
// those at or after protect.
func (r *recorder) expire(protect uint64) {
	for r.n > 0 && r.first < protect {
		if ts := int64(binary.LittleEndian.Uint64(r.buf[r.head+8:])); ts >= r.newest-r.maxAge {
			return
		}
		r.evict()
	}
}

// evict drops the oldest record.
func (r *recorder) evict() {
	size := recHeader + int(binary.LittleEndian.Uint32(r.buf[r.head+20:]))
	r.head += size
	r.bytes -= size
	r.n--
	r.first++
	r.evicted++
	if r.wrapped && r.head == r.end {
		r.head, r.wrapped = 0, false
	}
	if r.n == 0 {
		r.head, r.tail, r.end, r.wrapped = 0, 0, 0, false
	}
	for len(r.comments) > 0 && r.comments[0].seq < r.first {
		r.comments[0] = recComment{}
		r.comments = r.comments[1:]
	}
}

// comment attaches text to record seq. Comments must be added in seq order
// (they are: RSTs are joined in capture order).
func (r *recorder) comment(seq uint64, text string) {
	if seq < r.first {
		return
	}
	if len(r.comments) == cap(r.comments) && len(r.comments) > 0 {
		// Compact instead of growing when the front has been consumed.
		r.comments = append(make([]recComment, 0, 2*len(r.comments)), r.comments...)
	}
	r.comments = append(r.comments, recComment{seq, text})
}

// commentOf returns the comment of record seq, if any.
func (r *recorder) commentOf(seq uint64) string {
	lo, hi := 0, len(r.comments)
	for lo < hi {
		m := (lo + hi) / 2
		if r.comments[m].seq < seq {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(r.comments) && r.comments[lo].seq == seq {
		return r.comments[lo].text
	}
	return ""
}

// cursor walks the records from the oldest; get fills a frame from one.
type cursor struct {
	off     int
	wrapped bool
	left    int
}

func (r *recorder) begin() cursor { return cursor{off: r.head, wrapped: r.wrapped, left: r.n} }

// nextRecord fills f (Data aliases the buffer, valid until the next add)
// with the record at c and advances c; it returns the record's seq, or
// false at the end.
func (r *recorder) nextRecord(c *cursor, f *source.Frame, linkType uint32) (uint64, bool) {
	if c.left == 0 {
		return 0, false
	}
	if c.wrapped && c.off == r.end {
		c.off, c.wrapped = 0, false
	}
	seq := r.fill(c.off, f, linkType)
	c.off += recHeader + len(f.Data)
	c.left--
	return seq, true
}

func (r *recorder) fill(off int, f *source.Frame, linkType uint32) uint64 {
	b := r.buf[off:]
	seq := binary.LittleEndian.Uint64(b)
	n := int(binary.LittleEndian.Uint32(b[20:]))
	*f = source.Frame{
		Timestamp: int64(binary.LittleEndian.Uint64(b[8:])),
		LinkType:  linkType,
		OrigLen:   int(binary.LittleEndian.Uint32(b[16:])),
		Data:      b[recHeader : recHeader+n : recHeader+n],
		Offset:    -1,
	}
	f.Comment = r.commentOf(seq)
	return seq
}

// oldestTS returns the capture time of the oldest record (0 if empty).
func (r *recorder) oldestTS() int64 {
	if r.n == 0 {
		return 0
	}
	return int64(binary.LittleEndian.Uint64(r.buf[r.head+8:]))
}
