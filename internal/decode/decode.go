// Package decode turns one captured frame into one Parsed struct: link layer,
// IPv4/IPv6 and TCP, without allocating.
//
// It follows Tailscale's net/packet: a single Decode call fills a struct whose
// fields document when they are valid, every length is checked before it is
// used, and input that makes no sense becomes a Status, never a panic or an
// error value. Snaplen-truncated packets keep whatever headers are present:
// PayloadLen is what the IP header says, Payload is what was captured.
package decode

import (
	"encoding/binary"
	"math/bits"
	"net/netip"

	"github.com/rstscope/rstscope/internal/source"
)

// Status says how far decoding got.
type Status uint8

const (
	OK          Status = iota // a TCP segment: all TCP fields valid
	NotIP                     // link layer carries something else (ARP, LLDP, ...)
	NotTCP                    // IP, but UDP, ICMP, ... (IP fields valid)
	Fragment                  // a non-first IPv4/IPv6 fragment: no TCP header in it
	ShortLink                 // frame shorter than its link-layer header
	ShortIP                   // IP header cut off or inconsistent (bad version, IHL < 5)
	ShortTCP                  // TCP header cut off or data offset < 5
	BadLinkType               // a link type rstscope does not decode
)

var statusNames = [...]string{"ok", "not IP", "not TCP", "IP fragment", "truncated link header",
	"bad or truncated IP header", "bad or truncated TCP header", "unsupported link type"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "unknown"
}

// Options are the TCP options rstscope uses.
type Options struct {
	MSS      uint16 // valid iff MSS != 0
	WScale   int8   // window scale shift; -1 when absent
	SACKPerm bool
	SACK     bool // a SACK block is present
	HasTS    bool
	TSVal    uint32 // valid iff HasTS
	TSEcr    uint32 // valid iff HasTS
}

// Parsed is one decoded packet. Decode overwrites every field.
type Parsed struct {
	Status Status

	// IP fields, valid iff IPVersion != 0.
	IPVersion uint8 // 4 or 6
	Src, Dst  netip.Addr
	// SrcWords and DstWords are the addresses as two big-endian 64-bit
	// words of their 16-byte form (IPv4 as IPv4-mapped IPv6), read straight
	// from the header: connection tables key on them without converting.
	SrcWords, DstWords [2]uint64
	TTL                uint8  // TTL or hop limit
	IPID               uint16 // IPv4 identification; 0 for IPv6
	DF                 bool   // IPv4 don't-fragment

	// TCP fields, valid iff Status == OK.
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            Flags
	Window           uint16 // raw, unscaled
	Opts             Options
	// PayloadLen is the TCP payload length according to the IP header
	// (the captured frame may hold less, see Truncated).
	PayloadLen int
	// Payload is the captured part of the payload: a view into the frame
	// passed to Decode, valid as long as that frame's memory is.
	Payload []byte
	// Truncated is set when the capture holds less payload than PayloadLen.
	Truncated bool
	// Tunneled is set when the TCP segment came out of a tunnel (Teredo);
	// the IP fields are then the inner packet's.
	Tunneled bool
}

