package conntrack

import (
	"github.com/rstscope/rstscope/internal/decode"
	"net/netip"
	"testing"
)

// wave plays n connections side by side, of lengths that use every
// capacity class of packet records and HTTP messages, then lets them
// linger out.
func wave(h *harness, ts *int64, n, round int) {
	vs := make([]*conv, n)
	for i := range vs {
		a := netip.AddrPortFrom(cli.Addr(), uint16(10000+i))
		vs[i] = h.conv(a, srv, uint32(1000*i), uint32(5000*i), *ts)
		vs[i].handshake()
	}
	for i, v := range vs {
		// 0, 1, 5 or 20 requests: 3 to 45 packets, 0 to 40 messages.
		reqs := []int{0, 1, 5, 20}[(i+round)%4]
		for r := 0; r < reqs; r++ {
			v.c(PSH|ACK, "GET / HTTP/1.1\r\n\r\n")
			v.s(PSH|ACK, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
		v.c(FIN|ACK, "")
		v.s(FIN|ACK, "")
		v.c(ACK, "")
		*ts = max(*ts, v.ts)
	}
	*ts += 10 * sec // beyond the linger: the next wave's first packet finishes them
}

// In a steady state the tracker reuses connections and their record
// slices: waves of connections allocate (almost) nothing.
func TestStorageSteadyStateAllocatesNothing(t *testing.T) {
	// Four waves, recorded, so that they can be replayed later in time
	// without the harness's own allocations.
	var ps []decode.Parsed
	var tss []int64
	rh := newHarness(t, Config{})
	rh.tap = func(p decode.Parsed, at int64) { ps, tss = append(ps, p), append(tss, at) }
	ts := sec
	for round := 0; round < 4; round++ {
		wave(rh, &ts, 64, round)
	}
	span := ts - sec
	tr := New(Config{}, func(*Conn) {})
	var num uint64
	var shift int64
	play := func() {
		for i := range ps {
			num++
			tr.Add(&ps[i], num, tss[i]+shift)
		}
		shift += span
	}
	for i := 0; i < 3; i++ { // warm up
		play()
	}
	allocs := testing.AllocsPerRun(10, play)
	if perConn := allocs / 256; perConn > 0.05 {
		t.Errorf("%.2f allocations per connection in a steady state, want about 0", perConn)
	}
}

// A recycled connection starts empty: no packet records or HTTP messages of
// the connection whose slices it reuses.
func TestStorageRecycledConnStartsEmpty(t *testing.T) {
	h := newHarness(t, Config{})
	ts := sec
	for round := 0; round < 4; round++ {
		wave(h, &ts, 8, round)
	}
	got := h.flush()
	if len(got) != 32 {
		t.Fatalf("%d connections, want 32", len(got))
	}
	for _, r := range got {
		want := min(int(r.TotalPkts), headPkts+tailPkts)
		if len(r.Pkts) != want {
			t.Errorf("conn %d: %d packet records for %d packets, want %d", r.ID, len(r.Pkts), r.TotalPkts, want)
		}
		for _, p := range r.Pkts {
			if p.Num < r.ID {
				t.Errorf("conn %d holds packet %d, from before it started", r.ID, p.Num)
			}
		}
		if len(r.HTTP) != min(r.HTTPTotal, headHTTP+tailHTTP) {
			t.Errorf("conn %d: %d HTTP messages kept of %d", r.ID, len(r.HTTP), r.HTTPTotal)
		}
		for _, m := range r.HTTP {
			if m.Pkt < r.ID {
				t.Errorf("conn %d holds an HTTP message of packet %d, from before it started", r.ID, m.Pkt)
			}
		}
	}
}
