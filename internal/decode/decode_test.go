package decode

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"reflect"
	"testing"
	"unsafe"

	"github.com/rstscope/rstscope/internal/source"
)

// The segment most cases carry: a Linux data segment with timestamps.
var dataSeg = seg{sport: 40000, dport: 80, seq: 1000, ack: 2000, flags: PSH | ACK, win: 502,
	opts: dataOpts, payload: []byte("hello world")}

var (
	v4pkt = ipv4(v4a, v4b, 6, nil, dataSeg.bytes())
	v6pkt = ipv6(v6a, v6b, nil, 6, dataSeg.bytes())
)

// Expected results for dataSeg over IPv4 and IPv6, written from the field
// values put into the frames above.
var (
	wantV4 = Parsed{Status: OK, IPVersion: 4, Src: v4a, Dst: v4b, SrcWords: words(v4a), DstWords: words(v4b), TTL: 64, IPID: 0x1234, DF: true,
		SrcPort: 40000, DstPort: 80, Seq: 1000, Ack: 2000, Flags: PSH | ACK, Window: 502,
		Opts:       Options{WScale: -1, HasTS: true, TSVal: 123456, TSEcr: 654321},
		PayloadLen: 11, Payload: []byte("hello world")}
	wantV6 = Parsed{Status: OK, IPVersion: 6, Src: v6a, Dst: v6b, SrcWords: words(v6a), DstWords: words(v6b), TTL: 57,
		SrcPort: 40000, DstPort: 80, Seq: 1000, Ack: 2000, Flags: PSH | ACK, Window: 502,
		Opts:       Options{WScale: -1, HasTS: true, TSVal: 123456, TSEcr: 654321},
		PayloadLen: 11, Payload: []byte("hello world")}
)

