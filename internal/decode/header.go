package decode

import "encoding/binary"

// Header views in the manner of gVisor's pkg/tcpip/header: a byte slice type
// with one accessor per wire field, no copies. Callers check the minimum
// size (and the header's own length field) before trusting a view.

// Minimum header sizes.
const (
	IPv4MinimumSize = 20
	IPv6FixedSize   = 40
	TCPMinimumSize  = 20
)

// IPv4 is a view of an IPv4 header.
type IPv4 []byte

func (b IPv4) Version() uint8         { return b[0] >> 4 }
func (b IPv4) HeaderLength() int      { return int(b[0]&0x0f) * 4 }
func (b IPv4) TotalLength() int       { return int(binary.BigEndian.Uint16(b[2:])) }
func (b IPv4) ID() uint16             { return binary.BigEndian.Uint16(b[4:]) }
func (b IPv4) FragmentOffset() int    { return int(binary.BigEndian.Uint16(b[6:])&0x1fff) * 8 }
func (b IPv4) MoreFragments() bool    { return b[6]&0x20 != 0 }
func (b IPv4) TTL() uint8             { return b[8] }
func (b IPv4) Protocol() uint8        { return b[9] }
func (b IPv4) SourceAddress() [4]byte { return [4]byte(b[12:16]) }

// SourceWords and DestinationWords are the addresses in their 16-byte form
// (IPv4-mapped) as two big-endian words: what Parsed.SrcWords holds.
func (b IPv4) SourceWords() [2]uint64 {
	return [2]uint64{0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(b[12:]))}
}
func (b IPv4) DestinationWords() [2]uint64 {
	return [2]uint64{0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(b[16:]))}
}
func (b IPv4) DestinationAddress() [4]byte {
	return [4]byte(b[16:20])
}

// IPv6 is a view of an IPv6 fixed header.
type IPv6 []byte

func (b IPv6) Version() uint8          { return b[0] >> 4 }
func (b IPv6) PayloadLength() int      { return int(binary.BigEndian.Uint16(b[4:])) }
func (b IPv6) NextHeader() uint8       { return b[6] }
func (b IPv6) HopLimit() uint8         { return b[7] }
func (b IPv6) SourceAddress() [16]byte { return [16]byte(b[8:24]) }

// SourceWords and DestinationWords are the addresses as two big-endian
// words: what Parsed.SrcWords holds.
func (b IPv6) SourceWords() [2]uint64 {
	return [2]uint64{binary.BigEndian.Uint64(b[8:]), binary.BigEndian.Uint64(b[16:])}
}
func (b IPv6) DestinationWords() [2]uint64 {
	return [2]uint64{binary.BigEndian.Uint64(b[24:]), binary.BigEndian.Uint64(b[32:])}
}
func (b IPv6) DestinationAddress() [16]byte {
	return [16]byte(b[24:40])
}

// TCP is a view of a TCP header.
type TCP []byte

func (b TCP) SourcePort() uint16      { return binary.BigEndian.Uint16(b[0:]) }
func (b TCP) DestinationPort() uint16 { return binary.BigEndian.Uint16(b[2:]) }
func (b TCP) SequenceNumber() uint32  { return binary.BigEndian.Uint32(b[4:]) }
func (b TCP) AckNumber() uint32       { return binary.BigEndian.Uint32(b[8:]) }
func (b TCP) DataOffset() int         { return int(b[12]>>4) * 4 }
func (b TCP) Flags() Flags            { return Flags(b[13]) }
func (b TCP) WindowSize() uint16      { return binary.BigEndian.Uint16(b[14:]) }
func (b TCP) Options() []byte         { return b[TCPMinimumSize:b.DataOffset()] }

// Flags are the TCP header flags.
type Flags uint8

// TCP flag bits.
const (
	FIN Flags = 1 << iota
	SYN
	RST
	PSH
	ACK
	URG
	ECE
	CWR
)

// Has reports whether all of m are set.
func (f Flags) Has(m Flags) bool { return f&m == m }

// String writes flags as tcpdump does: [S], [S.], [P.], [R], [F.], ...
func (f Flags) String() string {
	var b [10]byte
	n := 0
	b[n] = '['
	n++
	// tcpdump's tcp_flag_values order: F S R P . U E W.
	for _, x := range [...]struct {
		f Flags
		c byte
	}{{FIN, 'F'}, {SYN, 'S'}, {RST, 'R'}, {PSH, 'P'}, {ACK, '.'}, {URG, 'U'}, {ECE, 'E'}, {CWR, 'W'}} {
		if f&x.f != 0 {
			b[n] = x.c
			n++
		}
	}
	if n == 1 {
		b[n] = 'n'
		n++
		b[n] = 'o'
		n++
		b[n] = 'n'
		n++
		b[n] = 'e'
		n++
	}
	b[n] = ']'
	n++
	return string(b[:n])
}
