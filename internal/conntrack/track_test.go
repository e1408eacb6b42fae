package conntrack

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
)

func TestSizes(t *testing.T) {
	tests := []struct {
		name           string
		cISN, sISN     uint32
		cData, sData   []int // payload lengths sent by each side
		wantC, wantS   uint64
		wantWrapsAtEnd bool
	}{
		{"plain", 1000, 2000, []int{100, 200}, []int{50}, 300, 50, false},
		{"zero ISN", 0, 0, []int{10}, []int{20}, 10, 20, false},
		{"ISN just below 2^32", 0xffffff00, 0xfffffff0, []int{200, 200, 200}, []int{100, 100}, 600, 200, true},
		{"ISN 2^32-1: SYN ends at 0", 0xffffffff, 0xffffffff, []int{200, 200}, []int{300}, 400, 300, true},
		{"ISN 2^32-2: data starts at 2^32-1", 0xfffffffe, 0xfffffffe, []int{1, 1, 1}, []int{2}, 3, 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			v := h.conv(cli, srv, tc.cISN, tc.sISN, sec)
			v.handshake()
			for _, n := range tc.cData {
				v.send(true, PSH|ACK, nil, n)
				v.s(ACK, "")
			}
			for _, n := range tc.sData {
				v.send(false, PSH|ACK, nil, n)
				v.c(ACK, "")
			}
			v.c(FIN|ACK, "")
			v.s(FIN|ACK, "")
			v.c(ACK, "")
			got := h.flush()
			if len(got) != 1 {
				t.Fatalf("%d conns", len(got))
			}
			if got[0].Size != [2]uint64{tc.wantC, tc.wantS} || got[0].State != "SF" {
				t.Errorf("sizes %v state %s, want [%d %d] SF", got[0].Size, got[0].State, tc.wantC, tc.wantS)
			}
		})
	}
}

func TestSizeMidstreamAtZero(t *testing.T) {
	// The first packet seen starts at sequence 0: the pretend ISN is 2^32-1.
	h := newHarness(t, Config{})
	v := h.conv(cli, srv, 0, 0, sec)
	v.send(true, PSH|ACK, nil, 500)
	v.s(ACK, "")
	v.send(true, PSH|ACK, nil, 500)
	got := h.flush()
	if got[0].Size[0] != 1000 {
		t.Errorf("size %d, want 1000", got[0].Size[0])
	}
}

func TestSizeOver4GiB(t *testing.T) {
	const seg = 64 << 10
	const total = 5<<30 + 12345
	h := newHarness(t, Config{})
	v := h.conv(cli, srv, 0xf0000000, 77, sec)
	v.step = 10_000
	v.handshake()
	sent := 0
	for sent < total {
		n := min(seg, total-sent)
		v.send(true, ACK, nil, n)
		sent += n
		if sent%(4*seg) == 0 {
			v.s(ACK, "")
		}
	}
	v.aSeq -= seg // one retransmission: counted in PayloadBytes, not in Size
	v.send(true, ACK, nil, seg)
	v.s(ACK, "")
	got := h.flush()
	if got[0].Size[0] != total {
		t.Errorf("size %d, want %d", got[0].Size[0], uint64(total))
	}
	if got[0].Ep[0].PayloadBytes != total+seg || got[0].Ep[0].Retrans != 1 {
		t.Errorf("payload bytes %d retrans %d", got[0].Ep[0].PayloadBytes, got[0].Ep[0].Retrans)
	}
}

func TestReusedAfterEnd(t *testing.T) {
	h := newHarness(t, Config{})
	v := h.conv(cli, srv, 100, 200, sec)
	v.handshake()
	v.c(FIN|ACK, "")
	v.s(FIN|ACK, "")
	v.c(ACK, "")
	v.aSeq += 1_000_000
	v.ts += sec // within linger
	v.handshake()
	got := h.flush()
	st := h.tr.Stats()
	if len(got) != 2 || st.Reused != 1 || st.Conns != 2 {
		t.Fatalf("%d conns, stats %+v", len(got), st)
	}
	if got[0].State != "SF" || got[1].State != "S1" || got[1].History != "ShA" || got[1].ID <= got[0].ID {
		t.Errorf("got %s %q / %s %q", got[0].State, got[0].History, got[1].State, got[1].History)
	}
}