// Decode parses data, a frame of the given link type (source.Link*).
//
// Nearly every frame of a capture is Ethernet, IPv4 without options and
// TCP with no options or one of Linux's two layouts: Decode reads those
// itself, writing each field once, and hands anything else to the general
// decoder, decodeAny, which zeroes p and fills in what it finds. The result
// is decodeAny's, field for field, for every input (FuzzDecodeRef compares
// Decode with decodeAny alone, the decoder as it was before this fast
// path). On a loopback capture of HTTP traffic (m1.pcap) this took Decode
// from 273 instructions a packet to 128: zeroing the struct alone was 26,
// and the general path walks the link layer, checks the same fields
// twice, calls a function per layer and walks the SYNs' options byte by
// byte.
func (p *Parsed) Decode(linkType uint32, data []byte) {
	if linkType != source.LinkEthernet || len(data) < etherIPv4TCPSize {
		p.decodeAny(linkType, data)
		return
	}
	// A fixed-size view: its reads need no bounds checks.
	h := (*[etherIPv4TCPSize]byte)(data)
	if !plainIPv4TCP(h[:]) {
		p.decodeAny(linkType, data)
		return
	}
	// As decodeIPv4: a total length of 0 (TSO/GSO) trusts the capture, and
	// the frame ends where the IP packet does (Ethernet pads short ones).
	total := int(binary.BigEndian.Uint16(h[16:]))
	if total == 0 {
		total = len(data) - 14
	}
	end := min(len(data), 14+total)
	off := int(h[46]) >> 2 & 0x3c // TCP header length: the data offset times 4
	// The TCP header must be all there, inside the IP packet (which makes
	// the total length at least 40). A data offset below 5 goes to
	// decodeAny with the options' default case.
	if 34+off > end {
		// Cut short or inconsistent: decodeAny says how.
		p.decodeAny(linkType, data)
		return
	}
	// The options first, while nothing is written yet: a layout not
	// handled here goes to decodeAny before any field is. (The checks of
	// len(data) follow from off and end; here they only spare the reads
	// their bounds checks.) Opts are written as one constant and the two
	// timestamps as one pair (see the ports below): 4 stores where the
	// struct literal took 7.
	o := etherIPv4TCPSize // where the options start in data
	switch {
	case off == TCPMinimumSize+12 && len(data) >= o+12 && binary.BigEndian.Uint32(data[o:]) == 0x0101080a:
		// NOP, NOP, timestamps: every segment after the handshake.
		ts := bits.RotateLeft64(binary.BigEndian.Uint64(data[o+4:]), 32)
		p.Opts = Options{WScale: -1, HasTS: true}
		p.Opts.TSVal, p.Opts.TSEcr = uint32(ts), uint32(ts>>32)
	case off == TCPMinimumSize+20 && len(data) >= o+20 && binary.BigEndian.Uint32(data[o:])>>16 == 0x0204 &&
		binary.BigEndian.Uint32(data[o+4:]) == 0x0402080a && binary.BigEndian.Uint32(data[o+16:])>>8 == 0x010303:
		// MSS, SACK permitted, timestamps, NOP, window scale: Linux's SYN
		// and SYN-ACK (7% of m1.pcap's packets; parseOptions took 170
		// instructions for each).
		ts := bits.RotateLeft64(binary.BigEndian.Uint64(data[o+8:]), 32)
		p.Opts = Options{SACKPerm: true, HasTS: true}
		p.Opts.MSS = binary.BigEndian.Uint16(data[o+2:])
		p.Opts.WScale = int8(min(data[o+19], 14))
		p.Opts.TSVal, p.Opts.TSEcr = uint32(ts), uint32(ts>>32)
	case off == TCPMinimumSize:
		p.Opts = Options{WScale: -1}
	default:
		// Other options (SACK blocks, other systems' SYNs) are rare enough
		// to decode the frame from the start. Calling parseOptions here
		// instead cost every packet 2 instructions more (register spills).
		p.decodeAny(linkType, data)
		return
	}
	src, dst := netip.AddrFrom4([4]byte(h[26:30])), netip.AddrFrom4([4]byte(h[30:34]))
	srcLo := 0xffff<<32 | uint64(binary.BigEndian.Uint32(h[26:]))
	dstLo := 0xffff<<32 | uint64(binary.BigEndian.Uint32(h[30:]))
	// The three pointer stores (in Src, Dst and Payload) come together,
	// with no load between them: they share one write barrier check.
	p.Status = OK
	p.IPVersion = 4
	p.Src = src
	p.Dst = dst
	// data ends at the IP packet's end, so the payload is never longer
	// than PayloadLen, and PayloadLen is never negative.
	p.Payload = data[34+off : end]
	p.PayloadLen = total - IPv4MinimumSize - off
	p.Truncated = len(p.Payload) < p.PayloadLen
	p.Tunneled = false
	p.SrcWords[0] = 0
	p.SrcWords[1] = srcLo
	p.DstWords[0] = 0
	p.DstWords[1] = dstLo
	p.TTL = h[22]
	p.IPID = binary.BigEndian.Uint16(h[18:])
	p.DF = h[20]&0x40 != 0
	// Adjacent fields from adjacent big-endian words, in pairs: the
	// compiler makes each pair one load, a byte swap, a rotate and one
	// store, where two fields took two of each.
	ports := bits.RotateLeft32(binary.BigEndian.Uint32(h[34:]), 16)
	p.SrcPort, p.DstPort = uint16(ports), uint16(ports>>16)
	seqAck := bits.RotateLeft64(binary.BigEndian.Uint64(h[38:]), 32)
	p.Seq, p.Ack = uint32(seqAck), uint32(seqAck>>32)
	p.Flags = Flags(h[47])
	p.Window = binary.BigEndian.Uint16(h[48:])
}

