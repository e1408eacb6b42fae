package pcapio

import (
	"encoding/binary"
	"io"
	"math/bits"

	"github.com/rstscope/rstscope/internal/source"
)

// pcapng block types (draft-ietf-opsawg-pcapng).
const (
	blockSHB = 0x0a0d0d0a // section header
	blockIDB = 0x00000001 // interface description
	blockPB  = 0x00000002 // packet (obsolete)
	blockSPB = 0x00000003 // simple packet
	blockEPB = 0x00000006 // enhanced packet

	byteOrderMagic = 0x1a2b3c4d

	optEndOfOpt = 0
	optComment  = 1
	optTSResol  = 9  // if_tsresol
	optTSOffset = 14 // if_tsoffset

	// maxInterfaces bounds the interfaces of one section, and so the
	// memory a stream of interface blocks can take.
	maxInterfaces = 1 << 16
)

type pcapngState struct {
	big     bool      // byte order of the current section
	ifaces  []ngIface // the current section's interfaces, by IDB number
	lastTS  int64     // timestamp of the previous frame, for simple packet blocks
	section int       // number of section headers seen
}

// ngIface is what an interface description block says about the packets
// that refer to it.
type ngIface struct {
	linkType uint32
	snaplen  uint32
	// A timestamp of t ticks is t*mul ns, t/div ns, or t*1e9/2^shift ns,
	// depending on kind, plus offset ns.
	kind   tsKind
	mul    uint64
	div    uint64
	shift  uint
	offset int64
}

type tsKind uint8

const (
	tsMul  tsKind = iota // resolution 10^-n with n <= 9
	tsDiv                // resolution 10^-n with 9 < n <= 28
	tsPow2               // resolution 2^-n
	tsZero               // resolution so fine that no 64-bit count reaches 1 ns
)

// setResolution applies an if_tsresol value: 10^-v seconds, or 2^-(v&0x7f)
// when the top bit is set.
func (i *ngIface) setResolution(v uint8) {
	if v&0x80 != 0 {
		i.kind, i.shift = tsPow2, uint(v&0x7f)
		return
	}
	switch {
	case v <= 9:
		i.kind, i.mul = tsMul, pow10(9-int(v))
	case v-9 <= 19: // 10^19 still fits in a uint64
		i.kind, i.div = tsDiv, pow10(int(v)-9)
	default:
		i.kind = tsZero
	}
}

func pow10(n int) uint64 {
	p := uint64(1)
	for range n {
		p *= 10
	}
	return p
}

// ns converts a timestamp in the interface's ticks to Unix nanoseconds.
// Out-of-range values wrap rather than fail: a timestamp is never a
// reason to drop a packet.
func (i *ngIface) ns(t uint64) int64 {
	var ns uint64
	switch i.kind {
	case tsMul:
		ns = t * i.mul
	case tsDiv:
		ns = t / i.div
	case tsPow2:
		hi, lo := bits.Mul64(t, 1e9)
		switch s := i.shift; {
		case s == 0:
			ns = lo
		case s < 64:
			ns = lo>>s | hi<<(64-s)
		default:
			ns = hi >> (s - 64)
		}
	}
	return int64(ns) + i.offset
}