// A retry after a reset reuses the 4-tuple (and, internally, the recycled
// connection). The new connection must not be finished by the linger of
// the old one, however long it idles.
func TestRetryAfterResetIdles(t *testing.T) {
	h := newHarness(t, Config{})
	v := h.conv(cli, srv, 100, 200, sec)
	v.c(SYN, "")
	v.s(RST|ACK, "")
	v.aSeq += 1_000_000
	v.ts += 500 * ms
	v.handshake()
	v.c(PSH|ACK, "hello")
	v.s(ACK, "")
	v.ts += 20 * sec // idle far beyond the linger
	v.c(PSH|ACK, "again")
	v.s(PSH|ACK, "reply")
	v.c(FIN|ACK, "")
	v.s(FIN|ACK, "")
	v.c(ACK, "")
	got := h.flush()
	var s []string
	for _, r := range got {
		s = append(s, r.State+" "+r.History)
	}
	if strings.Join(s, ", ") != "REJ Sr, SF ShADadFf" {
		t.Errorf("got %q, want REJ Sr, SF ShADadFf", s)
	}
}

func TestLinger(t *testing.T) {
	other := netip.MustParseAddrPort("10.0.0.3:40001")
	t.Run("late ACK joins", func(t *testing.T) {
		h := newHarness(t, Config{Linger: 5 * sec})
		v := h.conv(cli, srv, 1, 2, sec)
		v.handshake()
		v.c(FIN|ACK, "")
		v.s(FIN|ACK, "")
		end := v.ts
		v.ts = end + 3*sec
		v.c(ACK, "") // the final ACK, late but within the linger
		if h.tr.Stats().Conns != 1 || len(h.done) != 0 {
			t.Fatalf("late ACK: %+v, %d done", h.tr.Stats(), len(h.done))
		}
		// Unrelated traffic after the linger finishes it.
		o := h.conv(other, srv, 9, 9, end+3*sec+5*sec+1500*ms)
		o.c(SYN, "")
		if len(h.done) != 1 {
			t.Fatalf("%d finished after the linger", len(h.done))
		}
		if r := h.done[0]; r.State != "SF" || r.TotalPkts != 6 || !r.Ended {
			t.Errorf("%s %d pkts ended %v", r.State, r.TotalPkts, r.Ended)
		}
		// Not before: a second connection ending now stays.
		if h.tr.Stats().Live != 1 {
			t.Errorf("live %d", h.tr.Stats().Live)
		}
	})
	t.Run("ACK after the linger starts anew", func(t *testing.T) {
		h := newHarness(t, Config{Linger: 5 * sec})
		v := h.conv(cli, srv, 1, 2, sec)
		v.handshake()
		v.c(RST|ACK, "")
		v.ts += 7 * sec
		v.s(ACK, "")
		got := h.flush()
		if len(got) != 2 || got[0].State != "RSTO" || got[1].State != "OTH" {
			t.Errorf("got %+v", got)
		}
	})
	t.Run("not finished while open", func(t *testing.T) {
		h := newHarness(t, Config{Linger: 5 * sec})
		v := h.conv(cli, srv, 1, 2, sec)
		v.handshake()
		v.ts += 60 * sec
		v.c(PSH|ACK, "x")
		if len(h.done) != 0 || h.tr.Stats().Conns != 1 {
			t.Errorf("open connection finished: %d done", len(h.done))
		}
	})
	t.Run("inactive", func(t *testing.T) {
		h := newHarness(t, Config{Inactive: 10 * sec})
		v := h.conv(cli, srv, 1, 2, sec)
		v.handshake()
		o := h.conv(other, srv, 9, 9, 5*sec)
		for o.ts <= 12*sec {
			o.c(PSH|ACK, "x") // midstream, keeps itself active
			o.ts += 2 * sec
		}
		if len(h.done) != 1 || h.done[0].Client != cli {
			t.Fatalf("inactive: %d done", len(h.done))
		}
	})
}

