package livecap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rstscope/rstscope/internal/bpfilter"
	"github.com/rstscope/rstscope/internal/source"
)

// tcpPkt is what the tests need to know about a captured TCP packet.
type tcpPkt struct {
	src, dst netip.AddrPort
	flags    byte
	payload  int    // TCP payload length from the IP length fields
	network  []byte // captured bytes from the IP header on (copied)
	sll2     []byte // the SLL2 header, if any (copied)
}

const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagACK = 0x10
)

// decode parses an Ethernet or SLL2 frame carrying TCP over IPv4 or IPv6.
func decode(f *source.Frame) (tcpPkt, error) {
	d := f.Data
	var p tcpPkt
	var proto uint16
	switch f.LinkType {
	case source.LinkEthernet:
		if len(d) < 14 {
			return p, errors.New("short ethernet")
		}
		proto, d = binary.BigEndian.Uint16(d[12:]), d[14:]
	case source.LinkSLL2:
		if len(d) < 20 {
			return p, errors.New("short sll2")
		}
		p.sll2 = bytes.Clone(d[:20])
		proto, d = binary.BigEndian.Uint16(d[0:]), d[20:]
	default:
		return p, fmt.Errorf("link type %d", f.LinkType)
	}
	p.network = bytes.Clone(d)
	var tcp []byte
	var ipPayload int
	switch proto {
	case 0x0800:
		if len(d) < 20 || d[9] != 6 {
			return p, errors.New("not IPv4 TCP")
		}
		ihl := int(d[0]&0xf) * 4
		ipPayload = int(binary.BigEndian.Uint16(d[2:])) - ihl
		p.src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(d[12:16])), 0)
		p.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(d[16:20])), 0)
		tcp = d[ihl:]
	case 0x86dd:
		if len(d) < 40 || d[6] != 6 {
			return p, errors.New("not IPv6 TCP")
		}
		ipPayload = int(binary.BigEndian.Uint16(d[4:]))
		p.src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(d[8:24])), 0)
		p.dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(d[24:40])), 0)
		tcp = d[40:]
	default:
		return p, fmt.Errorf("ethertype %#x", proto)
	}
	if len(tcp) < 20 {
		return p, errors.New("short TCP header")
	}
	p.src = netip.AddrPortFrom(p.src.Addr(), binary.BigEndian.Uint16(tcp[0:]))
	p.dst = netip.AddrPortFrom(p.dst.Addr(), binary.BigEndian.Uint16(tcp[2:]))
	p.flags = tcp[13]
	p.payload = ipPayload - int(tcp[12]>>4)*4
	return p, nil
}

// exchange makes one TCP connection from client to ln: the client sends
// req, the server answers with resp, then both close. It runs in ns.
func exchange(t *testing.T, ns *netns, ln net.Listener, req, resp []byte) {
	t.Helper()
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, len(req))
		if _, err := io.ReadFull(c, got); err != nil {
			srvErr <- err
			return
		}
		_, err = c.Write(resp)
		srvErr <- err
	}()
	var c net.Conn
	var err error
	ns.Do(func() { c, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second) })
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatalf("client write: %v", err)
	}
	got, err := io.ReadAll(c) // until the server's FIN
	if err != nil || len(got) != len(resp) {
		t.Fatalf("client read %d bytes, want %d: %v", len(got), len(resp), err)
	}
	if err := <-srvErr; err != nil {
		t.Fatalf("server: %v", err)
	}
}

