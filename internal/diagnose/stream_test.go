package diagnose_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/engine"
	. "github.com/rstscope/rstscope/internal/testcap"
)

const sec = int64(1e9)

// streamer drives a Diagnoser from a tracker the way the engine does (Conn
// when a connection finishes, Advance as capture time passes) and collects
// what is handed over, checking that nothing is handed over twice.
type streamer struct {
	t     *testing.T
	d     *diagnose.Diagnoser
	tr    *conntrack.Tracker
	p     decode.Parsed
	num   uint64
	now   int64
	got   []*diagnose.Incident
	at    []int64 // capture clock when each was handed over
	seen  map[*diagnose.Incident]bool
	order []string // finished connections, "client>server"
	sink  func(*diagnose.Incident)
}

func newStreamer(t *testing.T, opt diagnose.Options, track conntrack.Config) *streamer {
	s := &streamer{t: t, d: diagnose.New(opt), seen: map[*diagnose.Incident]bool{}}
	s.tr = conntrack.New(track, func(c *conntrack.Conn) {
		if s.sink == nil {
			s.order = append(s.order, c.Client().String()+">"+c.Server().String())
		}
		n := s.d.Pending()
		s.d.Conn(c, s.now)
		s.collect(s.d.Since(n))
	})
	return s
}

func (s *streamer) collect(incs []*diagnose.Incident) {
	for _, inc := range incs {
		if s.sink != nil {
			s.sink(inc) // nothing retained here
			continue
		}
		if s.seen[inc] {
			s.t.Fatalf("incident handed over twice: %s", inc.Summary)
		}
		s.seen[inc] = true
		s.got = append(s.got, inc)
		s.at = append(s.at, s.now)
	}
}

// feed processes the capture's frames in order.
func (s *streamer) feed(c *Capture) {
	for i := range c.Frames {
		f := &c.Frames[i]
		s.num++
		s.now = max(s.now, f.Timestamp)
		s.p.Decode(f.LinkType, f.Data)
		if s.p.Status != decode.OK {
			s.t.Fatalf("frame %d: %v", s.num, s.p.Status)
		}
		s.tr.Add(&s.p, s.num, f.Timestamp)
		n := s.d.Pending()
		if s.d.Advance(s.now) {
			s.collect(s.d.Since(n))
		}
	}
}

// advance moves the clock to ts without a packet.
func (s *streamer) advance(ts int64) {
	s.now = max(s.now, ts)
	s.tr.Advance(ts)
	n := s.d.Pending()
	if s.d.Advance(s.now) {
		s.collect(s.d.Since(n))
	}
}

func (s *streamer) finish() {
	s.tr.Flush()
	s.collect(s.d.Finish())
}

func (s *streamer) find(c cause.ID) (*diagnose.Incident, int64) {
	for i, inc := range s.got {
		if inc.Cause == c {
			return inc, s.at[i]
		}
	}
	return nil, 0
}

const (
	client   = "10.0.0.1:40000"
	proxy    = "10.0.0.5:80"
	proxyOut = "10.0.0.5:50000"
	upstream = "10.0.0.10:8080"
)

var bad = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"

// proxyClient adds a client's connection to the proxy: a request at
// at+0.01, a 502 at at+0.012, then the client's FIN at closeAt (seconds).
func proxyClient(c *Capture, cl string, at, closeAt float64) {
	c.Handshake(at, cl, proxy)
	c.Add(Seg{At: at + 0.01, From: cl, To: proxy, Flags: PA, Seq: 1001, Ack: 5001, Win: 512, Payload: req, TS: true})
	c.Add(Seg{At: at + 0.012, From: proxy, To: cl, Flags: PA, Seq: 5001, Ack: 1001 + rq, Win: 512, Payload: bad, TS: true})
	b := uint32(len(bad))
	c.Add(Seg{At: closeAt, From: cl, To: proxy, Flags: FA, Seq: 1001 + rq, Ack: 5001 + b, Win: 512, TS: true})
	c.Add(Seg{At: closeAt + 0.0005, From: proxy, To: cl, Flags: FA, Seq: 5001 + b, Ack: 1002 + rq, Win: 512, TS: true})
	c.Add(Seg{At: closeAt + 0.001, From: cl, To: proxy, Flags: A, Seq: 1002 + rq, Ack: 5002 + b, Win: 512, TS: true})
}

