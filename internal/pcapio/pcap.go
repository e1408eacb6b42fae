package pcapio

import (
	"io"

	"github.com/rstscope/rstscope/internal/source"
)

// Classic pcap layout: a 24-byte file header, then records of a 16-byte
// header (seconds, micro- or nanoseconds, captured length, original
// length) followed by the captured bytes.
const (
	pcapFileHeaderLen   = 24
	pcapRecordHeaderLen = 16

	// linkTypeMask keeps the link type of the header's network field; the
	// upper bits may carry the FCS length (libpcap's LT_LINKTYPE).
	linkTypeMask = 0x03ffffff
)

// readPcapHeader reads the classic pcap file header; the magic has been
// checked already.
func (r *Reader) readPcapHeader() error {
	r.fill(pcapFileHeaderLen)
	if have := r.end - r.pos; have < pcapFileHeaderLen {
		e := r.formatErr(0, "file ends inside the file header: have %d of %d bytes", have, pcapFileHeaderLen)
		if r.rerr != nil && r.rerr != io.EOF {
			e.Err = r.rerr
		}
		return e
	}
	h := r.buf[r.pos : r.pos+pcapFileHeaderLen]
	u16, u32 := le16, le32
	if r.pcap.big {
		u16, u32 = be16, be32
	}
	if major, minor := u16(h[4:]), u16(h[6:]); major != 2 {
		return r.formatErr(0, "unsupported pcap version %d.%d", major, minor)
	}
	snaplen := min(uint64(u32(h[16:])), maxBlockLen)
	r.pcap.snaplen = int(snaplen)
	r.pcap.maxCaplen = max(maxPcapCaplen, min(r.pcap.snaplen, maxBlockLen-pcapRecordHeaderLen))
	r.pcap.linkType = u32(h[20:]) & linkTypeMask
	r.addLinkType(r.pcap.linkType)
	r.consume(pcapFileHeaderLen)
	return nil
}

// nextPcap reads one classic pcap record. This is the hot path: it does
// not allocate.
func (r *Reader) nextPcap(f *source.Frame) error {
	rec := r.record + 1
	if r.end-r.pos < pcapRecordHeaderLen {
		r.fill(pcapRecordHeaderLen)
		if have := r.end - r.pos; have < pcapRecordHeaderLen {
			if have == 0 && r.rerr == io.EOF {
				return io.EOF
			}
			return r.truncated(rec, r.off, int64(have), pcapRecordHeaderLen)
		}
	}
	h := r.buf[r.pos : r.pos+pcapRecordHeaderLen]
	var sec, frac, caplen, orig uint32
	if r.pcap.big {
		sec, frac, caplen, orig = be32(h), be32(h[4:]), be32(h[8:]), be32(h[12:])
	} else {
		sec, frac, caplen, orig = le32(h), le32(h[4:]), le32(h[8:]), le32(h[12:])
	}
	if uint64(caplen) > uint64(r.pcap.maxCaplen) {
		return r.formatErr(rec, "captured length %d is larger than %d", caplen, r.pcap.maxCaplen)
	}
	if int(caplen) > r.pcap.snaplen && r.pcap.snaplen > 0 {
		r.pcap.overSnaplen++
	}
	need := pcapRecordHeaderLen + int(caplen)
	if r.end-r.pos < need {
		r.fill(need)
		if have := r.end - r.pos; have < need {
			return r.truncated(rec, r.off, int64(have), int64(need))
		}
	}
	ts := int64(sec) * 1e9
	if r.pcap.nano {
		ts += int64(frac)
	} else {
		ts += int64(frac) * 1e3
	}
	f.Timestamp = ts
	f.LinkType = r.pcap.linkType
	f.Interface = 0
	f.OrigLen = int(max(orig, caplen))
	f.Data = r.buf[r.pos+pcapRecordHeaderLen : r.pos+need : r.pos+need]
	f.Comment = ""
	f.Offset = r.off
	r.consume(need)
	r.record = rec
	return nil
}

// pcapRun fills fs with the classic pcap records wholly in the buffer, as
// nextPcap would one at a time, and returns how many. It stops at the
// first record it cannot take whole (cut off, or with a length nextPcap
// rejects) and leaves that one to nextPcap, which refills or reports it.
// It is nextPcap's loop with the reader's state in locals (see NextBatch).
func (r *Reader) pcapRun(fs []source.Frame) int {
	buf := r.buf[r.pos:r.end]
	lt, big, nano := r.pcap.linkType, r.pcap.big, r.pcap.nano
	maxCaplen, snaplen := uint32(r.pcap.maxCaplen), r.pcap.snaplen
	off := r.off
	over, n := 0, 0
	for ; n < len(fs) && len(buf) >= pcapRecordHeaderLen; n++ {
		var sec, frac, caplen, orig uint32
		if big {
			sec, frac, caplen, orig = be32(buf), be32(buf[4:]), be32(buf[8:]), be32(buf[12:])
		} else {
			sec, frac, caplen, orig = le32(buf), le32(buf[4:]), le32(buf[8:]), le32(buf[12:])
		}
		need := pcapRecordHeaderLen + int(caplen)
		if caplen > maxCaplen || len(buf) < need {
			break
		}
		if int(caplen) > snaplen && snaplen > 0 {
			over++
		}
		ts := int64(sec) * 1e9
		if nano {
			ts += int64(frac)
		} else {
			ts += int64(frac) * 1e3
		}
		f := &fs[n]
		f.Timestamp = ts
		f.LinkType = lt
		f.Interface = 0
		f.OrigLen = int(max(orig, caplen))
		f.Data = buf[pcapRecordHeaderLen:need:need]
		if f.Comment != "" {
			f.Comment = ""
		}
		f.Offset = off
		off += int64(need)
		buf = buf[need:]
	}
	r.pcap.overSnaplen += over
	r.consume(int(off - r.off))
	r.record += n
	return n
}