// nextPcapng reads blocks up to and including the next packet block,
// handling section headers and interface descriptions on the way and
// skipping every other block type. Packet blocks without a comment do not
// allocate.
func (r *Reader) nextPcapng(f *source.Frame) error {
	for {
		rec, off := r.record+1, r.off
		if r.end-r.pos < 12 {
			r.fill(12)
			if have := r.end - r.pos; have < 8 {
				if have == 0 && r.rerr == io.EOF {
					return io.EOF
				}
				return r.truncated(rec, off, int64(have), 12)
			}
		}
		b := r.buf[r.pos:r.end]
		u32 := r.u32fn()
		typ := u32(b)
		if typ == blockSHB {
			if len(b) < 12 {
				return r.truncated(rec, off, int64(len(b)), 28)
			}
			switch {
			case le32(b[8:]) == byteOrderMagic:
				r.png.big = false
			case be32(b[8:]) == byteOrderMagic:
				r.png.big = true
			default:
				return r.formatErr(rec, "section header has byte-order magic % x, want 1a 2b 3c 4d in either order", b[8:12])
			}
			u32 = r.u32fn()
		} else if r.png.section == 0 {
			return r.formatErr(rec, "block type %#x before the first section header", typ)
		}
		blen := u32(b[4:])
		if blen < 12 || blen%4 != 0 || blen > maxBlockLen {
			return r.formatErr(rec, "block type %#x has invalid length %d (want a multiple of 4 from 12 to %d)", typ, blen, maxBlockLen)
		}
		n := int(blen)
		switch typ {
		case blockSHB, blockIDB, blockEPB, blockPB, blockSPB:
		default:
			// Skip it without buffering it whole, then check its trailer.
			if done := r.skip(int64(n - 4)); done < int64(n-4) {
				return r.truncated(rec, off, done, int64(n))
			}
			r.fill(4)
			if have := r.end - r.pos; have < 4 {
				return r.truncated(rec, off, int64(n-4+have), int64(n))
			}
			if t := u32(r.buf[r.pos:]); t != blen {
				return r.formatErr(rec, "block type %#x: trailing length %d differs from leading length %d", typ, t, blen)
			}
			r.consume(4)
			r.record = rec
			continue
		}
		if r.end-r.pos < n {
			r.fill(n)
			if have := r.end - r.pos; have < n {
				return r.truncated(rec, off, int64(have), int64(n))
			}
		}
		b = r.buf[r.pos : r.pos+n : r.pos+n]
		if t := u32(b[n-4:]); t != blen {
			return r.formatErr(rec, "block type %#x: trailing length %d differs from leading length %d", typ, t, blen)
		}
		var err error
		packet := false
		switch typ {
		case blockSHB:
			err = r.readSHB(rec, b)
		case blockIDB:
			err = r.readIDB(rec, b)
		case blockEPB, blockPB:
			err = r.readEPB(rec, b, f)
			packet = true
		case blockSPB:
			err = r.readSPB(rec, b, f)
			packet = true
		}
		if err != nil {
			return err
		}
		if packet {
			f.Offset = off
			r.png.lastTS = f.Timestamp
		}
		r.consume(n)
		r.record = rec
		if packet {
			return nil
		}
	}
}

func (r *Reader) u32fn() func([]byte) uint32 {
	if r.png.big {
		return be32
	}
	return le32
}

func (r *Reader) u16(b []byte) uint16 {
	if r.png.big {
		return be16(b)
	}
	return le16(b)
}

func (r *Reader) u32(b []byte) uint32 {
	if r.png.big {
		return be32(b)
	}
	return le32(b)
}

// readSHB starts a new section: byte order (already set) and version;
// interfaces of the previous section no longer apply.
func (r *Reader) readSHB(rec int, b []byte) error {
	if len(b) < 28 {
		return r.formatErr(rec, "section header block too short: %d bytes", len(b))
	}
	if major, minor := r.u16(b[12:]), r.u16(b[14:]); major != 1 {
		return r.formatErr(rec, "unsupported pcapng version %d.%d", major, minor)
	}
	r.png.ifaces = r.png.ifaces[:0]
	r.png.section++
	return nil
}

// readIDB adds an interface to the current section.
func (r *Reader) readIDB(rec int, b []byte) error {
	if len(b) < 20 {
		return r.formatErr(rec, "interface description block too short: %d bytes", len(b))
	}
	if len(r.png.ifaces) >= maxInterfaces {
		return r.formatErr(rec, "more than %d interfaces in one section", maxInterfaces)
	}
	i := ngIface{
		linkType: uint32(r.u16(b[8:])),
		snaplen:  r.u32(b[12:]),
	}
	i.setResolution(6)
	opts := b[16 : len(b)-4]
	for {
		code, val, rest, err := r.nextOption(rec, opts)
		if err != nil {
			return err
		}
		if rest == nil {
			break
		}
		opts = rest
		switch code {
		case optTSResol:
			if len(val) != 1 {
				return r.formatErr(rec, "if_tsresol option has length %d, want 1", len(val))
			}
			i.setResolution(val[0])
		case optTSOffset:
			if len(val) != 8 {
				return r.formatErr(rec, "if_tsoffset option has length %d, want 8", len(val))
			}
			if r.png.big {
				i.offset = int64(binary.BigEndian.Uint64(val)) * 1e9
			} else {
				i.offset = int64(binary.LittleEndian.Uint64(val)) * 1e9
			}
		}
	}
	r.png.ifaces = append(r.png.ifaces, i)
	r.addLinkType(i.linkType)
	return nil
}