// refusedAt adds a connection attempt from the proxy refused at at+0.0111.
func refusedAt(c *Capture, from, to string, at float64) {
	c.Add(Seg{At: at + 0.011, From: from, To: to, Flags: S, Seq: 7000, Win: 65535})
	c.Add(Seg{At: at + 0.0111, From: to, To: from, Flags: RA, Ack: 7001})
}

// An incident is handed over once, by the call that found it, and the
// diagnoser keeps nothing of it afterwards.
func TestStreamHandsOverOnce(t *testing.T) {
	s := newStreamer(t, diagnose.Options{Stream: true}, conntrack.Config{Linger: sec})
	var c Capture
	c.Add(Seg{At: 0, From: cli, To: srv, Flags: S, Seq: 1000, Win: 65535})
	c.Add(Seg{At: 0.0001, From: srv, To: cli, Flags: RA, Seq: 0, Ack: 1001})
	s.feed(&c)
	if len(s.got) != 0 {
		t.Fatalf("handed over before the connection finished: %v", s.got)
	}
	s.advance(T0 + 2*sec) // past the linger: the connection finishes
	if len(s.got) != 1 || s.got[0].Cause != cause.Refused {
		t.Fatalf("got %d incidents, want the refused one", len(s.got))
	}
	// The tracker's Advance finished the connection (Conn made the
	// incident ready, and it was handed over); the diagnoser's Advance
	// that followed forgot it.
	if n, f, p := s.d.Held(); n != 0 || p != 0 || f != 1 {
		t.Errorf("after the next call: %d incidents, %d failures, %d pending held; want 0, 1 (the upstream candidate), 0", n, f, p)
	}
	if s.d.Pending() != 1 || s.d.Since(0) != nil {
		t.Errorf("Pending %d (want 1, it counts all ever made ready), Since(0) %v (want nothing)", s.d.Pending(), s.d.Since(0))
	}
	s.advance(T0 + 200*sec) // beyond the window: the failure goes too
	s.finish()
	if n, f, p := s.d.Held(); n != 0 || f != 0 || p != 0 {
		t.Errorf("at the end: %d incidents, %d failures, %d pending held", n, f, p)
	}
	if len(s.got) != 1 || s.d.Counts()[cause.Refused] != 1 {
		t.Errorf("handed over %d incidents, counts %v", len(s.got), s.d.Counts())
	}
}

// upstreamFinishingLate is a 502 whose upstream connection (kept alive by
// the proxy, reset by the upstream before the 502) finishes after the
// client's connection: the proxy sent one more packet on it 0.8 s later, so
// the tracker lingers on it longer.
func upstreamFinishingLate() *Capture {
	var c Capture
	c.Handshake(0, proxyOut, upstream)
	c.Handshake(0.003, client, proxy)
	c.Add(Seg{At: 0.01, From: client, To: proxy, Flags: PA, Seq: 1001, Ack: 5001, Win: 512, Payload: req, TS: true})
	c.Add(Seg{At: 0.0105, From: proxyOut, To: upstream, Flags: PA, Seq: 1001, Ack: 5001, Win: 512, Payload: req, TS: true})
	c.Add(Seg{At: 0.011, From: upstream, To: proxyOut, Flags: RA, Seq: 5001, Ack: 1001 + rq, Win: 512, TS: true})
	b := uint32(len(bad))
	c.Add(Seg{At: 0.012, From: proxy, To: client, Flags: PA, Seq: 5001, Ack: 1001 + rq, Win: 512, Payload: bad, TS: true})
	c.Add(Seg{At: 0.013, From: proxy, To: client, Flags: FA, Seq: 5001 + b, Ack: 1001 + rq, Win: 512, TS: true})
	c.Add(Seg{At: 0.0135, From: client, To: proxy, Flags: FA, Seq: 1001 + rq, Ack: 5002 + b, Win: 512, TS: true})
	c.Add(Seg{At: 0.014, From: proxy, To: client, Flags: A, Seq: 5002 + b, Ack: 1002 + rq, Win: 512, TS: true})
	c.Add(Seg{At: 0.8, From: proxyOut, To: upstream, Flags: A, Seq: 1001 + rq, Ack: 5001, Win: 512, TS: true})
	return &c
}