// plainIPv4TCP reports whether data, an Ethernet frame of at least 24
// bytes, is the frame the fast paths of Decode and PeekFlow take: untagged
// IPv4 with a 20-byte header, not a fragment, carrying TCP. Two words test
// four fields: bytes 12-14 are 08 00 45 (ethertype IPv4, version 4, a
// 20-byte header), and bytes 20-23 give fragment offset 0 and protocol 6;
// the flag bits and TTL may be anything.
func plainIPv4TCP(data []byte) bool {
	return binary.LittleEndian.Uint32(data[12:])&0x00ffffff == 0x00450008 &&
		binary.LittleEndian.Uint32(data[20:])&0xff00ff1f == 0x06000000
}

// etherIPv4TCPSize is the shortest frame Decode's fast path decodes:
// Ethernet, a 20-byte IPv4 header and a 20-byte TCP header.
const etherIPv4TCPSize = 14 + IPv4MinimumSize + TCPMinimumSize

// decodeAny decodes a frame of any link type: Decode for what its fast path
// leaves.
func (p *Parsed) decodeAny(linkType uint32, data []byte) {
	*p = Parsed{Opts: Options{WScale: -1}}
	ethertype, data, st := network(linkType, data)
	if st != OK {
		p.Status = st
		return
	}
	switch ethertype {
	case 0x0800:
		p.decodeIPv4(data)
	case 0x86dd:
		p.decodeIPv6(data)
	default:
		p.Status = NotIP
	}
}

// network strips the link layer of a frame: it returns the ethertype of
// what follows (raw IP and MPLS tell IPv4 from IPv6 by the version nibble)
// and the rest of the frame, or a Status saying why there is no network
// layer. Decode and PeekFlow both start here, so they read every frame the
// same way.
func network(linkType uint32, data []byte) (uint16, []byte, Status) {
	var ethertype uint16
	switch linkType {
	case source.LinkEthernet:
		if len(data) < 14 {
			return 0, nil, ShortLink
		}
		ethertype = binary.BigEndian.Uint16(data[12:])
		data = data[14:]
		// 802.1Q / 802.1ad / QinQ tags, then MPLS label stacks.
		for i := 0; i < 8; i++ {
			switch ethertype {
			case 0x8100, 0x88a8, 0x9100:
				if len(data) < 4 {
					return 0, nil, ShortLink
				}
				ethertype = binary.BigEndian.Uint16(data[2:])
				data = data[4:]
				continue
			case 0x8847, 0x8848:
				// MPLS: labels until bottom-of-stack, then guess IP by version.
				for {
					if len(data) < 4 {
						return 0, nil, ShortLink
					}
					bos := data[2]&1 != 0
					data = data[4:]
					if bos {
						break
					}
				}
				ethertype = 0
			}
			break
		}
	case source.LinkSLL:
		if len(data) < 16 {
			return 0, nil, ShortLink
		}
		ethertype = binary.BigEndian.Uint16(data[14:])
		data = data[16:]
	case source.LinkSLL2:
		if len(data) < 20 {
			return 0, nil, ShortLink
		}
		ethertype = binary.BigEndian.Uint16(data[0:])
		data = data[20:]
	case source.LinkNull, source.LinkLoop:
		if len(data) < 4 {
			return 0, nil, ShortLink
		}
		// The address family is in the writer's byte order (NULL) or big
		// endian (LOOP); values are small, so accept either order.
		af := binary.LittleEndian.Uint32(data)
		if af > 0xffff {
			af = binary.BigEndian.Uint32(data)
		}
		switch af {
		case 2:
			ethertype = 0x0800
		case 10, 24, 28, 30:
			ethertype = 0x86dd
		default:
			return 0, nil, NotIP
		}
		data = data[4:]
	case source.LinkRaw, 12, 14: // 12, 14: DLT_RAW on some BSDs
		ethertype = 0
	case source.LinkIPv4:
		ethertype = 0x0800
	case source.LinkIPv6:
		ethertype = 0x86dd
	default:
		return 0, nil, BadLinkType
	}
	if ethertype == 0 {
		if len(data) == 0 {
			return 0, nil, ShortIP
		}
		switch data[0] >> 4 {
		case 4:
			ethertype = 0x0800
		case 6:
			ethertype = 0x86dd
		default:
			return 0, nil, NotIP
		}
	}
	return ethertype, data, OK
}

