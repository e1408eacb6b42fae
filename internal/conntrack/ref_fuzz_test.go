package conntrack

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	"github.com/rstscope/rstscope/internal/decode"
)

// snap is what the comparison keeps of a connection: everything a caller
// can see of it, and the private state later packets depend on.
type snap struct {
	rec
	MaxGap, Last, Start, closedAt int64
	clientIsA, reqPending, done   bool
	nrec, ring                    int32
}

func snapOf(c *Conn) snap {
	s := snap{
		rec: rec{ID: c.ID, State: c.State(), History: c.History(), Client: c.Client(),
			Server: c.Server(), Flipped: c.Flipped, Evicted: c.Evicted, Ended: c.Ended(), TotalPkts: c.TotalPkts,
			Size: [2]uint64{c.Ep[0].Size(), c.Ep[1].Size()}, Ep: c.Ep, HTTP: c.HTTP(), HTTPTotal: c.HTTPTotal,
			Pkts: c.Packets(), Notes: append([]Note(nil), c.Notes...)},
		MaxGap: c.MaxGap, Last: c.Last, Start: c.Start, closedAt: c.closedAt,
		clientIsA: c.clientIsA, reqPending: c.reqPending, done: c.done, nrec: c.nrec, ring: c.ring,
	}
	// The reference does not keep winMul; that it is right shows in
	// MaxWin and the zero windows.
	s.Ep[0].winMul, s.Ep[1].winMul = 0, 0
	return s
}

// fuzzFlow is one direction of a 4-tuple of the generated traffic.
type fuzzFlow struct{ seq, ack uint32 }

// genPackets turns data into a packet stream over a few 4-tuples: mostly
// conversations (in-order data and ACKs, handshakes, FINs), with
// retransmissions, gaps, sequence jumps and wraps, zero windows, window
// scaling, RSTs, odd flag combinations and time jumps past the linger and
// attempt timeouts, so that every branch of the per-packet code is taken.
func genPackets(data []byte, emit func(p *decode.Parsed, ts int64)) {
	addrs := []netip.Addr{
		netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.2"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("::ffff:10.0.0.3"),
	}
	ports := []uint16{80, 40000, 40001, 8080}
	payloads := [][]byte{
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		[]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
		[]byte("HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n"),
		[]byte("some body bytes"),
	}
	flows := map[[2]netip.AddrPort]*fuzzFlow{}
	ts := int64(1_700_000_000) * sec
	for len(data) >= 7 {
		b := data[:7]
		data = data[7:]
		src := netip.AddrPortFrom(addrs[b[0]&1], ports[b[0]>>1&1])
		dst := netip.AddrPortFrom(addrs[b[0]>>2&1|b[0]>>6&2], ports[b[0]>>3&3])
		if b[0]&0x20 != 0 {
			src, dst = dst, src
		}
		fw := flows[[2]netip.AddrPort{src, dst}]
		if fw == nil {
			fw = &fuzzFlow{seq: uint32(b[1]) << 24 * 0x01010101, ack: uint32(b[2]) * 0x01010101}
			flows[[2]netip.AddrPort{src, dst}] = fw
		}
		rv := flows[[2]netip.AddrPort{dst, src}]
		var f decode.Flags
		switch b[1] & 15 {
		case 0, 1, 2, 3, 4, 5, 6:
			f = decode.ACK
		case 7, 8, 9:
			f = decode.ACK | decode.PSH
		case 10:
			f = decode.FIN | decode.ACK
		case 11:
			f = decode.SYN
		case 12:
			f = decode.SYN | decode.ACK
		default:
			f = decode.Flags(b[1] >> 4) // any of FIN, SYN, RST, PSH
			if b[1]&2 != 0 {
				f |= decode.ACK
			}
		}
		plen := 0
		var payload []byte
		switch b[2] & 3 {
		case 1:
			payload = payloads[b[2]>>2&3]
			plen = len(payload)
		case 2:
			plen = int(b[2] >> 2)
		case 3:
			if b[2]&0x80 != 0 {
				plen = 1400
			}
		}
		if b[2]&0x40 != 0 && plen > 4 {
			payload = payload[:min(len(payload), 4)] // truncated capture
		}
		seq := fw.seq
		switch b[3] & 7 {
		case 5:
			seq -= uint32(plen) + uint32(b[3]>>3) // retransmission
		case 6:
			seq += uint32(b[3]>>3) * 1000 // a hole
		case 7:
			seq = uint32(b[3]>>3) << 27 // a jump anywhere
		}
		ack := fw.ack
		if rv != nil {
			ack = rv.seq
		}
		switch b[4] & 7 {
		case 5:
			ack -= uint32(b[4] >> 3)
		case 6:
			ack += uint32(b[4]>>3) * 100 // acknowledges what was not seen
		case 7:
			ack = uint32(b[4]) << 24
		}
		p := decode.Parsed{Status: decode.OK, IPVersion: 4, Src: src.Addr(), Dst: dst.Addr(),
			SrcWords: words(src.Addr()), DstWords: words(dst.Addr()), TTL: 64 - b[5]&3,
			SrcPort: src.Port(), DstPort: dst.Port(), Seq: seq, Ack: ack, Flags: f, Window: 1000,
			Opts: decode.Options{WScale: -1, HasTS: b[5]&4 != 0}, PayloadLen: plen, Payload: payload,
			Truncated: plen > len(payload)}
		if src.Addr().Is6() || dst.Addr().Is6() {
			p.IPVersion = 6
		}
		if b[4]&0x18 == 0x18 {
			p.Window = 0
		}
		if f&decode.SYN != 0 && b[5]&8 != 0 {
			p.Opts.WScale = int8(b[5] >> 4 & 7)
			if p.Opts.WScale == 7 {
				p.Opts.WScale = int8(14 + b[3]&31) // up to shifts past 31
			}
		}
		if b[5]&0xc0 == 0xc0 {
			p.TTL = 0
		}
		if f&decode.RST == 0 {
			fw.seq = seq + p.SegLen()
		}
		fw.ack = ack
		switch b[6] >> 3 {
		default:
			ts += int64(b[6]&7) * ms
		case 28:
			ts += 2 * sec
		case 29:
			ts += 6 * sec // past the linger and the attempt timeout
		case 30:
			ts -= ms // out of order in time
		case 31:
			ts = int64(b[6]&7) * sec // near zero
		}
		emit(&p, ts)
	}
}

