package decode

import (
	"encoding/binary"
	"net/netip"

	"github.com/rstscope/rstscope/internal/source"
)

// refParsed carries the reference decoder: Decode as it was before the
// fast path for Ethernet/IPv4/TCP (commit 0589851), kept verbatim apart from
// the names so that FuzzDecodeRef can compare the two on any input.
type refParsed Parsed

// refDecode decodes data with the reference decoder.
func refDecode(linkType uint32, data []byte) Parsed {
	var p refParsed
	p.Decode(linkType, data)
	return Parsed(p)
}

// Decode parses data, a frame of the given link type (source.Link*).
func (p *refParsed) Decode(linkType uint32, data []byte) {
	*p = refParsed{Opts: Options{WScale: -1}}
	ethertype, data, st := refNetwork(linkType, data)
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
func refNetwork(linkType uint32, data []byte) (uint16, []byte, Status) {
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

func (p *refParsed) decodeIPv4(b []byte) {
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

func (p *refParsed) decodeIPv6(b []byte) {
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
func (p *refParsed) decodeTCP(b []byte, segLen int) {
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

func (p *refParsed) parseOptions(o []byte) {
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

// decodeUDPTunnel looks inside Teredo (IPv6 in UDP, RFC 4380) for TCP.
// Anything else over UDP is NotTCP. One level of tunnel only: an inner
// packet that is itself a tunnel is not followed.
func (p *refParsed) decodeUDPTunnel(b []byte) {
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
