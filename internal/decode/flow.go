package decode

import "encoding/binary"

// Flow is a TCP segment's 4-tuple in the form Parsed holds it: addresses as
// two big-endian words of their 16-byte form, and the ports.
type Flow struct {
	SrcWords, DstWords [2]uint64
	SrcPort, DstPort   uint16
}

// Flow returns p's 4-tuple (valid iff p.Status == OK).
func (p *Parsed) Flow() Flow {
	return Flow{SrcWords: p.SrcWords, DstWords: p.DstWords, SrcPort: p.SrcPort, DstPort: p.DstPort}
}

// PeekFlow reads the 4-tuple of a plain TCP segment without decoding the
// rest of the frame, for a caller that only needs to know which connection
// a frame belongs to (the sharded engine's reader) and leaves the decoding
// to whoever tracks it.
//
// It reads the link layer as Decode does (the same function), then only
// the common cases: IPv4 of any header length that is not a fragment, IPv6
// whose first next header is TCP. For anything else (tunnels, extension
// headers, UDP, a frame cut before the ports) ok
// is false, and the caller must Decode to learn the flow. When ok is true
// and Decode of the same frame gives OK, the flow is exactly Decode's: the
// same bytes at the same offsets (FuzzDecode checks it).
func PeekFlow(linkType uint32, data []byte) (f Flow, ok bool) {
	ethertype, data, st := network(linkType, data)
	if st != OK {
		return f, false
	}
	switch ethertype {
	case 0x0800:
		if len(data) < IPv4MinimumSize || data[0]>>4 != 4 || data[9] != 6 {
			return f, false
		}
		hl := int(data[0]&0xf) * 4
		if hl < IPv4MinimumSize || binary.BigEndian.Uint16(data[6:])&0x1fff != 0 || len(data) < hl+4 {
			return f, false
		}
		f.SrcWords = [2]uint64{0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(data[12:]))}
		f.DstWords = [2]uint64{0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(data[16:]))}
		data = data[hl:]
	case 0x86dd:
		if len(data) < IPv6FixedSize+4 || data[0]>>4 != 6 || data[6] != 6 {
			return f, false
		}
		f.SrcWords = [2]uint64{binary.BigEndian.Uint64(data[8:]), binary.BigEndian.Uint64(data[16:])}
		f.DstWords = [2]uint64{binary.BigEndian.Uint64(data[24:]), binary.BigEndian.Uint64(data[32:])}
		data = data[IPv6FixedSize:]
	default:
		return f, false
	}
	f.SrcPort = binary.BigEndian.Uint16(data)
	f.DstPort = binary.BigEndian.Uint16(data[2:])
	return f, true
}
