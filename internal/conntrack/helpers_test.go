package conntrack

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/rstscope/rstscope/internal/decode"
)

const (
	ms  = int64(1e6)
	sec = int64(1e9)
)

var (
	cli = netip.MustParseAddrPort("10.0.0.1:40000")
	srv = netip.MustParseAddrPort("10.0.0.2:80")
)

// rec is what a test keeps of a finished connection (the *Conn is
// recycled after the callback).
type rec struct {
	ID             uint64
	State, History string
	Client, Server netip.AddrPort
	Flipped        bool
	Evicted        bool
	Ended          bool
	TotalPkts      uint64
	Size           [2]uint64
	Ep             [2]Endpoint
	HTTP           []HTTPMsg
	HTTPTotal      int
	Pkts           []Pkt
	Notes          []Note
}

type harness struct {
	t    *testing.T
	tr   *Tracker
	done []rec
	num  uint64
	tap  func(p decode.Parsed, ts int64) // sees every packet added, if set
}

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t}
	h.tr = New(cfg, func(c *Conn) {
		h.done = append(h.done, rec{ID: c.ID, State: c.State(), History: c.History(), Client: c.Client(),
			Server: c.Server(), Flipped: c.Flipped, Evicted: c.Evicted, Ended: c.Ended(), TotalPkts: c.TotalPkts,
			Size: [2]uint64{c.Ep[0].Size(), c.Ep[1].Size()}, Ep: c.Ep, HTTP: c.HTTP(), HTTPTotal: c.HTTPTotal,
			Pkts: c.Packets(), Notes: append([]Note(nil), c.Notes...)})
	})
	return h
}

// pkt is a TCP packet from src to dst; plen > len(payload) makes a
// snaplen-truncated one.
func pkt(src, dst netip.AddrPort, f decode.Flags, seq, ack uint32, payload []byte, plen int) decode.Parsed {
	if plen < len(payload) {
		plen = len(payload)
	}
	return decode.Parsed{Status: decode.OK, IPVersion: 4, Src: src.Addr(), Dst: dst.Addr(),
		SrcWords: words(src.Addr()), DstWords: words(dst.Addr()), TTL: 64,
		SrcPort: src.Port(), DstPort: dst.Port(), Seq: seq, Ack: ack, Flags: f, Window: 1000,
		Opts: decode.Options{WScale: -1}, PayloadLen: plen, Payload: payload, Truncated: plen > len(payload)}
}

// words is the address as Decode gives it in SrcWords/DstWords.
func words(a netip.Addr) [2]uint64 {
	b := a.As16()
	return [2]uint64{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (h *harness) add(p decode.Parsed, ts int64) *Conn {
	h.num++
	if h.tap != nil {
		h.tap(p, ts)
	}
	return h.tr.Add(&p, h.num, ts)
}

func (h *harness) flush() []rec { h.tr.Flush(); return h.done }

// conv plays a conversation between two endpoints, keeping each side's
// next sequence number and acknowledging the other side's.
type conv struct {
	h          *harness
	a, b       netip.AddrPort // a is the client
	aSeq, bSeq uint32
	ts         int64
	step       int64 // time between packets
	win        uint16
}

func (h *harness) conv(a, b netip.AddrPort, aISN, bISN uint32, ts int64) *conv {
	return &conv{h: h, a: a, b: b, aSeq: aISN, bSeq: bISN, ts: ts, step: ms, win: 1000}
}

func (v *conv) send(fromA bool, f decode.Flags, payload []byte, plen int) *Conn {
	src, dst, seq, ack := v.a, v.b, &v.aSeq, v.bSeq
	if !fromA {
		src, dst, seq, ack = v.b, v.a, &v.bSeq, v.aSeq
	}
	p := pkt(src, dst, f, *seq, ack, payload, plen)
	p.Window = v.win
	if f&decode.ACK == 0 {
		p.Ack = 0
	}
	if f&decode.RST == 0 {
		*seq += p.SegLen()
	}
	c := v.h.add(p, v.ts)
	v.ts += v.step
	return c
}

func (v *conv) c(f decode.Flags, payload string) *Conn { return v.send(true, f, []byte(payload), 0) }
func (v *conv) s(f decode.Flags, payload string) *Conn { return v.send(false, f, []byte(payload), 0) }

func (v *conv) handshake() {
	v.c(decode.SYN, "")
	v.s(decode.SYN|decode.ACK, "")
	v.c(decode.ACK, "")
}

const (
	SYN = decode.SYN
	ACK = decode.ACK
	FIN = decode.FIN
	RST = decode.RST
	PSH = decode.PSH
)