// compareTrackers feeds data's packets to a tracker and to the reference
// code (ref_test.go) and fails on the first difference, after each packet
// and in the finished connections.
func compareTrackers(t *testing.T, data []byte) {
	if len(data) == 0 {
		return
	}
	cfg := Config{}
	switch data[0] & 3 {
	case 1:
		cfg.MaxConns = 2 + int(data[0]>>2&3)
	case 2:
		cfg.Inactive = 3 * sec
	case 3:
		cfg.Linger = sec
	}
	data = data[1:]
	var got, want []snap
	a := New(cfg, func(c *Conn) { got = append(got, snapOf(c)) })
	b := New(cfg, func(c *Conn) { want = append(want, snapOf(c)) })
	num := uint64(0)
	genPackets(data, func(p *decode.Parsed, ts int64) {
		num++
		q := *p
		ca := a.Add(p, num, ts)
		cb := b.refAdd(&q, num, ts)
		for i := range ca.Ep {
			// What plain relies on.
			if e := &ca.Ep[i]; e.State != Inactive && !e.seqInit {
				t.Fatalf("packet %d: endpoint %d in state %d without its sequence space", num, i, e.State)
			}
		}
		if sa, sb := snapOf(ca), snapOf(cb); !reflect.DeepEqual(sa, sb) {
			t.Fatalf("packet %d (%+v):\n got %+v\nwant %+v", num, q, sa, sb)
		}
		if num%64 == 0 {
			a.Advance(ts)
			b.Advance(ts)
		}
	})
	a.Flush()
	b.Flush()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("finished connections differ:\n got %+v\nwant %+v", got, want)
	}
	if sa, sb := a.Stats(), b.Stats(); sa != sb {
		t.Fatalf("stats: got %+v, want %+v", sa, sb)
	}
}

// FuzzTrackerMatchesReference checks that Tracker.Add, with its fast
// paths for the common packet, gives exactly what the straightforward code
// before them (ref_test.go) gives, on arbitrary packet streams.
func FuzzTrackerMatchesReference(f *testing.F) {
	for i := range 8 {
		seed := make([]byte, 1+7*200)
		x := uint32(i*7919 + 1)
		for j := range seed {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			seed[j] = byte(x)
		}
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Long inputs (the fuzzer makes them) take seconds each: keep the
		// first 2000 packets.
		compareTrackers(t, data[:min(len(data), 1+7*2000)])
	})
}

// TestTrackerMatchesReference runs the comparison on long pseudo-random
// streams (the fuzz target's seeds are short).
func TestTrackerMatchesReference(t *testing.T) {
	for i := range 20 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			data := make([]byte, 1+7*5000)
			x := uint64(i)*0x9e3779b97f4a7c15 + 1
			for j := range data {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				data[j] = byte(x >> 32)
			}
			compareTrackers(t, data)
		})
	}
}