// words is an address's 16-byte form (IPv4-mapped for IPv4) as two
// big-endian words.
func words(a netip.Addr) [2]uint64 {
	b := a.As16()
	return [2]uint64{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// with returns a copy of p changed by f.
func with(p Parsed, f func(*Parsed)) Parsed { f(&p); return p }

// ipOnly is what a non-TCP result keeps of w: the IP fields.
func ipOnly(w Parsed, s Status) Parsed {
	return Parsed{Status: s, IPVersion: w.IPVersion, Src: w.Src, Dst: w.Dst, SrcWords: w.SrcWords, DstWords: w.DstWords, TTL: w.TTL, IPID: w.IPID,
		DF: w.DF, Opts: Options{WScale: -1}}
}

func noIP(s Status) Parsed { return Parsed{Status: s, Opts: Options{WScale: -1}} }

// within reports whether sub lies inside buf's memory (an empty sub always does).
func within(buf, sub []byte) bool {
	if len(sub) == 0 {
		return true
	}
	b0 := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	s0 := uintptr(unsafe.Pointer(unsafe.SliceData(sub)))
	return s0 >= b0 && s0+uintptr(len(sub)) <= b0+uintptr(len(buf))
}

func checkParsed(t *testing.T, frame []byte, got, want Parsed) {
	t.Helper()
	gp, wp := got.Payload, want.Payload
	got.Payload, want.Payload = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if !bytes.Equal(gp, wp) {
		t.Errorf("payload %q, want %q", gp, wp)
	}
	if !within(frame, gp) {
		t.Errorf("payload is not a view into the frame")
	}
}

func setU16(b []byte, off int, v uint16) []byte {
	b = append([]byte(nil), b...)
	binary.BigEndian.PutUint16(b[off:], v)
	return b
}

func setByte(b []byte, off int, v byte) []byte {
	b = append([]byte(nil), b...)
	b[off] = v
	return b
}

type decodeCase struct {
	name  string
	link  uint32
	frame []byte
	want  Parsed
}

func linkCases() []decodeCase {
	return []decodeCase{
		{"ethernet/ipv4", source.LinkEthernet, ether(0x0800, v4pkt), wantV4},
		{"ethernet/ipv6", source.LinkEthernet, ether(0x86dd, v6pkt), wantV6},
		{"ethernet/802.1q/ipv4", source.LinkEthernet, ether(0x8100, cat(tag(100, 0x0800), v4pkt)), wantV4},
		{"ethernet/802.1q/ipv6", source.LinkEthernet, ether(0x8100, cat(tag(100, 0x86dd), v6pkt)), wantV6},
		{"ethernet/qinq-88a8/ipv4", source.LinkEthernet, ether(0x88a8, cat(tag(10, 0x8100), tag(20, 0x0800), v4pkt)), wantV4},
		{"ethernet/qinq-9100/ipv6", source.LinkEthernet, ether(0x9100, cat(tag(10, 0x8100), tag(20, 0x86dd), v6pkt)), wantV6},
		{"ethernet/mpls/ipv4", source.LinkEthernet, ether(0x8847, cat(mplsLabel(16, true), v4pkt)), wantV4},
		{"ethernet/mpls-stack/ipv6", source.LinkEthernet, ether(0x8847, cat(mplsLabel(16, false), mplsLabel(17, false), mplsLabel(18, true), v6pkt)), wantV6},
		{"ethernet/mpls-multicast/ipv4", source.LinkEthernet, ether(0x8848, cat(mplsLabel(16, true), v4pkt)), wantV4},
		{"ethernet/802.1q/mpls/ipv4", source.LinkEthernet, ether(0x8100, cat(tag(5, 0x8847), mplsLabel(16, true), v4pkt)), wantV4},
		{"sll/ipv4", source.LinkSLL, sll(0x0800, v4pkt), wantV4},
		{"sll/ipv6", source.LinkSLL, sll(0x86dd, v6pkt), wantV6},
		{"sll2/ipv4", source.LinkSLL2, sll2(0x0800, v4pkt), wantV4},
		{"sll2/ipv6", source.LinkSLL2, sll2(0x86dd, v6pkt), wantV6},
		{"raw101/ipv4", source.LinkRaw, v4pkt, wantV4},
		{"raw101/ipv6", source.LinkRaw, v6pkt, wantV6},
		{"raw228/ipv4", source.LinkIPv4, v4pkt, wantV4},
		{"raw229/ipv6", source.LinkIPv6, v6pkt, wantV6},
		{"null-le/ipv4", source.LinkNull, null(true, 2, v4pkt), wantV4},
		{"null-be/ipv4", source.LinkNull, null(false, 2, v4pkt), wantV4},
		{"null-le/ipv6-24", source.LinkNull, null(true, 24, v6pkt), wantV6},
		{"null-le/ipv6-28", source.LinkNull, null(true, 28, v6pkt), wantV6},
		{"null-be/ipv6-30", source.LinkNull, null(false, 30, v6pkt), wantV6},
		{"loop/ipv4", source.LinkLoop, null(false, 2, v4pkt), wantV4},
		{"loop/ipv6", source.LinkLoop, null(false, 24, v6pkt), wantV6},

		{"ethernet/arp", source.LinkEthernet, ether(0x0806, make([]byte, 28)), noIP(NotIP)},
		{"ethernet/lldp-under-vlan", source.LinkEthernet, ether(0x8100, cat(tag(1, 0x88cc), make([]byte, 30))), noIP(NotIP)},
		{"sll/arp", source.LinkSLL, sll(0x0806, make([]byte, 28)), noIP(NotIP)},
		{"null/af-7", source.LinkNull, null(true, 7, v4pkt), noIP(NotIP)},
		{"raw/version-5", source.LinkRaw, setByte(v4pkt, 0, 0x55), noIP(NotIP)},
		{"mpls/not-ip", source.LinkEthernet, ether(0x8847, cat(mplsLabel(16, true), []byte{0x00, 1, 2, 3})), noIP(NotIP)},
		{"link-type-unknown", 147, v4pkt, noIP(BadLinkType)},

		{"ethernet/short", source.LinkEthernet, ether(0x0800, nil)[:13], noIP(ShortLink)},
		{"ethernet/vlan-cut", source.LinkEthernet, ether(0x8100, []byte{0, 1}), noIP(ShortLink)},
		{"ethernet/mpls-no-bottom", source.LinkEthernet, ether(0x8847, cat(mplsLabel(1, false), mplsLabel(2, false))), noIP(ShortLink)},
		{"sll/short", source.LinkSLL, make([]byte, 15), noIP(ShortLink)},
		{"sll2/short", source.LinkSLL2, make([]byte, 19), noIP(ShortLink)},
		{"null/short", source.LinkNull, []byte{2, 0, 0}, noIP(ShortLink)},
		{"raw/empty", source.LinkRaw, nil, noIP(ShortIP)},
		{"ethernet/ip-header-only-link", source.LinkEthernet, ether(0x0800, nil), noIP(ShortIP)},
	}
}

func TestDecodeLinkTypes(t *testing.T) { runCases(t, linkCases()) }

func runCases(t *testing.T, cases []decodeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Start from garbage: Decode must overwrite every field.
			p := Parsed{Status: ShortTCP, IPVersion: 9, SrcPort: 1, Payload: []byte("junk"), Truncated: true,
				Tunneled: true, Opts: Options{MSS: 9, SACK: true}}
			p.Decode(tc.link, tc.frame)
			checkParsed(t, tc.frame, p, tc.want)
		})
	}
}

