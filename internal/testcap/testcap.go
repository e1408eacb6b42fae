// Package testcap builds small captures by hand for tests: Ethernet, IPv4 or
// IPv6, TCP with optional timestamps, written as pcap or pcapng. Checksums
// are left zero (rstscope does not check them). It is used only by tests.
package testcap

import (
	"bytes"
	"encoding/binary"
	"net/netip"

	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/pcapio"
	"github.com/rstscope/rstscope/internal/source"
)

// T0 is the capture's start: 2023-11-14T22:13:20Z.
const T0 = int64(1_700_000_000_000_000_000)

// Capture accumulates frames.
type Capture struct {
	Frames []source.Frame
	ipid   uint16
}

// Seg is one TCP segment.
type Seg struct {
	At       float64 // seconds after T0
	From, To string  // "ip:port"
	Flags    decode.Flags
	Seq, Ack uint32
	Win      uint16
	Payload  string
	TS       bool  // add the timestamp option
	TTL      uint8 // 0 means 64
	Comment  string
}

// Add appends a segment.
func (c *Capture) Add(s Seg) {
	from, to := netip.MustParseAddrPort(s.From), netip.MustParseAddrPort(s.To)
	c.ipid++
	hl := 20
	if s.TS {
		hl = 32
	}
	tcp := make([]byte, hl, hl+len(s.Payload))
	binary.BigEndian.PutUint16(tcp[0:], from.Port())
	binary.BigEndian.PutUint16(tcp[2:], to.Port())
	binary.BigEndian.PutUint32(tcp[4:], s.Seq)
	binary.BigEndian.PutUint32(tcp[8:], s.Ack)
	tcp[12] = byte(hl/4) << 4
	tcp[13] = byte(s.Flags)
	binary.BigEndian.PutUint16(tcp[14:], s.Win)
	if s.TS {
		copy(tcp[20:], []byte{1, 1, 8, 10})
		binary.BigEndian.PutUint32(tcp[24:], uint32(s.At*1000))
	}
	tcp = append(tcp, s.Payload...)
	ttl := s.TTL
	if ttl == 0 {
		ttl = 64
	}
	var ip []byte
	etype := []byte{0x08, 0x00}
	if from.Addr().Is4() {
		ip = make([]byte, 20, 20+len(tcp))
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
		binary.BigEndian.PutUint16(ip[4:], c.ipid)
		ip[8], ip[9] = ttl, 6
		f, t := from.Addr().As4(), to.Addr().As4()
		copy(ip[12:], f[:])
		copy(ip[16:], t[:])
	} else {
		etype = []byte{0x86, 0xdd}
		ip = make([]byte, 40, 40+len(tcp))
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)))
		ip[6], ip[7] = 6, ttl
		f, t := from.Addr().As16(), to.Addr().As16()
		copy(ip[8:], f[:])
		copy(ip[24:], t[:])
	}
	ip = append(ip, tcp...)
	data := append([]byte{0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1}, etype...)
	data = append(data, ip...)
	c.Frames = append(c.Frames, source.Frame{Timestamp: T0 + int64(s.At*1e9), LinkType: source.LinkEthernet,
		OrigLen: len(data), Data: data, Comment: s.Comment})
}

// Pcapng returns the capture as pcapng (keeps comments).
func (c *Capture) Pcapng() []byte {
	var b bytes.Buffer
	w, err := pcapio.NewNgWriter(&b)
	if err != nil {
		panic(err)
	}
	iface, err := w.AddInterface(source.LinkEthernet, 0, "eth0")
	if err != nil {
		panic(err)
	}
	for i := range c.Frames {
		if err := w.WritePacket(iface, &c.Frames[i]); err != nil {
			panic(err)
		}
	}
	if err := w.Flush(); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// Pcap returns the capture as classic pcap (nanosecond resolution).
func (c *Capture) Pcap() []byte {
	var b bytes.Buffer
	w, err := pcapio.NewPcapWriter(&b, source.LinkEthernet, 65535)
	if err != nil {
		panic(err)
	}
	for i := range c.Frames {
		if err := w.WritePacket(&c.Frames[i]); err != nil {
			panic(err)
		}
	}
	if err := w.Flush(); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// Flags shorthands.
const (
	S  = decode.SYN
	SA = decode.SYN | decode.ACK
	A  = decode.ACK
	PA = decode.PSH | decode.ACK
	FA = decode.FIN | decode.ACK
	R  = decode.RST
	RA = decode.RST | decode.ACK
)

// Handshake adds SYN, SYN-ACK, ACK at t, t+1ms, t+2ms with ISNs 1000 (client)
// and 5000 (server).
func (c *Capture) Handshake(t float64, cli, srv string) {
	c.Add(Seg{At: t, From: cli, To: srv, Flags: S, Seq: 1000, Win: 65535, TS: true})
	c.Add(Seg{At: t + 0.001, From: srv, To: cli, Flags: SA, Seq: 5000, Ack: 1001, Win: 65535, TS: true})
	c.Add(Seg{At: t + 0.002, From: cli, To: srv, Flags: A, Seq: 1001, Ack: 5001, Win: 512, TS: true})
}

// Scenario3 is the article's stale keep-alive: GET, response, 5 s idle,
// server FIN, client ACK, 1 s later a GET on the same connection, server RST.
func Scenario3() *Capture {
	var c Capture
	cli, srv := "10.211.55.10:52000", "10.211.55.5:80"
	c.Handshake(0, cli, srv)
	req := "GET /test HTTP/1.1\r\nHost: test.foo.com\r\nConnection: Keep-Alive\r\n\r\n"
	resp := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"
	c.Add(Seg{At: 0.010, From: cli, To: srv, Flags: PA, Seq: 1001, Ack: 5001, Win: 512, Payload: req, TS: true})
	c.Add(Seg{At: 0.012, From: srv, To: cli, Flags: PA, Seq: 5001, Ack: 1001 + uint32(len(req)), Win: 512, Payload: resp, TS: true})
	c.Add(Seg{At: 0.013, From: cli, To: srv, Flags: A, Seq: 1001 + uint32(len(req)), Ack: 5001 + uint32(len(resp)), Win: 512, TS: true})
	fin := 5001 + uint32(len(resp))
	c.Add(Seg{At: 5.013, From: srv, To: cli, Flags: FA, Seq: fin, Ack: 1001 + uint32(len(req)), Win: 512, TS: true})
	c.Add(Seg{At: 5.014, From: cli, To: srv, Flags: A, Seq: 1001 + uint32(len(req)), Ack: fin + 1, Win: 512, TS: true})
	c.Add(Seg{At: 6.015, From: cli, To: srv, Flags: PA, Seq: 1001 + uint32(len(req)), Ack: fin + 1, Win: 512, Payload: req, TS: true})
	c.Add(Seg{At: 6.016, From: srv, To: cli, Flags: R, Seq: fin + 1, Win: 0})
	return &c
}