// A 502 is tied to its upstream although the upstream connection finishes
// after the client's: it waits for Settle (capture time) after its response.
func TestStream502UpstreamFinishesLater(t *testing.T) {
	const settle = 3 * sec
	run := func(settle int64) *streamer {
		s := newStreamer(t, diagnose.Options{Stream: true, Settle: settle, Window: 30 * sec}, conntrack.Config{Linger: sec})
		s.feed(upstreamFinishingLate())
		for ts := T0; ts <= T0+5*sec; ts += sec / 10 {
			s.advance(ts)
		}
		return s
	}
	s := run(settle)
	want := []string{client + ">" + proxy, proxyOut + ">" + upstream}
	if strings.Join(s.order, " ") != strings.Join(want, " ") {
		t.Fatalf("connections finished in the order %v, want the client's first %v", s.order, want)
	}
	he, at := s.find(cause.UpstreamFailure)
	if he == nil {
		t.Fatalf("no proxy error handed over by %v of capture time (%d incidents)", 5*sec, len(s.got))
	}
	if respTS := T0 + 12e6; at < respTS+settle || at > respTS+settle+sec/10 {
		t.Errorf("proxy error handed over at +%.3fs, want at its response + settle (%.3fs)", float64(at-T0)/1e9, float64(12e6+settle)/1e9)
	}
	rst, _ := s.find(cause.NoConnection)
	if rst == nil {
		for _, inc := range s.got {
			if inc.Kind == diagnose.KindReset && inc.Conn.Server == upstream {
				rst = inc
			}
		}
	}
	if rst == nil {
		t.Fatalf("the upstream's reset was not reported: %d incidents", len(s.got))
	}
	if len(he.RelatedConns) != 1 || he.RelatedConns[0] != rst.Conn || he.Facts["upstream_failure"] != "was reset by the upstream" {
		t.Errorf("502 related %v, facts %v; want the upstream connection %s", he.Related, he.Facts, rst.Conn.UID)
	}
	if _, ok := he.Facts["request_time_ns"]; ok {
		t.Error("request_time_ns left in the facts")
	}
	s.finish()
	if n := s.d.Counts()[cause.UpstreamFailure]; n != 1 {
		t.Errorf("%d proxy errors counted, want 1", n)
	}

	// The same with a settle delay shorter than the tracker's linger: the
	// 502 is released before its upstream connection finished, untied.
	// This is what Settle is for.
	s = run(sec / 2)
	he, _ = s.find(cause.UpstreamFailure)
	if he == nil || he.Facts["upstream"] != "not captured" {
		t.Errorf("with a 0.5 s settle the 502 should miss its upstream: %v", he)
	}
}

// Upstream failures are dropped once their failing packet is older than
// Window: a 502 on a client connection that closes later than that is
// reported without its upstream; with a wider window it is tied.
func TestStreamWindowDropsOldFailures(t *testing.T) {
	for _, tc := range []struct {
		window int64
		tied   bool
	}{{10 * sec, false}, {60 * sec, true}} {
		t.Run(fmt.Sprint(tc.window/sec, "s"), func(t *testing.T) {
			s := newStreamer(t, diagnose.Options{Stream: true, Settle: 3 * sec, Window: tc.window}, conntrack.Config{Linger: sec})
			var c Capture
			// The client keeps its connection for 20 s after the 502.
			c.Handshake(0, client, proxy)
			c.Add(Seg{At: 0.01, From: client, To: proxy, Flags: PA, Seq: 1001, Ack: 5001, Win: 512, Payload: req, TS: true})
			refusedAt(&c, proxyOut, upstream, 0)
			c.Add(Seg{At: 0.012, From: proxy, To: client, Flags: PA, Seq: 5001, Ack: 1001 + rq, Win: 512, Payload: bad, TS: true})
			s.feed(&c)
			s.advance(T0 + 5*sec)
			if _, f, p := s.d.Held(); f != 1 || p != 0 {
				t.Fatalf("at +5s: %d failures, %d pending held; want the refused upstream and nothing pending (the 502 is still on a live connection)", f, p)
			}
			s.advance(T0 + 12*sec)
			_, f, _ := s.d.Held()
			if inWindow := tc.window > 12*sec; (f == 1) != inWindow {
				t.Fatalf("at +12s with a %v window: %d failures held", tc.window/sec, f)
			}
			var c2 Capture
			b := uint32(len(bad))
			c2.Add(Seg{At: 20, From: client, To: proxy, Flags: FA, Seq: 1001 + rq, Ack: 5001 + b, Win: 512, TS: true})
			c2.Add(Seg{At: 20.001, From: proxy, To: client, Flags: FA, Seq: 5001 + b, Ack: 1002 + rq, Win: 512, TS: true})
			s.feed(&c2)
			s.advance(T0 + 22*sec) // the client's connection finishes; its 502 has settled long ago
			he, at := s.find(cause.UpstreamFailure)
			if he == nil || at > T0+22*sec {
				t.Fatalf("proxy error not handed over when its connection finished (%d incidents)", len(s.got))
			}
			if tied := he.Facts["upstream"] != "not captured"; tied != tc.tied {
				t.Errorf("window %v: tied %v, want %v (%s)", tc.window/sec, tied, tc.tied, he.Summary)
			}
		})
	}
}