func TestDecodeIP(t *testing.T) {
	// IPv4 with options: IHL 8 (record route, router alert, padding).
	ipOpts := []byte{7, 7, 4, 0, 0, 0, 0, 148, 4, 0, 0, 1, 0, 0, 0, 0}
	v4opts := ipv4(v4a, v4b, 6, ipOpts, dataSeg.bytes())

	// Non-first fragment: offset 1480 bytes (185 units), the TCP
	// header-shaped bytes after the IP header are data.
	frag := setU16(v4pkt, 6, 185)
	// First fragment with more-fragments set: the TCP header is there.
	firstFrag := setU16(v4pkt, 6, 0x2000)

	v6ext := ipv6(v6a, v6b, []ext{{0, []byte{1, 4, 0, 0, 0, 0}}, {60, []byte{1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}, {44, []byte{0, 1, 0, 0, 0, 42}}}, 6, dataSeg.bytes())
	v6frag := ipv6(v6a, v6b, []ext{{44, []byte{0x05, 0xc8, 0, 0, 0, 42}}}, 6, dataSeg.bytes())
	v6routing := ipv6(v6a, v6b, []ext{{43, []byte{0, 0, 0, 0, 0, 0}}}, 6, dataSeg.bytes())
	// Authentication header: 12 bytes of header plus 12 of ICV, length
	// field (24/4)-2 = 4.
	ah := cat([]byte{6, 4, 0, 0}, make([]byte, 20))
	v6ah := ipv6(v6a, v6b, nil, 51, cat(ah, dataSeg.bytes()))
	// Nine hop-by-hop headers in a chain: more than the walk follows.
	var many []ext
	for range 9 {
		many = append(many, ext{60, make([]byte, 6)})
	}
	v6many := ipv6(v6a, v6b, many, 6, dataSeg.bytes())

	udp4 := ipv4(v4a, v4b, 17, nil, udp(5353, 53, []byte("not a teredo packet, just some dns-ish bytes......")))
	icmp4 := ipv4(v4a, v4b, 1, nil, make([]byte, 8))
	udp6 := ipv6(v6a, v6b, nil, 17, udp(5353, 53, make([]byte, 40)))
	icmp6 := ipv6(v6a, v6b, []ext{{0, make([]byte, 6)}}, 58, make([]byte, 8))

	runCases(t, []decodeCase{
		{"ipv4-options", source.LinkRaw, v4opts, wantV4},
		{"ipv4-fragment", source.LinkRaw, frag, with(ipOnly(wantV4, Fragment), func(p *Parsed) { p.DF = false })},
		{"ipv4-first-fragment", source.LinkRaw, firstFrag, with(wantV4, func(p *Parsed) { p.DF = false })},
		{"ipv6-hbh-dst-frag0", source.LinkRaw, v6ext, wantV6},
		{"ipv6-fragment", source.LinkRaw, v6frag, ipOnly(wantV6, Fragment)},
		{"ipv6-routing", source.LinkRaw, v6routing, wantV6},
		{"ipv6-ah", source.LinkRaw, v6ah, wantV6},
		{"ipv6-too-many-ext", source.LinkRaw, v6many, ipOnly(wantV6, ShortIP)},
		{"ipv6-ext-cut", source.LinkRaw, v6ext[:40+4], ipOnly(wantV6, ShortIP)},
		{"ipv4-udp", source.LinkRaw, udp4, ipOnly(wantV4, NotTCP)},
		{"ipv4-icmp", source.LinkRaw, icmp4, ipOnly(wantV4, NotTCP)},
		{"ipv6-udp", source.LinkRaw, udp6, ipOnly(wantV6, NotTCP)},
		{"ipv6-icmp", source.LinkRaw, icmp6, ipOnly(wantV6, NotTCP)},

		// Nonsense lengths.
		{"ipv4-ihl-4", source.LinkRaw, setByte(v4pkt, 0, 0x44), noIP(ShortIP)},
		{"ipv4-ihl-0", source.LinkRaw, setByte(v4pkt, 0, 0x40), noIP(ShortIP)},
		{"ipv4-ihl-beyond-capture", source.LinkRaw, setByte(v4pkt[:24], 0, 0x47), noIP(ShortIP)},
		{"ipv4-total-below-header", source.LinkRaw, setU16(v4pkt, 2, 12), ipOnly(wantV4, ShortIP)},
		{"ipv4-total-below-ihl", source.LinkRaw, setU16(v4opts, 2, 24), ipOnly(wantV4, ShortIP)},
		{"ipv4-short", source.LinkRaw, v4pkt[:19], noIP(ShortIP)},
		{"ipv4-version-6-in-v4-ethertype", source.LinkEthernet, ether(0x0800, v6pkt), noIP(ShortIP)},
		{"ipv6-version-4-in-v6-ethertype", source.LinkEthernet, ether(0x86dd, cat(v4pkt, make([]byte, 40))), noIP(ShortIP)},
		{"ipv6-short", source.LinkIPv6, v6pkt[:39], noIP(ShortIP)},
		{"tcp-data-offset-4", source.LinkRaw, setByte(v4pkt, 20+12, 0x40), ipOnly(wantV4, ShortTCP)},
		{"tcp-data-offset-0", source.LinkRaw, setByte(v6pkt, 40+12, 0x00), ipOnly(wantV6, ShortTCP)},
		{"tcp-header-cut", source.LinkRaw, v4pkt[:20+19], ipOnly(wantV4, ShortTCP)},
		{"tcp-no-room", source.LinkRaw, setU16(v4pkt, 2, 20+10), ipOnly(wantV4, ShortTCP)},
	})
}

func TestDecodeLengths(t *testing.T) {
	ack := seg{sport: 80, dport: 40000, seq: 7, ack: 9, flags: ACK, win: 100}
	ackV4 := ipv4(v4b, v4a, 6, nil, ack.bytes())
	wantAck := Parsed{Status: OK, IPVersion: 4, Src: v4b, Dst: v4a, SrcWords: words(v4b), DstWords: words(v4a), TTL: 64, IPID: 0x1234, DF: true,
		SrcPort: 80, DstPort: 40000, Seq: 7, Ack: 9, Flags: ACK, Window: 100, Opts: Options{WScale: -1}}
	two := ack
	two.payload = []byte("hi")
	twoV4 := ipv4(v4b, v4a, 6, nil, two.bytes())
	wantTwo := with(wantAck, func(p *Parsed) { p.PayloadLen = 2; p.Payload = []byte("hi") })
	pad := bytes.Repeat([]byte{0xee}, 20)

	// TSO: IPv4 total length 0 and IPv6 payload length 0: the capture is
	// the packet.
	tso4 := setU16(v4pkt, 2, 0)
	tso6 := setU16(v6pkt, 4, 0)

	// Data offset says 8 words but the IP packet ends after the fixed TCP
	// header.
	offBeyond := setByte(setU16(v4pkt, 2, 40), 20+12, 0x80)

	eth4 := ether(0x0800, v4pkt)
	hdr4 := 14 + 20 + 20 + len(dataOpts) + 2 // two bytes of payload captured
	optsCut := 14 + 20 + 20 + 5              // in the middle of the options

	runCases(t, []decodeCase{
		{"ethernet-padding-pure-ack", source.LinkEthernet, ether(0x0800, cat(ackV4, pad)), wantAck},
		{"ethernet-padding-2-bytes", source.LinkEthernet, ether(0x0800, cat(twoV4, pad)), wantTwo},
		{"ethernet-padding-ipv6", source.LinkEthernet, ether(0x86dd, cat(v6pkt, pad)), wantV6},
		{"sll-padding", source.LinkSLL, sll(0x0800, cat(twoV4, pad[:6])), wantTwo},
		{"snaplen-payload", source.LinkEthernet, eth4[:hdr4],
			with(wantV4, func(p *Parsed) { p.Payload = []byte("he"); p.Truncated = true })},
		{"snaplen-payload-none", source.LinkEthernet, eth4[:hdr4-2],
			with(wantV4, func(p *Parsed) { p.Payload = nil; p.Truncated = true })},
		{"snaplen-options", source.LinkEthernet, eth4[:optsCut],
			with(wantV4, func(p *Parsed) { p.Opts = Options{WScale: -1}; p.Payload = nil; p.Truncated = true })},
		{"snaplen-options-no-payload", source.LinkEthernet, ether(0x0800, ipv4(v4b, v4a, 6, nil, seg{sport: 80, dport: 40000, seq: 7, ack: 9, flags: ACK, win: 100, opts: dataOpts}.bytes()))[:14+20+20+4],
			wantAck},
		{"snaplen-ipv6", source.LinkRaw, v6pkt[:len(v6pkt)-4],
			with(wantV6, func(p *Parsed) { p.Payload = []byte("hello w"); p.Truncated = true })},
		{"tso-ipv4-total-0", source.LinkRaw, tso4, wantV4},
		{"tso-ipv6-payload-0", source.LinkRaw, tso6, wantV6},
		{"data-offset-beyond-ip-length", source.LinkRaw, offBeyond,
			with(wantV4, func(p *Parsed) { p.Opts = Options{WScale: -1}; p.PayloadLen = 0; p.Payload = nil })},
	})
}

func TestDecodeTCPOptions(t *testing.T) {
	sack := []byte{1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 9}
	tests := []struct {
		name string
		opts []byte
		want Options
	}{
		{"none", nil, Options{WScale: -1}},
		{"linux-syn", synOpts, Options{MSS: 1460, WScale: 7, SACKPerm: true, HasTS: true, TSVal: 1000}},
		{"data-timestamps", dataOpts, Options{WScale: -1, HasTS: true, TSVal: 123456, TSEcr: 654321}},
		{"sack-block", cat(sack, []byte{1, 1}, tsOpt(5, 6)), Options{WScale: -1, SACK: true, HasTS: true, TSVal: 5, TSEcr: 6}},
		{"wscale-0", []byte{3, 3, 0}, Options{WScale: 0}},
		{"wscale-clamped", []byte{3, 3, 20}, Options{WScale: 14}},
		{"eol-stops", cat([]byte{2, 4, 1, 0, 0}, tsOpt(1, 2)), Options{MSS: 256, WScale: -1}},
		{"unknown-kind-skipped", cat([]byte{30, 6, 1, 2, 3, 4}, []byte{2, 4, 0x23, 0x28}), Options{MSS: 9000, WScale: -1}},
		{"mss-wrong-length-skipped", cat([]byte{2, 3, 9}, []byte{4, 2}), Options{WScale: -1, SACKPerm: true}},
		{"ts-wrong-length-skipped", cat([]byte{8, 6, 0, 0, 0, 1}, []byte{3, 3, 2}), Options{WScale: 2}},
		{"length-0-stops", cat([]byte{4, 2}, []byte{2, 0, 5, 0}, []byte{3, 3, 2}), Options{WScale: -1, SACKPerm: true}},
		{"length-1-stops", cat([]byte{2, 1, 5, 0}, []byte{3, 3, 2}), Options{WScale: -1}},
		{"length-past-end", cat([]byte{3, 3, 4}, []byte{8, 40, 0, 0, 0, 0, 0}), Options{WScale: 4}},
		{"kind-without-length", cat([]byte{1, 1, 1}, []byte{2}), Options{WScale: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := seg{sport: 1, dport: 2, flags: SYN, opts: tc.opts}
			var p Parsed
			p.Decode(source.LinkRaw, ipv4(v4a, v4b, 6, nil, s.bytes()))
			if p.Status != OK {
				t.Fatalf("status %v", p.Status)
			}
			if p.Opts != tc.want {
				t.Errorf("opts %+v, want %+v", p.Opts, tc.want)
			}
			if p.PayloadLen != 0 || len(p.Payload) != 0 {
				t.Errorf("options leaked into payload: %d %q", p.PayloadLen, p.Payload)
			}
		})
	}
}

// teredo wraps an IPv6 packet in UDP/IPv4, with optional Teredo
// authentication and origin indication headers before it.
func teredo(sport, dport uint16, auth, origin bool, inner []byte) []byte {
	var pre []byte
	if auth {
		// 00 01, ID-len 3, AU-len 2, client id, auth value, nonce (8), confirmation.
		pre = append(pre, 0, 1, 3, 2, 'a', 'b', 'c', 'x', 'y')
		pre = append(pre, make([]byte, 9)...)
	}
	if origin {
		pre = append(pre, 0, 0, 0xf2, 0x27, 0x3f, 0x00, 0x00, 0x01)
	}
	return ipv4(v4a, v4b, 17, nil, udp(sport, dport, cat(pre, inner)))
}

func TestDecodeTeredo(t *testing.T) {
	tunneled := with(wantV6, func(p *Parsed) { p.Tunneled = true })
	innerUDP := ipv6(v6a, v6b, nil, 17, udp(1000, 2000, make([]byte, 20)))
	ts := teredo(3544, 50000, false, true, v6pkt)
	runCases(t, []decodeCase{
		{"plain-to-3544", source.LinkRaw, teredo(50000, 3544, false, false, v6pkt), tunneled},
		{"origin-indication-from-3544", source.LinkRaw, ts, tunneled},
		{"auth-and-origin", source.LinkEthernet, ether(0x0800, teredo(3544, 50000, true, true, v6pkt)), tunneled},
		{"relay-off-port-exact-length", source.LinkRaw, teredo(50001, 50002, false, false, v6pkt), tunneled},
		{"snaplen-inner", source.LinkRaw, ts[:len(ts)-3],
			with(tunneled, func(p *Parsed) { p.Payload = []byte("hello wo"); p.Truncated = true })},
		// Not Teredo: the outer packet's fields stay, nothing is tunneled.
		{"dns", source.LinkRaw, ipv4(v4a, v4b, 17, nil, udp(5353, 53, []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x03com\x00\x00\x01\x00\x01"))), ipOnly(wantV4, NotTCP)},
		{"off-port-ipv6-looking-wrong-length", source.LinkRaw, teredo(50001, 50002, false, false, cat(v6pkt, []byte{0})), ipOnly(wantV4, NotTCP)},
		{"3544-inner-udp", source.LinkRaw, teredo(3544, 50000, false, false, innerUDP), ipOnly(wantV4, NotTCP)},
		{"3544-inner-not-ipv6", source.LinkRaw, teredo(3544, 50000, false, false, v4pkt), ipOnly(wantV4, NotTCP)},
		{"3544-auth-cut", source.LinkRaw, teredo(3544, 50000, true, false, nil)[:20+8+14], ipOnly(wantV4, NotTCP)},
		{"3544-inner-fragment", source.LinkRaw, teredo(3544, 50000, false, false, ipv6(v6a, v6b, []ext{{44, []byte{0, 8, 0, 0, 0, 1}}}, 6, dataSeg.bytes())), ipOnly(wantV4, NotTCP)},
		{"ipv6-outer-to-3544", source.LinkRaw, ipv6(v6b, v6a, nil, 17, udp(40000, 3544, v6pkt)), tunneled},
	})
}

func TestFlagsString(t *testing.T) {
	// tcpdump's notation: letters in its tcp_flag_values order
	// (F S R P . U E W), "none" without flags.
	tests := []struct {
		f    Flags
		want string
	}{
		{SYN, "[S]"},
		{SYN | ACK, "[S.]"},
		{PSH | ACK, "[P.]"},
		{FIN | ACK, "[F.]"},
		{FIN | PSH | ACK, "[FP.]"},
		{RST, "[R]"},
		{RST | ACK, "[R.]"},
		{ACK, "[.]"},
		{0, "[none]"},
		{SYN | ECE | CWR, "[SEW]"},
		{SYN | ACK | ECE, "[S.E]"},
		{ACK | CWR, "[.W]"},
		{URG | ACK, "[.U]"},
		{FIN | SYN, "[FS]"},
		{RST | PSH, "[RP]"},
		{0xff, "[FSRP.UEW]"},
	}
	for _, tc := range tests {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("Flags(%#x).String() = %s, want %s", uint8(tc.f), got, tc.want)
		}
	}
}

func TestFlagsHasAndSegLen(t *testing.T) {
	if !(SYN | ACK).Has(SYN) || (SYN).Has(SYN|ACK) || !Flags(0).Has(0) {
		t.Error("Has")
	}
	tests := []struct {
		f    Flags
		plen int
		want uint32
	}{{SYN, 0, 1}, {SYN | ACK, 0, 1}, {ACK, 0, 0}, {PSH | ACK, 100, 100}, {FIN | ACK, 5, 6}, {SYN | FIN, 0, 2}}
	for _, tc := range tests {
		p := Parsed{Flags: tc.f, PayloadLen: tc.plen}
		if got := p.SegLen(); got != tc.want {
			t.Errorf("%v len %d: SegLen %d, want %d", tc.f, tc.plen, got, tc.want)
		}
	}
}

func TestStatusString(t *testing.T) {
	seen := map[string]bool{}
	for s := OK; s <= BadLinkType; s++ {
		n := s.String()
		if n == "" || n == "unknown" || seen[n] {
			t.Errorf("status %d: name %q", s, n)
		}
		seen[n] = true
	}
	if Status(200).String() != "unknown" {
		t.Error("out of range status")
	}
}

// TestDecodeHeaderViews checks the views against the builder's values on
// the raw bytes, independent of Decode.
func TestDecodeHeaderViews(t *testing.T) {
	ip := IPv4(setU16(v4pkt, 6, 0x2000|3))
	if ip.Version() != 4 || ip.HeaderLength() != 20 || ip.TotalLength() != len(v4pkt) || ip.ID() != 0x1234 ||
		ip.FragmentOffset() != 24 || !ip.MoreFragments() || ip.TTL() != 64 || ip.Protocol() != 6 ||
		netip.AddrFrom4(ip.SourceAddress()) != v4a || netip.AddrFrom4(ip.DestinationAddress()) != v4b {
		t.Error("IPv4 view")
	}
	ip6 := IPv6(v6pkt)
	if ip6.Version() != 6 || ip6.PayloadLength() != len(v6pkt)-40 || ip6.NextHeader() != 6 || ip6.HopLimit() != 57 ||
		netip.AddrFrom16(ip6.SourceAddress()) != v6a || netip.AddrFrom16(ip6.DestinationAddress()) != v6b {
		t.Error("IPv6 view")
	}
	tcp := TCP(dataSeg.bytes())
	if tcp.SourcePort() != 40000 || tcp.DestinationPort() != 80 || tcp.SequenceNumber() != 1000 || tcp.AckNumber() != 2000 ||
		tcp.DataOffset() != 32 || tcp.Flags() != PSH|ACK || tcp.WindowSize() != 502 || !bytes.Equal(tcp.Options(), dataOpts) {
		t.Error("TCP view")
	}
}

func TestDecodeAllocs(t *testing.T) {
	frames := []struct {
		link uint32
		b    []byte
	}{
		{source.LinkEthernet, ether(0x0800, v4pkt)},
		{source.LinkEthernet, ether(0x8100, cat(tag(1, 0x86dd), v6pkt))},
		{source.LinkRaw, teredo(3544, 50000, true, true, v6pkt)},
		{source.LinkSLL2, sll2(0x0800, v4pkt[:30])},
	}
	var p Parsed
	for _, f := range frames {
		if n := testing.AllocsPerRun(100, func() { p.Decode(f.link, f.b) }); n != 0 {
			t.Errorf("link %d: %v allocs per Decode", f.link, n)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	frame := ether(0x0800, ipv4(v4a, v4b, 6, nil, seg{sport: 40000, dport: 443, seq: 1, ack: 2, flags: PSH | ACK,
		win: 502, opts: dataOpts, payload: make([]byte, 1200)}.bytes()))
	var p Parsed
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		p.Decode(source.LinkEthernet, frame)
	}
	if p.Status != OK || p.PayloadLen != 1200 {
		b.Fatal(p.Status, p.PayloadLen)
	}
}
