package decode

import (
	"encoding/binary"
	"net/netip"
)

// Frame builders for the tests: every length field is computed from what is
// actually put in, unless a test overrides it afterwards.

var (
	v4a = netip.MustParseAddr("192.0.2.1")
	v4b = netip.MustParseAddr("198.51.100.7")
	v6a = netip.MustParseAddr("2001:db8::1")
	v6b = netip.MustParseAddr("2001:db8:ffff::2")
)

type seg struct {
	sport, dport uint16
	seq, ack     uint32
	flags        Flags
	win          uint16
	opts         []byte // padded with zeros (EOL) to a multiple of 4
	payload      []byte
}

func (s seg) bytes() []byte {
	opts := append([]byte(nil), s.opts...)
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	b := make([]byte, 20+len(opts)+len(s.payload))
	binary.BigEndian.PutUint16(b[0:], s.sport)
	binary.BigEndian.PutUint16(b[2:], s.dport)
	binary.BigEndian.PutUint32(b[4:], s.seq)
	binary.BigEndian.PutUint32(b[8:], s.ack)
	b[12] = byte((20+len(opts))/4) << 4
	b[13] = byte(s.flags)
	binary.BigEndian.PutUint16(b[14:], s.win)
	copy(b[20:], opts)
	copy(b[20+len(opts):], s.payload)
	return b
}

func udp(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], payload)
	return b
}

// ipv4 builds an IPv4 packet; opts must be a multiple of 4 bytes.
func ipv4(src, dst netip.Addr, proto uint8, opts, payload []byte) []byte {
	hl := 20 + len(opts)
	b := make([]byte, hl+len(payload))
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], 0x1234)
	b[6] = 0x40 // DF
	b[8] = 64
	b[9] = proto
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], opts)
	copy(b[hl:], payload)
	return b
}

// ext is one IPv6 extension header: its type number and body (the body
// excludes the next-header byte; for 0/60 the length byte is filled in).
type ext struct {
	typ  uint8
	body []byte // for 0, 60: options, padded to make the header 8n bytes; for 44: 6 bytes
}

func ipv6(src, dst netip.Addr, exts []ext, proto uint8, payload []byte) []byte {
	var chain []byte
	for i, e := range exts {
		next := proto
		if i+1 < len(exts) {
			next = exts[i+1].typ
		}
		switch e.typ {
		case 44:
			h := make([]byte, 8)
			h[0] = next
			copy(h[2:], e.body)
			chain = append(chain, h...)
		default:
			n := 2 + len(e.body)
			for n%8 != 0 {
				n++
			}
			h := make([]byte, n)
			h[0] = next
			h[1] = byte(n/8 - 1)
			copy(h[2:], e.body)
			chain = append(chain, h...)
		}
	}
	first := proto
	if len(exts) > 0 {
		first = exts[0].typ
	}
	b := make([]byte, 40+len(chain)+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(chain)+len(payload)))
	b[6] = first
	b[7] = 57
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	copy(b[40:], chain)
	copy(b[40+len(chain):], payload)
	return b
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func ether(ethertype uint16, payload []byte) []byte {
	h := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, byte(ethertype >> 8), byte(ethertype)}
	return cat(h, payload)
}

// tag is the 4 bytes that follow a VLAN TPID: the TCI, then the next
// ethertype.
func tag(vid uint16, next uint16) []byte {
	return []byte{byte(vid >> 8), byte(vid), byte(next >> 8), byte(next)}
}

func mplsLabel(label uint32, bos bool) []byte {
	v := label<<12 | 64
	if bos {
		v |= 1 << 8
	}
	return binary.BigEndian.AppendUint32(nil, v)
}

func sll(proto uint16, payload []byte) []byte {
	h := make([]byte, 16)
	binary.BigEndian.PutUint16(h[0:], 0) // to us
	binary.BigEndian.PutUint16(h[2:], 1) // ARPHRD_ETHER
	binary.BigEndian.PutUint16(h[4:], 6)
	binary.BigEndian.PutUint16(h[14:], proto)
	return cat(h, payload)
}

func sll2(proto uint16, payload []byte) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], proto)
	binary.BigEndian.PutUint32(h[4:], 2) // ifindex
	binary.BigEndian.PutUint16(h[8:], 1)
	h[10] = 0
	h[11] = 6
	return cat(h, payload)
}

func null(le bool, af uint32, payload []byte) []byte {
	h := make([]byte, 4)
	if le {
		binary.LittleEndian.PutUint32(h, af)
	} else {
		binary.BigEndian.PutUint32(h, af)
	}
	return cat(h, payload)
}

// tsOpt is the usual Linux SYN option block: MSS, SACK-permitted,
// timestamps, NOP, window scale.
func tsOpt(val, ecr uint32) []byte {
	o := []byte{8, 10, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(o[2:], val)
	binary.BigEndian.PutUint32(o[6:], ecr)
	return o
}

var synOpts = cat([]byte{2, 4, 0x05, 0xb4, 4, 2}, tsOpt(1000, 0), []byte{1, 3, 3, 7})

// dataOpts is NOP NOP timestamps, as on every Linux data segment.
var dataOpts = cat([]byte{1, 1}, tsOpt(123456, 654321))