// listen opens a TCP listener on addr inside ns.
func listen(t *testing.T, ns *netns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	ns.Do(func() { ln, err = net.Listen("tcp", addr) })
	if err != nil {
		if addr[0] == '[' {
			t.Skipf("IPv6 loopback unavailable: %v", err)
		}
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func port(ln net.Listener) uint16 { return uint16(ln.Addr().(*net.TCPAddr).Port) }

// collect reads frames until done reports true for the packets so far, then
// keeps reading until the ring stays empty for a poll timeout, so that late
// duplicates would be seen too. It fails after a bounded time.
func collect(t *testing.T, h *Handle, done func([]tcpPkt) bool) []tcpPkt {
	t.Helper()
	var pkts []tcpPkt
	var f source.Frame
	limit := time.Now().Add(15 * time.Second)
	complete := false
	for time.Now().Before(limit) {
		err := h.Next(&f)
		if errors.Is(err, ErrTimeout) {
			if complete {
				return pkts
			}
			continue
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if f.Offset != -1 || f.LinkType != h.LinkType() || f.Timestamp <= 0 {
			t.Fatalf("frame metadata: offset %d link %d ts %d", f.Offset, f.LinkType, f.Timestamp)
		}
		p, err := decode(&f)
		if err != nil {
			t.Fatalf("captured frame does not decode as TCP: %v (% x)", err, f.Data)
		}
		pkts = append(pkts, p)
		complete = complete || done(pkts)
	}
	t.Fatalf("capture incomplete after 15s: %d packets", len(pkts))
	return nil
}

// conversation sums what one connection did, as captured.
type conversation struct {
	bytesTo, bytesFrom    int // payload to / from the server
	syn, synack           int
	finTo, finFrom        int
	lastAckAfterFins      bool
	otherPort             int // packets not involving the server port
	duplicates, processed int
}

func summarize(pkts []tcpPkt, server netip.AddrPort) conversation {
	var c conversation
	seen := map[string]bool{}
	for _, p := range pkts {
		c.processed++
		if seen[string(p.network)] {
			c.duplicates++
		}
		seen[string(p.network)] = true
		toServer := p.dst == server
		if !toServer && p.src != server {
			c.otherPort++
			continue
		}
		switch {
		case p.flags&(flagSYN|flagACK) == flagSYN:
			c.syn++
		case p.flags&(flagSYN|flagACK) == flagSYN|flagACK:
			c.synack++
		}
		if p.flags&flagFIN != 0 {
			if toServer {
				c.finTo++
			} else {
				c.finFrom++
			}
		}
		c.lastAckAfterFins = c.finTo > 0 && c.finFrom > 0 && p.flags&flagFIN == 0
		if toServer {
			c.bytesTo += p.payload
		} else {
			c.bytesFrom += p.payload
		}
	}
	return c
}

// TestLoopbackEachPacketOnce captures real TCP connections on lo (IPv4 and
// IPv6, on the interface itself and on "any") and checks that every packet
// shows up exactly once, the port filter keeps other connections out, and
// the statistics agree with what Next delivered.
func TestLoopbackEachPacketOnce(t *testing.T) {
	for _, tc := range []struct{ name, iface, addr string }{
		{"lo/ipv4", "lo", "127.0.0.1:0"},
		{"lo/ipv6", "lo", "[::1]:0"},
		{"any/ipv4", "any", "127.0.0.1:0"},
		{"any/ipv6", "any", "[::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNetns(t)
			ln := listen(t, ns, tc.addr)
			other := listen(t, ns, tc.addr)
			h := openIn(t, ns, Config{
				Interface:   tc.iface,
				Filter:      bpfilter.Options{Ports: []uint16{port(ln)}},
				PollTimeout: 300 * time.Millisecond,
			})
			wantLink := source.LinkEthernet
			if tc.iface == "any" {
				wantLink = source.LinkSLL2
			}
			if h.LinkType() != wantLink {
				t.Fatalf("LinkType = %d, want %d", h.LinkType(), wantLink)
			}

			req := bytes.Repeat([]byte("q"), 3000)
			resp := bytes.Repeat([]byte("r"), 70000) // several segments
			exchange(t, ns, other, []byte("noise"), []byte("noise"))
			exchange(t, ns, ln, req, resp)
			exchange(t, ns, other, []byte("more noise"), []byte("x"))

			server := netip.MustParseAddrPort(ln.Addr().String())
			pkts := collect(t, h, func(p []tcpPkt) bool {
				c := summarize(p, server)
				return c.bytesTo >= len(req) && c.bytesFrom >= len(resp) && c.lastAckAfterFins
			})
			c := summarize(pkts, server)
			if c.duplicates != 0 {
				t.Errorf("%d of %d packets captured twice", c.duplicates, c.processed)
			}
			if c.otherPort != 0 {
				t.Errorf("%d packets of another port passed the port filter", c.otherPort)
			}
			if c.syn != 1 || c.synack != 1 || c.finTo != 1 || c.finFrom != 1 {
				t.Errorf("handshake/teardown seen syn=%d synack=%d fin=%d/%d, want 1 each", c.syn, c.synack, c.finTo, c.finFrom)
			}
			if c.bytesTo != len(req) || c.bytesFrom != len(resp) {
				t.Errorf("payload captured %d/%d bytes, sent %d/%d", c.bytesTo, c.bytesFrom, len(req), len(resp))
			}
			if tc.iface == "any" {
				for _, p := range pkts {
					// SLL2: hardware type loopback, and never an outgoing copy.
					if hatype := binary.BigEndian.Uint16(p.sll2[8:]); hatype != arphrdLoopback {
						t.Fatalf("SLL2 hardware type %d, want %d", hatype, arphrdLoopback)
					}
					if p.sll2[10] == pktTypeOutgoing {
						t.Fatalf("outgoing copy captured on lo: % x", p.sll2)
					}
					if idx := binary.BigEndian.Uint32(p.sll2[4:]); idx != uint32(loIndex(t, ns)) {
						t.Fatalf("SLL2 interface index %d, want lo's %d", idx, loIndex(t, ns))
					}
				}
			}
			st, err := h.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.Delivered != uint64(len(pkts)) || st.Packets != st.Delivered || st.Drops != 0 {
				t.Errorf("Stats = %+v after delivering %d packets, want Packets = Delivered and no drops", st, len(pkts))
			}
		})
	}
}

func loIndex(t *testing.T, ns *netns) int {
	var ifi *net.Interface
	var err error
	ns.Do(func() { ifi, err = net.InterfaceByName("lo") })
	if err != nil {
		t.Fatal(err)
	}
	return ifi.Index
}

// TestSnapLen checks that large packets are cut to the snap length and keep
// their original length.
func TestSnapLen(t *testing.T) {
	for _, iface := range []string{"lo", "any"} {
		t.Run(iface, func(t *testing.T) {
			ns := newNetns(t)
			ln := listen(t, ns, "127.0.0.1:0")
			const snap = 100
			h := openIn(t, ns, Config{Interface: iface, SnapLen: snap, Filter: bpfilter.Options{Ports: []uint16{port(ln)}}})
			req := bytes.Repeat([]byte("s"), 5000)
			exchange(t, ns, ln, req, []byte("ok"))
			server := netip.MustParseAddrPort(ln.Addr().String())
			var truncated int
			var f source.Frame
			for got := 0; got < len(req); {
				if err := h.Next(&f); err != nil {
					t.Fatalf("Next after %d of %d payload bytes: %v", got, len(req), err)
				}
				if len(f.Data) > snap || f.OrigLen < len(f.Data) {
					t.Fatalf("len(Data) = %d, OrigLen = %d, snaplen %d", len(f.Data), f.OrigLen, snap)
				}
				if f.OrigLen > len(f.Data) {
					truncated++
					if len(f.Data) != snap {
						t.Fatalf("truncated frame has %d bytes, want snaplen %d", len(f.Data), snap)
					}
				}
				p, err := decode(&f)
				if err != nil {
					t.Fatal(err)
				}
				if p.dst == server {
					got += p.payload
				}
			}
			if truncated == 0 {
				t.Fatal("no frame was truncated")
			}
		})
	}
}

// TestCloseWakesNext checks that Close interrupts a Next waiting without a
// timeout, and that the handle is unusable (but safe) afterwards.
func TestCloseWakesNext(t *testing.T) {
	ns := newNetns(t)
	for i := 0; i < 20; i++ {
		h := openIn(t, ns, Config{Interface: "lo", PollTimeout: -1})
		errc := make(chan error, 1)
		started := make(chan struct{})
		go func() {
			var f source.Frame
			close(started)
			errc <- h.Next(&f)
		}()
		<-started
		if err := h.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Next after Close = %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Next still blocked 5s after Close")
		}
		var f source.Frame
		if err := h.Next(&f); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Next on closed handle = %v", err)
		}
		if _, err := h.Stats(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Stats on closed handle = %v", err)
		}
		if err := h.Close(); err != nil {
			t.Fatalf("second Close = %v", err)
		}
	}
}