func (p *Parsed) decodeIPv4(b []byte) {
	if len(b) < IPv4MinimumSize {
		p.Status = ShortIP
		return
	}
	ip := IPv4(b)
	hl := ip.HeaderLength()
	if ip.Version() != 4 || hl < IPv4MinimumSize || len(b) < hl {
		p.Status = ShortIP
		return
	}
	p.IPVersion = 4
	p.Src = netip.AddrFrom4(ip.SourceAddress())
	p.Dst = netip.AddrFrom4(ip.DestinationAddress())
	p.SrcWords = ip.SourceWords()
	p.DstWords = ip.DestinationWords()
	p.TTL = ip.TTL()
	p.IPID = ip.ID()
	p.DF = b[6]&0x40 != 0
	total := ip.TotalLength()
	if total == 0 {
		// TSO/GSO captures leave the length 0: trust the capture.
		total = len(b)
	}
	if total < hl {
		p.Status = ShortIP
		return
	}
	if ip.FragmentOffset() != 0 {
		p.Status = Fragment
		return
	}
	// Ethernet padding makes the frame longer than the IP packet: cut it.
	if len(b) > total {
		b = b[:total]
	}
	switch ip.Protocol() {
	case 6:
		p.decodeTCP(b[hl:], total-hl)
	case 17:
		p.decodeUDPTunnel(b[hl:])
	default:
		p.Status = NotTCP
	}
}

// maxExtHeaders bounds the IPv6 extension header walk.
const maxExtHeaders = 8

func (p *Parsed) decodeIPv6(b []byte) {
	if len(b) < IPv6FixedSize {
		p.Status = ShortIP
		return
	}
	ip := IPv6(b)
	if ip.Version() != 6 {
		p.Status = ShortIP
		return
	}
	p.IPVersion = 6
	p.Src = netip.AddrFrom16(ip.SourceAddress())
	p.Dst = netip.AddrFrom16(ip.DestinationAddress())
	p.SrcWords = ip.SourceWords()
	p.DstWords = ip.DestinationWords()
	p.TTL = ip.HopLimit()
	p.IPID, p.DF = 0, false // an inner (Teredo) packet must not keep the outer IPv4's
	plen := ip.PayloadLength()
	if plen == 0 {
		plen = len(b) - IPv6FixedSize // jumbogram or TSO: trust the capture
	}
	next := ip.NextHeader()
	b = b[IPv6FixedSize:]
	if len(b) > plen {
		b = b[:plen] // padding
	}
	for i := 0; ; i++ {
		switch next {
		case 6:
			p.decodeTCP(b, plen)
			return
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(b) < 8 || i == maxExtHeaders {
				p.Status = ShortIP
				return
			}
			n := (int(b[1]) + 1) * 8
			if len(b) < n || plen < n {
				p.Status = ShortIP
				return
			}
			next, b, plen = b[0], b[n:], plen-n
		case 44: // fragment
			if len(b) < 8 || plen < 8 {
				p.Status = ShortIP
				return
			}
			if binary.BigEndian.Uint16(b[2:])&0xfff8 != 0 {
				p.Status = Fragment
				return
			}
			next, b, plen = b[0], b[8:], plen-8
		case 51: // authentication header: length in 4-octet units, minus 2
			if len(b) < 8 || i == maxExtHeaders {
				p.Status = ShortIP
				return
			}
			n := (int(b[1]) + 2) * 4
			if len(b) < n || plen < n {
				p.Status = ShortIP
				return
			}
			next, b, plen = b[0], b[n:], plen-n
		case 17:
			p.decodeUDPTunnel(b)
			return
		default:
			p.Status = NotTCP
			return
		}
	}
}