// 100k connections through a streaming diagnoser (every tenth a 502 with a
// refused upstream, more refused connections, the rest quiet): what it holds
// stays within its bounds (200 failures a second for a 10 s window: the
// count bound of 1000 is reached), every 502 is tied to its own upstream
// (the 502s are 20 ms apart, beyond the 10 ms slack after a response), and
// the heap does not grow with the number of connections.
func TestStreamBounded(t *testing.T) {
	const (
		conns       = 100000
		step        = 0.002 // s between connections: 200 s of capture
		maxFailures = 1000
	)
	opt := diagnose.Options{Stream: true, Settle: 3 * sec, Window: 10 * sec, MaxFailures: maxFailures}
	s := newStreamer(t, opt, conntrack.Config{Linger: sec})
	collected := 0
	tied, proxyErrors, refused := 0, 0, 0
	s.sink = func(inc *diagnose.Incident) {
		collected++
		switch inc.Cause {
		case cause.UpstreamFailure:
			proxyErrors++
			// Client i's 502 must be tied to the attempt from port 20000+i%40000.
			if len(inc.RelatedConns) == 1 && strings.HasSuffix(inc.Conn.Client, ":"+portOfClient(inc.RelatedConns[0].Client)) {
				tied++
			}
		case cause.Refused:
			refused++
		}
	}
	var heapAt20k uint64
	maxHeld, maxPending, maxFail := 0, 0, 0
	var c Capture
	for i := 0; i < conns; i++ {
		at := float64(i) * step
		ip := fmt.Sprintf("10.%d.%d.%d", 1+i>>16, i>>8&255, i&255)
		port := 20000 + i%40000
		c.Frames = c.Frames[:0]
		switch {
		case i%10 == 0:
			// A client whose port encodes the upstream attempt's port.
			proxyClient(&c, fmt.Sprintf("%s:%d", ip, port), at, at+0.02)
			refusedAt(&c, fmt.Sprintf("10.0.0.5:%d", port), upstream, at)
		case i%3 == 0:
			c.Add(Seg{At: at, From: ip + ":1234", To: srv, Flags: S, Seq: 1000, Win: 65535})
			c.Add(Seg{At: at + 0.0001, From: srv, To: ip + ":1234", Flags: RA, Ack: 1001})
		default:
			exchangeClose(&c, ip+":1234", at)
		}
		s.feed(&c)
		n, f, p := s.d.Held()
		maxHeld, maxPending, maxFail = max(maxHeld, n), max(maxPending, p), max(maxFail, f)
		if f > maxFailures {
			t.Fatalf("conn %d: %d failures held, over %d", i, f, maxFailures)
		}
		if i == 20000 {
			heapAt20k = heapInuse()
		}
	}
	heapEnd := heapInuse()
	s.finish()
	_, f, p := s.d.Held()
	t.Logf("%d connections, %d incidents handed over (%d refused, %d proxy errors, %d tied); held at most %d incidents, %d failures, %d proxy errors waiting; heap in use %.1f MiB at 20k connections, %.1f MiB at 100k",
		conns, collected, refused, proxyErrors, tied, maxHeld, maxFail, maxPending, float64(heapAt20k)/(1<<20), float64(heapEnd)/(1<<20))
	if want := conns / 10; proxyErrors != want || tied != want {
		t.Errorf("%d proxy errors, %d tied to their own upstream; want %d", proxyErrors, tied, want)
	}
	if f != 0 || p != 0 {
		t.Errorf("after Finish: %d failures, %d proxy errors held", f, p)
	}
	// 50 502s per second, each waiting 3 s after its response.
	if maxPending > 300 {
		t.Errorf("up to %d proxy errors waiting; expected about 50/s for 3 s", maxPending)
	}
	if maxFail != maxFailures {
		t.Errorf("at most %d failures held; the count bound %d should have been reached", maxFail, maxFailures)
	}
	if maxHeld > 4 {
		t.Errorf("up to %d incidents held between calls; want only the latest call's", maxHeld)
	}
	if heapEnd > heapAt20k+8<<20 {
		t.Errorf("heap grew from %.1f to %.1f MiB between 20k and 100k connections", float64(heapAt20k)/(1<<20), float64(heapEnd)/(1<<20))
	}
}