// A connection that keeps receiving packets after an RST stays ended but
// alive; it must not hold back the finishing of connections that ended
// after it.
func TestLingerNotBlockedByChattyResetConn(t *testing.T) {
	h := newHarness(t, Config{Linger: 5 * sec})
	a := h.conv(cli, srv, 1, 2, 0)
	a.handshake()
	a.c(RST|ACK, "")
	b := h.conv(netip.MustParseAddrPort("10.0.0.9:40009"), srv, 7, 8, 2*sec)
	b.c(SYN, "")
	b.s(RST|ACK, "")
	for ts := 3 * sec; ts <= 30*sec; ts += sec {
		a.ts = ts
		a.s(PSH|ACK, "still talking") // the server never saw the reset
	}
	if len(h.done) != 1 || h.done[0].State != "REJ" {
		t.Fatalf("after 30 s: %d finished, want the REJ one", len(h.done))
	}
}

func TestEvictOldest(t *testing.T) {
	h := newHarness(t, Config{MaxConns: 3})
	port := uint16(41000)
	syn := func(ts int64) *conv {
		port++
		v := h.conv(netip.AddrPortFrom(cli.Addr(), port), srv, 1, 2, ts)
		v.c(SYN, "")
		return v
	}
	syn(0)       // 1
	syn(1 * sec) // 2
	syn(2 * sec) // 3
	if len(h.done) != 0 {
		t.Fatal("evicted below the cap")
	}
	syn(3 * sec) // 4: evicts 1
	syn(4 * sec) // 5: evicts 2
	st := h.tr.Stats()
	if st.Evicted != 2 || st.Live != 3 || len(h.done) != 2 || h.done[0].ID != 1 || h.done[1].ID != 2 ||
		!h.done[0].Evicted || h.done[0].State != "S0" {
		t.Fatalf("stats %+v done %+v", st, h.done)
	}
	h.flush()
	for _, r := range h.done[2:] {
		if r.Evicted {
			t.Errorf("conn %d flushed but marked evicted", r.ID)
		}
	}
}

// Connections recycled after their linger must not take the place in the
// eviction order of the connection whose memory they reuse.
func TestEvictOrderWithRecycling(t *testing.T) {
	h := newHarness(t, Config{MaxConns: 3, Linger: 5 * sec})
	port := uint16(42000)
	next := func(ts int64) *conv {
		port++
		return h.conv(netip.AddrPortFrom(cli.Addr(), port), srv, 1, 2, ts)
	}
	// IDs are first packet numbers: X is #1, Y is #4.
	next(0).c(SYN, "")  // #1: X, open
	a := next(100 * ms) // #2, #3: A, rejected
	a.c(SYN, "")
	a.s(RST|ACK, "")
	next(200*ms).c(SYN, "")  // #4: Y, open
	next(7*sec).c(SYN, "")   // #5: D; A finished by the linger sweep
	next(7100*ms).c(SYN, "") // #6: E, evicts X
	next(7200*ms).c(SYN, "") // #7: F, evicts Y
	var evicted []uint64
	for _, r := range h.done {
		if r.Evicted {
			evicted = append(evicted, r.ID)
		}
	}
	if fmt.Sprint(evicted) != "[1 4]" {
		t.Errorf("evicted %v, want [1 4] (oldest first)", evicted)
	}
}