// decodeTCP parses the TCP header in b; segLen is the segment's length
// according to the IP header (b may be shorter when truncated).
func (p *Parsed) decodeTCP(b []byte, segLen int) {
	if len(b) < TCPMinimumSize {
		p.Status = ShortTCP
		return
	}
	t := TCP(b)
	off := t.DataOffset()
	if off < TCPMinimumSize {
		p.Status = ShortTCP
		return
	}
	p.SrcPort = t.SourcePort()
	p.DstPort = t.DestinationPort()
	p.Seq = t.SequenceNumber()
	p.Ack = t.AckNumber()
	p.Flags = t.Flags()
	p.Window = t.WindowSize()
	if len(b) < off {
		// Options cut off by the snaplen: the fixed header is still good.
		p.Status = OK
		p.PayloadLen = max(segLen-off, 0)
		p.Truncated = p.PayloadLen > 0
		return
	}
	p.parseOptions(b[TCPMinimumSize:off])
	p.Status = OK
	p.PayloadLen = max(segLen-off, 0)
	p.Payload = b[off:]
	if len(p.Payload) > p.PayloadLen {
		p.Payload = p.Payload[:p.PayloadLen]
	}
	p.Truncated = len(p.Payload) < p.PayloadLen
}

func (p *Parsed) parseOptions(o []byte) {
	// Linux puts exactly NOP, NOP, timestamps on every segment after the
	// handshake: one compare instead of the walk.
	if len(o) == 12 && binary.BigEndian.Uint32(o) == 0x0101080a {
		p.Opts.HasTS = true
		p.Opts.TSVal = binary.BigEndian.Uint32(o[4:])
		p.Opts.TSEcr = binary.BigEndian.Uint32(o[8:])
		return
	}
	for len(o) > 0 {
		kind := o[0]
		if kind == 0 { // end of options
			return
		}
		if kind == 1 { // NOP
			o = o[1:]
			continue
		}
		if len(o) < 2 || o[1] < 2 || int(o[1]) > len(o) {
			return // malformed: keep what was parsed
		}
		l := int(o[1])
		switch {
		case kind == 2 && l == 4:
			p.Opts.MSS = binary.BigEndian.Uint16(o[2:])
		case kind == 3 && l == 3:
			p.Opts.WScale = int8(min(o[2], 14))
		case kind == 4 && l == 2:
			p.Opts.SACKPerm = true
		case kind == 5:
			p.Opts.SACK = true
		case kind == 8 && l == 10:
			p.Opts.HasTS = true
			p.Opts.TSVal = binary.BigEndian.Uint32(o[2:])
			p.Opts.TSEcr = binary.BigEndian.Uint32(o[6:])
		}
		o = o[l:]
	}
}

// SegLen is the sequence space the segment occupies: payload, plus one each
// for SYN and FIN.
func (p *Parsed) SegLen() uint32 {
	n := uint32(p.PayloadLen)
	if p.Flags&SYN != 0 {
		n++
	}
	if p.Flags&FIN != 0 {
		n++
	}
	return n
}

// teredoPort is Teredo's UDP port (RFC 4380).
const teredoPort = 3544

// decodeUDPTunnel looks inside Teredo (IPv6 in UDP, RFC 4380) for TCP.
// Anything else over UDP is NotTCP. One level of tunnel only: an inner
// packet that is itself a tunnel is not followed.
func (p *Parsed) decodeUDPTunnel(b []byte) {
	p.Status = NotTCP
	if p.Tunneled || len(b) < 8 {
		return
	}
	sport, dport := binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
	onPort := sport == teredoPort || dport == teredoPort
	in := b[8:]
	// Optional authentication indicator, then optional origin indication.
	if len(in) >= 13 && in[0] == 0 && in[1] == 1 {
		n := 13 + int(in[2]) + int(in[3])
		if len(in) < n {
			return
		}
		in = in[n:]
	}
	if len(in) >= 8 && in[0] == 0 && in[1] == 0 {
		in = in[8:]
	}
	if len(in) < IPv6FixedSize || in[0]>>4 != 6 {
		return
	}
	// Off port 3544 (Teredo relays use any port) accept only a packet whose
	// IPv6 payload length fills the datagram exactly, as Zeek's detection does.
	if !onPort && IPv6(in).PayloadLength()+IPv6FixedSize != len(in) {
		return
	}
	outer := *p
	p.Tunneled = true
	p.decodeIPv6(in)
	if p.Status != OK {
		// Not TCP inside: report the outer packet, untunneled.
		*p = outer
	}
}