func portOfClient(addr string) string {
	p := addr[strings.LastIndexByte(addr, ':')+1:]
	return p
}

// exchangeClose adds a quiet connection: handshake, request, response,
// FINs.
func exchangeClose(c *Capture, cl string, at float64) {
	c.Handshake(at, cl, srv)
	c.Add(Seg{At: at + 0.003, From: cl, To: srv, Flags: FA, Seq: 1001, Ack: 5001, Win: 512})
	c.Add(Seg{At: at + 0.004, From: srv, To: cl, Flags: FA, Seq: 5001, Ack: 1002, Win: 512})
	c.Add(Seg{At: at + 0.005, From: cl, To: srv, Flags: A, Seq: 1002, Ack: 5002, Win: 512})
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// The engine in streaming mode hands proxy errors to OnIncident as its
// clock passes their settle delay (Pipeline.Tick), tied to their upstream,
// and keeps none: Close hands over what is left.
func TestStreamPipeline(t *testing.T) {
	var got []*diagnose.Incident
	var handedAt []int64
	var now int64
	pl := engine.NewPipeline(engine.Options{
		Track:      conntrack.Config{Linger: sec},
		Diagnose:   diagnose.Options{Stream: true, Settle: 3 * sec},
		OnIncident: func(inc *diagnose.Incident) { got = append(got, inc); handedAt = append(handedAt, now) },
	})
	feed := func(c *Capture, num uint64) {
		for i := range c.Frames {
			now = max(now, c.Frames[i].Timestamp)
			pl.Feed(&c.Frames[i], num+uint64(i))
		}
	}
	tick := func(to int64) {
		for ; now < to; now += sec / 10 {
			pl.Tick(now)
		}
	}
	c := upstreamFinishingLate()
	feed(c, 1)
	tick(T0 + 5*sec)
	if len(got) != 2 || got[1].Kind != diagnose.KindHTTPError {
		t.Fatalf("by +5s: %d incidents handed over, want the upstream's reset and the 502", len(got))
	}
	if len(got[1].Related) != 1 || got[1].Related[0] != got[0].Conn.UID || got[0].Conn.Server != upstream {
		t.Errorf("the 502 is not tied to the upstream's reset: %s", got[1].Summary)
	}
	if at := handedAt[1]; at < T0+3*sec+12e6 || at > T0+3*sec+12e6+sec/5 {
		t.Errorf("the 502 was handed over at +%.3fs, want its response (+0.012s) + the 3s settle", float64(at-T0)/1e9)
	}
	var c2 Capture
	proxyClient(&c2, "10.0.0.2:40000", 10, 10.02) // a second 502, left pending at Close
	feed(&c2, uint64(len(c.Frames)+1))
	tick(T0 + 12*sec) // the second client's connection finishes; its 502 waits
	if len(got) != 2 {
		t.Fatalf("a 502 handed over before it settled: %d incidents", len(got))
	}
	incs, st := pl.Close()
	if len(got) != 3 || len(incs) != 1 || incs[0] != got[2] || got[2].Facts["upstream"] != "not captured" {
		t.Errorf("Close: %d handed over in all, %d returned; want the second 502, untied", len(got), len(incs))
	}
	if st.Incidents[cause.UpstreamFailure] != 2 || st.NotDetailed != 0 {
		t.Errorf("stats: %v, %d not detailed", st.Incidents, st.NotDetailed)
	}
	if n, f, p := pl.Diagnoser().Held(); n != 1 || p != 0 || f != 0 {
		t.Errorf("after Close: %d incidents (Close's own), %d failures, %d pending held; want 1, 0, 0", n, f, p)
	}
}