// TestPollTimeout checks that an idle capture reports ErrTimeout.
func TestPollTimeout(t *testing.T) {
	ns := newNetns(t)
	h := openIn(t, ns, Config{Interface: "lo", PollTimeout: 20 * time.Millisecond})
	var f source.Frame
	start := time.Now()
	if err := h.Next(&f); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Next on idle lo = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("Next returned after %v, before the poll timeout", d)
	}
}

// TestOpenErrors checks errors for bad interfaces and filters.
func TestOpenErrors(t *testing.T) {
	ns := newNetns(t)
	var err error
	ns.Do(func() { _, err = Open(Config{Interface: "nosuchif0"}) })
	if errors.Is(err, ErrNotPermitted) {
		t.Skip(err)
	}
	if err == nil {
		t.Fatal("Open of a missing interface succeeded")
	}
	ns.Do(func() {
		_, err = Open(Config{Interface: "lo", Filter: bpfilter.Options{Ports: make([]uint16, bpfilter.MaxPorts+1)}})
	})
	if err == nil {
		t.Fatal("Open with too many ports succeeded")
	}
}

// BenchmarkCaptureLoopback measures capture throughput on lo: a client
// streams small TCP segments (TCP_NODELAY) to a server in a private network
// namespace while Next reads b.N frames. The traffic stops when the capture
// is done or after a fixed bound.
func BenchmarkCaptureLoopback(b *testing.B) {
	ns := newNetns(b)
	var ln net.Listener
	var err error
	ns.Do(func() { ln, err = net.Listen("tcp", "127.0.0.1:0") })
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	h := openIn(b, ns, Config{Interface: "lo", SnapLen: 128, BufferMB: 32, Filter: bpfilter.Options{Ports: []uint16{port(ln)}}})

	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c)
	}()
	var c net.Conn
	ns.Do(func() { c, err = net.Dial("tcp", ln.Addr().String()) })
	if err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	sent := make(chan int, 1)
	go func() {
		defer c.Close()
		msg := make([]byte, 64)
		deadline := time.Now().Add(60 * time.Second)
		n := 0
		for ; n < 50_000_000 && time.Now().Before(deadline); n++ {
			select {
			case <-stop:
				sent <- n
				return
			default:
			}
			if _, err := c.Write(msg); err != nil {
				break
			}
		}
		sent <- n
	}()

	// The reader stays on one thread so that thread's CPU time is the
	// capture cost (ring reading plus poll), apart from the traffic.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var f source.Frame
	var cpu0, cpu1 unix.Timespec
	b.ResetTimer()
	start := time.Now()
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &cpu0)
	for i := 0; i < b.N; i++ {
		if err := h.Next(&f); err != nil {
			b.Fatalf("after %d frames: %v", i, err)
		}
	}
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &cpu1)
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(cpu1.Nano()-cpu0.Nano())/float64(b.N), "capture-cpu-ns/pkt")
	close(stop)
	<-sent
	st, _ := h.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "pkts/s")
	b.ReportMetric(float64(st.Drops), "drops")
}