// Bounded memory: a SYN flood keeps the table at its cap and the heap small.
func TestSYNFloodBounded(t *testing.T) {
	const n, maxConns = 1_000_000, 10_000
	if testing.Short() {
		t.Skip("flood")
	}
	finished := 0
	tr := New(Config{MaxConns: maxConns}, func(c *Conn) { finished++ })
	p := pkt(cli, srv, SYN, 1, 0, nil, 0)
	var b4 [4]byte
	for i := range n {
		b4 = [4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}
		p.Src = netip.AddrFrom4(b4)
		p.SrcWords = words(p.Src)
		p.SrcPort = uint16(1024 + i%60000)
		p.Seq = uint32(i * 7919)
		tr.Add(&p, uint64(i+1), int64(i)*1000)
		if live := tr.Stats().Live; live > maxConns {
			t.Fatalf("live %d after %d SYNs", live, i+1)
		}
		if q := len(tr.order) - tr.head; q > 2*maxConns+8192 {
			t.Fatalf("creation queue holds %d entries", q)
		}
	}
	st := tr.Stats()
	if st.Evicted != n-maxConns || st.PeakLive != maxConns || st.Conns != n || finished != n-maxConns {
		t.Errorf("stats %+v finished %d", st, finished)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.HeapAlloc > 256<<20 {
		t.Errorf("heap %d MiB", ms.HeapAlloc>>20)
	}
	tr.Flush()
	if finished != n || tr.Stats().Live != 0 {
		t.Errorf("after flush: %d finished, live %d", finished, tr.Stats().Live)
	}
}

// Many short connections behind one long-lived one: the creation-order
// queue must not keep an entry for every connection ever seen.
func TestQueuesBoundedBehindLongLivedConn(t *testing.T) {
	h := newHarness(t, Config{Linger: sec})
	long := h.conv(cli, srv, 1, 2, 0)
	long.handshake()
	ts := sec
	for i := range 100_000 {
		v := h.conv(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 5000), srv, 1, 2, ts)
		v.step = 1000
		v.c(SYN, "")
		v.s(RST|ACK, "")
		ts += 100_000 // 10k connections a second
		if i%1000 == 0 {
			long.ts = ts
			long.c(PSH|ACK, "keepalive")
		}
	}
	st := h.tr.Stats()
	if st.Live > 30_000 { // ended within the last linger (1 s) plus one sweep period
		t.Errorf("live %d", st.Live)
	}
	if q := len(h.tr.order) - h.tr.head; q > 4*st.Live+8192 {
		t.Errorf("creation queue %d entries for %d live connections", q, st.Live)
	}
	if q := len(h.tr.ended) - h.tr.endedHead; q > 4*st.Live+8192 {
		t.Errorf("ended queue %d entries for %d live connections", q, st.Live)
	}
}

// A packet's direction comes from the key's orientation and follows every
// way the roles can be swapped: a SYN-ACK seen first, a midstream start
// from the server's port, and a socket connected to itself (one 4-tuple
// for both directions, where the orientation says nothing and every packet
// counts as the client's).
func TestDirectionFollowsFlips(t *testing.T) {
	self := netip.MustParseAddrPort("127.0.0.1:5000")
	for _, tc := range []struct {
		name             string
		a, b             netip.AddrPort // the conv's sides: c() sends a->b, s() b->a
		play             func(v *conv)
		client           netip.AddrPort
		cliPkts, srvPkts uint64
	}{
		{"syn-ack first", cli, srv, func(v *conv) {
			v.s(SYN|ACK, "")
			v.c(ACK, "")
			v.c(PSH|ACK, "GET / HTTP/1.1\r\n\r\n")
		}, cli, 2, 1},
		{"midstream from the server port", cli, srv, func(v *conv) {
			v.s(PSH|ACK, "HTTP/1.1 200 OK\r\n\r\n")
			v.c(ACK, "")
			v.c(ACK, "")
		}, cli, 2, 1},
		{"client first, no flip", cli, srv, func(v *conv) {
			v.handshake()
			v.s(PSH|ACK, "HTTP/1.1 200 OK\r\n\r\n")
		}, cli, 2, 2},
		{"self-connected", self, self, func(v *conv) {
			v.c(SYN, "")
			v.s(SYN|ACK, "")
			v.c(ACK, "")
		}, self, 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			tc.play(h.conv(tc.a, tc.b, 100, 200, sec))
			got := h.flush()
			if len(got) != 1 {
				t.Fatalf("%d connections", len(got))
			}
			c := got[0]
			if c.Client != tc.client || c.Ep[0].Pkts != tc.cliPkts || c.Ep[1].Pkts != tc.srvPkts {
				t.Errorf("client %v, packets %d/%d; want %v, %d/%d", c.Client, c.Ep[0].Pkts, c.Ep[1].Pkts,
					tc.client, tc.cliPkts, tc.srvPkts)
			}
			var fromClient uint64
			for _, p := range c.Pkts {
				if p.Dir == FromClient {
					fromClient++
				}
			}
			if fromClient != tc.cliPkts {
				t.Errorf("%d packet records from the client, want %d", fromClient, tc.cliPkts)
			}
		})
	}
}