// readEPB decodes an enhanced packet block, or an obsolete packet block:
// they differ only in the width of the interface number.
func (r *Reader) readEPB(rec int, b []byte, f *source.Frame) error {
	const hdr = 28 // block type, length, interface, timestamp (2), lengths (2)
	if len(b) < hdr+4 {
		return r.formatErr(rec, "packet block too short: %d bytes", len(b))
	}
	var iface uint32
	if r.u32(b) == blockPB {
		iface = uint32(r.u16(b[8:]))
	} else {
		iface = r.u32(b[8:])
	}
	if uint64(iface) >= uint64(len(r.png.ifaces)) {
		return r.formatErr(rec, "packet refers to interface %d, but the section has %d", iface, len(r.png.ifaces))
	}
	ifc := &r.png.ifaces[iface]
	ticks := uint64(r.u32(b[12:]))<<32 | uint64(r.u32(b[16:]))
	caplen, orig := r.u32(b[20:]), r.u32(b[24:])
	room := len(b) - hdr - 4
	if uint64(caplen) > uint64(room) {
		return r.formatErr(rec, "captured length %d exceeds the block (room for %d)", caplen, room)
	}
	dataEnd := hdr + int(caplen)
	f.Timestamp = ifc.ns(ticks)
	f.LinkType = ifc.linkType
	f.Interface = int(iface)
	f.OrigLen = int(max(orig, caplen))
	f.Data = b[hdr:dataEnd:dataEnd]
	f.Comment = ""
	opts := b[min((dataEnd+3)&^3, len(b)-4) : len(b)-4]
	for len(opts) > 0 {
		code, val, rest, err := r.nextOption(rec, opts)
		if err != nil {
			return err
		}
		if rest == nil {
			break
		}
		if code == optComment {
			f.Comment = string(val)
			break
		}
		opts = rest
	}
	return nil
}

// readSPB decodes a simple packet block: interface 0 of the section, no
// timestamp (the previous frame's is used, so time does not jump back to
// 1970), captured length limited by the interface's snaplen and the block.
func (r *Reader) readSPB(rec int, b []byte, f *source.Frame) error {
	const hdr = 12
	if len(b) < hdr+4 {
		return r.formatErr(rec, "simple packet block too short: %d bytes", len(b))
	}
	if len(r.png.ifaces) == 0 {
		return r.formatErr(rec, "simple packet block in a section without interfaces")
	}
	ifc := &r.png.ifaces[0]
	orig := r.u32(b[8:])
	caplen := min(uint64(orig), uint64(len(b)-hdr-4))
	if ifc.snaplen > 0 {
		caplen = min(caplen, uint64(ifc.snaplen))
	}
	end := hdr + int(caplen)
	f.Timestamp = r.png.lastTS
	f.LinkType = ifc.linkType
	f.Interface = 0
	f.OrigLen = int(max(uint64(orig), caplen))
	f.Data = b[hdr:end:end]
	f.Comment = ""
	return nil
}

// nextOption splits the first option off opts. It returns rest == nil at
// the end of the options (opt_endofopt, or fewer than 4 bytes left), and an
// error if the option's length overruns the block.
func (r *Reader) nextOption(rec int, opts []byte) (code uint16, val, rest []byte, err error) {
	if len(opts) < 4 {
		return 0, nil, nil, nil
	}
	code, n := r.u16(opts), int(r.u16(opts[2:]))
	if code == optEndOfOpt {
		return 0, nil, nil, nil
	}
	if 4+n > len(opts) {
		return 0, nil, nil, r.formatErr(rec, "option %d has length %d, but only %d bytes are left in the block", code, n, len(opts)-4)
	}
	val = opts[4 : 4+n : 4+n]
	rest = opts[min(4+(n+3)&^3, len(opts)):]
	return code, val, rest, nil
}
