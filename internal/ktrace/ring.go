package ktrace

import (
	"encoding/binary"
	"fmt"
)

// Ring-buffer record types (include/linux/ring_buffer.h), stored in the low
// five bits of each record's header word; values 1..28 are data records whose
// length is type_len*4.
const (
	rbTypePadding    = 29 // discarded event, or the unused rest of a page when time_delta is 0
	rbTypeTimeExtend = 30 // adds (array[0] << 27 | time_delta) to the running timestamp
	rbTypeTimeStamp  = 31 // absolute timestamp, same encoding
	rbTSShift        = 27 // width of the time_delta bits

	// Flags in the page header's commit word (kernel/trace/ring_buffer.c).
	rbMissedEvents = 1 << 31 // events were lost before this page
	rbMissedStored = 1 << 30 // their count follows the data
	rbCommitMask   = 1<<27 - 1
)

// pageLayout says where a sub-buffer's header fields are, from
// events/header_page.
type pageLayout struct {
	tsOff, commitOff, commitSize, dataOff int
}

// layoutFromHeader reads a pageLayout from the parsed header_page format.
func layoutFromHeader(f *eventFormat) (pageLayout, error) {
	ts, ok1 := f.fields["timestamp"]
	commit, ok2 := f.fields["commit"]
	data, ok3 := f.fields["data"]
	if !ok1 || !ok2 || !ok3 || ts.size != 8 || (commit.size != 4 && commit.size != 8) {
		return pageLayout{}, fmt.Errorf("header_page: unexpected layout")
	}
	return pageLayout{tsOff: ts.offset, commitOff: commit.offset, commitSize: commit.size, dataOff: data.offset}, nil
}

// walkPage calls fn for every data record of one sub-buffer read from
// trace_pipe_raw, with its timestamp in trace-clock units. It returns the
// number of events the kernel reports lost before this page (1 if it lost some
// but did not say how many). A page that does not make sense is cut short, not
// an error: the records before the damage are still delivered.
func walkPage(page []byte, l pageLayout, fn func(ts uint64, rec []byte)) (lost uint64) {
	if len(page) < l.dataOff || len(page) < l.commitOff+l.commitSize || len(page) < l.tsOff+8 {
		return 0
	}
	ts := binary.NativeEndian.Uint64(page[l.tsOff:])
	var commit uint64
	if l.commitSize == 8 {
		commit = binary.NativeEndian.Uint64(page[l.commitOff:])
	} else {
		commit = uint64(binary.NativeEndian.Uint32(page[l.commitOff:]))
	}
	size := int(commit & rbCommitMask)
	if size > len(page)-l.dataOff {
		size = len(page) - l.dataOff
	}
	data := page[l.dataOff : l.dataOff+size]
	if commit&rbMissedEvents != 0 {
		lost = 1
		if commit&rbMissedStored != 0 && l.dataOff+size+l.commitSize <= len(page) {
			if l.commitSize == 8 {
				lost = binary.NativeEndian.Uint64(page[l.dataOff+size:])
			} else {
				lost = uint64(binary.NativeEndian.Uint32(page[l.dataOff+size:]))
			}
		}
	}
	pageTS := ts
	for off := 0; off+4 <= len(data); {
		hdr := binary.NativeEndian.Uint32(data[off:])
		typeLen, delta := hdr&0x1f, uint64(hdr>>5)
		var array uint32
		if off+8 <= len(data) {
			array = binary.NativeEndian.Uint32(data[off+4:])
		}
		switch typeLen {
		case rbTypePadding:
			if delta == 0 {
				return lost // the rest of the page is padding
			}
			// A discarded event; the kernel's reader ignores its delta.
			off += 4 + int(array)
		case rbTypeTimeExtend:
			ts += uint64(array)<<rbTSShift | delta
			off += 8
		case rbTypeTimeStamp:
			ts = fixAbsTS(uint64(array)<<rbTSShift|delta, pageTS)
			off += 8
		case 0: // long record: array[0] is its length including array[0] itself
			n := int(array)
			if n < 4 || off+4+n > len(data) {
				return lost
			}
			ts += delta
			fn(ts, data[off+8:off+4+n])
			off += 4 + (n+3)&^3
		default:
			n := int(typeLen) * 4
			if off+4+n > len(data) {
				return lost
			}
			ts += delta
			fn(ts, data[off+4:off+4+n])
			off += 4 + n
		}
	}
	return lost
}

// fixAbsTS restores the top bits an absolute-timestamp record cannot hold
// (kernel rb_fix_abs_ts): it stores only 59 bits.
func fixAbsTS(abs, ref uint64) uint64 {
	const msb = uint64(0xf8) << 56
	if ref&msb != 0 {
		abs |= ref & msb
		if abs < ref {
			abs += 1 << 59
		}
	}
	return abs
}
