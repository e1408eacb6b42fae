package diagnose

import (
	"container/heap"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/conntrack"
)

// Incident kinds.
const (
	KindReset     = "reset"
	KindHTTPError = "http-error"
	KindNoAnswer  = "no-answer"
)

// Alternative is a second cause that also fits, with why it ranks lower.
type Alternative struct {
	Cause cause.ID `json:"cause"`
	Why   string   `json:"why"`
}

// Incident is one explained event: a reset, a proxy error, or a SYN nobody
// answered.
type Incident struct {
	Kind         string
	Cause        cause.ID
	Time         int64    // Unix ns of the deciding packet
	ResetBy      string   // "client", "server", "other" ("" when not a reset)
	Packets      []uint64 // the packet numbers that prove it, in order
	Summary      string   // one sentence
	Explanation  string
	Advice       []string
	Related      []string // uids of related connections
	Facts        map[string]any
	Alternatives []Alternative
	KernelReason string // the kernel's sk_rst_reason, when a packet comment carried it
	Conn         *Snapshot
	RelatedConns []*Snapshot
}

// Options tune the diagnosis.
type Options struct {
	// MaxIncidents bounds the incidents kept with full detail in batch
	// mode; the rest are only counted. Default 10000. Streaming mode keeps
	// none, so it has no use for it.
	MaxIncidents int

	// Stream selects streaming mode, for a diagnoser that runs for weeks
	// (rstscope watch). The default, batch mode, keeps every incident until
	// Finish, which ties proxy errors to upstream failures and returns them
	// all in time order (rstscope analyze).
	//
	// In streaming mode nothing is kept once it has been handed over:
	//
	//   - Each incident is made ready once, by the Conn, Advance or Finish
	//     call that produced it, and is returned by Since until the next
	//     of those calls, which forgets it (Pending counts every incident
	//     ever made ready, so the Pending/Since pattern of batch mode works
	//     unchanged: take n := Pending(), make the call, hand over
	//     Since(n)).
	//   - Connections whose server side failed (the upstream candidates of
	//     proxy errors) are kept while their failing packet is less than
	//     Window older than the capture clock, and at most MaxFailures of
	//     them (the oldest go first).
	//   - A proxy error (502/503/504) is held back until the capture clock
	//     has passed its response by Settle, because the upstream
	//     connection that failed may finish after the client's connection:
	//     the tracker keeps ended connections for its linger. It is then
	//     tied to the failures in the window, exactly as Finish does in
	//     batch mode, and made ready. At most MaxPending wait; beyond that
	//     the oldest is released early. Finish releases every one left.
	//
	// The capture clock moves with the now passed to Conn and with
	// Advance, which the caller calls as capture time passes (the engine
	// does so for every packet and on Pipeline.Tick).
	//
	// An upstream failure's own incident has already been handed over when
	// a proxy error is tied to it, so, unlike batch mode, its Related does
	// not name the proxy error's connection (the proxy error names the
	// upstream connection).
	Stream bool
	// Settle is how long (capture time, ns) a proxy error waits after its
	// response before it is tied to an upstream failure. It must exceed the
	// tracker's Linger (plus its sweep interval of about a second) so that
	// the failed upstream connection has finished by then. Default 10 s
	// (conntrack's default Linger is 5 s).
	Settle int64
	// Window is how long (capture time, ns) an upstream failure stays
	// candidate: a proxy error released later than Window after the
	// failure (its client connection stayed open that long, e.g. an idle
	// keep-alive) is reported without its upstream. Default 2 minutes, above
	// the keep-alive timeouts of common proxies and load balancers (60-75 s);
	// at least twice Settle.
	Window int64
	// MaxFailures bounds the upstream failures kept in the window. Default
	// 4096.
	MaxFailures int
	// MaxPending bounds the proxy errors waiting for Settle. Default 4096.
	MaxPending int
}

// Diagnoser collects incidents from finished connections. It is not safe
// for concurrent use; an engine that diagnoses shards of connections on
// several goroutines uses one Diagnoser per shard and Merge.
type Diagnoser struct {
	opt Options
	// incidents: batch mode, every incident kept; streaming mode, those
	// made ready by the latest call (base were made ready before them).
	incidents []*Incident
	base      int
	counts    map[cause.ID]int
	dropped   int
	// failures are upstream candidates; httpErrors are proxy errors not
	// yet tied to one (batch mode: in the order found, correlated in
	// Finish; streaming mode: a min-heap by time, see Options.Stream).
	failures   []*failure
	httpErrors []*Incident
	now        int64 // capture clock
	// due is the capture time at which streaming mode has work: the first
	// proxy error settles or the oldest failure leaves the window. wake is
	// when Advance must do more than move the clock: due, or at once when
	// incidents made ready are to be forgotten; never in batch mode.
	due, wake int64
}

// failure is a connection whose server side failed: refused, reset, or
// closed before answering. A proxy error may name it as its cause.
type failure struct {
	snap    *Snapshot
	at      int64 // the failing packet
	how     string
	inc     *Incident // batch mode only: its own incident, if any
	pkts    []uint64  // streaming mode: the failing packets
	used    bool
	clientI string // client IP
}

// New returns a Diagnoser.
func New(opt Options) *Diagnoser {
	if opt.MaxIncidents <= 0 {
		opt.MaxIncidents = 10000
	}
	if opt.Settle <= 0 {
		opt.Settle = 10e9
	}
	if opt.Window <= 0 {
		opt.Window = 120e9
	}
	opt.Window = max(opt.Window, 2*opt.Settle)
	if opt.MaxFailures <= 0 {
		opt.MaxFailures = 4096
	}
	if opt.MaxPending <= 0 {
		opt.MaxPending = 4096
	}
	return &Diagnoser{opt: opt, counts: map[cause.ID]int{}, due: math.MaxInt64, wake: math.MaxInt64}
}

// Counts returns incidents per cause (including those not kept in detail).
func (d *Diagnoser) Counts() map[cause.ID]int { return d.counts }

// Dropped says how many incidents were counted but not kept (batch mode).
func (d *Diagnoser) Dropped() int { return d.dropped }

// Conn examines a finished connection; now is the capture time reached so
// far. It returns the connection's snapshot only when the connection is part
// of an incident (else nil, and nothing was copied).
func (d *Diagnoser) Conn(c *conntrack.Conn, now int64) *Snapshot {
	if d.opt.Stream {
		d.forget()
	}
	if now > d.now {
		d.now = now
	}
	var inc *Incident
	var snap *Snapshot
	snapOnce := func() *Snapshot {
		if snap == nil {
			snap = Snap(c)
		}
		return snap
	}
	if _, ok := c.ResetBy(); ok {
		inc = diagnoseReset(c, snapOnce())
	} else if unanswered(c, now) {
		inc = noAnswer(c, snapOnce())
	}
	if inc != nil {
		d.add(inc)
	}
	// Proxy errors on this connection (the tracker counted them, so most
	// connections need no walk over their messages).
	if c.Ep[conntrack.FromServer].ProxyErrors > 0 {
		c.EachHTTP(func(m *conntrack.HTTPMsg) bool {
			if m.Dir == conntrack.FromServer && conntrack.ProxyError(m.Status) {
				he := httpError(c, snapOnce(), *m)
				if d.opt.Stream {
					d.hold(he)
				} else {
					d.httpErrors = append(d.httpErrors, he)
				}
			}
			return true
		})
	}
	// Could this connection be the failed upstream leg of a proxy error?
	if f := asFailure(c, inc); f != nil {
		f.snap = snapOnce()
		if d.opt.Stream {
			d.keepFailure(f)
		} else if len(d.failures) < 4*d.opt.MaxIncidents {
			d.failures = append(d.failures, f)
		}
	}
	if d.opt.Stream {
		if d.now >= d.due {
			d.step(false)
		}
		d.setWake()
	}
	return snap
}

func (d *Diagnoser) add(inc *Incident) {
	d.counts[inc.Cause]++
	d.keep(inc)
}

// keep keeps inc in detail, or in batch mode beyond MaxIncidents only counts
// it as dropped.
func (d *Diagnoser) keep(inc *Incident) {
	if !d.opt.Stream && len(d.incidents) >= d.opt.MaxIncidents {
		d.dropped++
		return
	}
	d.incidents = append(d.incidents, inc)
}

// Finish ties proxy errors to upstream failures. In batch mode it returns
// every incident kept, in time order (ties broken by connection ID, then by
// first packet number). In streaming mode it releases every proxy error
// still waiting (tied to the failures in the window), drops the failures,
// and returns those released; they are, like any other, forgotten at the
// next call.
func (d *Diagnoser) Finish() []*Incident {
	if d.opt.Stream {
		d.forget()
		d.step(true)
		clear(d.failures)
		d.failures = nil // nothing left to tie to them
		d.schedule()
		d.setWake()
		return d.incidents
	}
	// In time order, so that the result does not depend on the order the
	// connections finished in (or on how shards were merged): an earlier
	// proxy error claims its upstream failure first.
	sort.Slice(d.httpErrors, func(i, j int) bool { return incidentLess(d.httpErrors[i], d.httpErrors[j]) })
	for _, he := range d.httpErrors {
		d.correlate(he)
		d.add(he)
	}
	d.httpErrors = nil
	sort.SliceStable(d.incidents, func(i, j int) bool { return incidentLess(d.incidents[i], d.incidents[j]) })
	return d.incidents
}

// incidentLess orders incidents by time, then by connection ID, then by
// first packet number: a total order for incidents of one capture.
func incidentLess(a, b *Incident) bool {
	if a.Time != b.Time {
		return a.Time < b.Time
	}
	if ia, ib := connID(a), connID(b); ia != ib {
		return ia < ib
	}
	return firstPacket(a) < firstPacket(b)
}

func connID(inc *Incident) uint64 {
	if inc.Conn == nil {
		return 0
	}
	return inc.Conn.ID
}

func firstPacket(inc *Incident) uint64 {
	if len(inc.Packets) == 0 {
		return 0
	}
	return inc.Packets[0]
}

// Merge absorbs o into d (batch mode): o's incidents (as far as
// MaxIncidents allows; the rest are counted as dropped), counts, dropped
// count, upstream failures and proxy errors not yet correlated. An engine
// that tracks connections in shards, with one Diagnoser per shard, merges
// them and calls Finish once, so proxy errors are tied to upstream failures
// found in any shard. o is left empty. Merge panics in streaming mode.
func (d *Diagnoser) Merge(o *Diagnoser) {
	if o == nil || o == d {
		return
	}
	if d.opt.Stream || o.opt.Stream {
		panic("diagnose: Merge is for batch mode")
	}
	for id, n := range o.counts {
		d.counts[id] += n
	}
	d.dropped += o.dropped
	for _, inc := range o.incidents {
		d.keep(inc)
	}
	for _, f := range o.failures {
		if len(d.failures) >= 4*d.opt.MaxIncidents {
			break
		}
		d.failures = append(d.failures, f)
	}
	d.httpErrors = append(d.httpErrors, o.httpErrors...)
	d.now = max(d.now, o.now)
	*o = Diagnoser{opt: o.opt, counts: map[cause.ID]int{}, due: math.MaxInt64, wake: math.MaxInt64}
}

// Advance moves the capture clock to now (Unix ns; an earlier time is
// ignored) without a finished connection. In streaming mode it forgets the
// incidents made ready by the previous call, then ties and releases the
// proxy errors whose settle delay has passed and drops upstream failures
// that left the window; it reports whether it made incidents ready (see
// Pending and Since). In batch mode it only moves the clock and returns
// false. It is cheap when there is nothing to do: the engine calls it for
// every packet.
func (d *Diagnoser) Advance(now int64) bool {
	if now > d.now {
		d.now = now
	}
	if d.now < d.wake {
		return false
	}
	return d.advance()
}

// advance is Advance's work in streaming mode (kept apart so that Advance
// is inlined).
func (d *Diagnoser) advance() bool {
	d.forget()
	if d.now >= d.due {
		d.step(false)
	}
	d.setWake()
	return len(d.incidents) > 0
}

// forget drops the incidents made ready by the previous call (streaming
// mode): they have been handed over.
func (d *Diagnoser) forget() {
	d.base += len(d.incidents)
	clear(d.incidents)
	d.incidents = d.incidents[:0]
}

// setWake sets when Advance has work next (streaming mode).
func (d *Diagnoser) setWake() {
	d.wake = d.due
	if len(d.incidents) > 0 {
		d.wake = math.MinInt64
	}
}

// hold queues a proxy error until it settles (streaming mode).
func (d *Diagnoser) hold(he *Incident) {
	if len(d.httpErrors) >= d.opt.MaxPending {
		// Too many waiting: release the oldest now, with what is known.
		d.prune()
		d.release(heap.Pop((*incHeap)(&d.httpErrors)).(*Incident))
	}
	heap.Push((*incHeap)(&d.httpErrors), he)
	d.schedule()
}

// keepFailure adds an upstream candidate to the window (streaming mode).
func (d *Diagnoser) keepFailure(f *failure) {
	f.pkts = failingPackets(f)
	f.inc = nil // handed over already; not kept
	if len(d.failures) >= d.opt.MaxFailures {
		d.failures[0] = nil
		d.failures = d.failures[1:]
	}
	d.failures = append(d.failures, f)
	d.schedule()
}

// step drops failures that left the window and releases the proxy errors
// that settled (all of them with all), in time order (streaming mode).
func (d *Diagnoser) step(all bool) {
	d.prune()
	h := (*incHeap)(&d.httpErrors)
	for len(d.httpErrors) > 0 && (all || d.httpErrors[0].Time <= d.now-d.opt.Settle) {
		d.release(heap.Pop(h).(*Incident))
	}
	d.schedule()
}

// release ties a proxy error to its upstream and makes it ready.
func (d *Diagnoser) release(he *Incident) {
	d.correlate(he)
	d.add(he)
}

// prune drops, oldest first, the failures whose failing packet is more than
// Window older than the clock. They are kept in the order their connections
// finished, which is close to (not exactly) the order they failed in: one
// that failed earlier than the front waits for the front, at most Window.
func (d *Diagnoser) prune() {
	cut := d.now - d.opt.Window
	i := 0
	for i < len(d.failures) && d.failures[i].at < cut {
		d.failures[i] = nil
		i++
	}
	d.failures = d.failures[i:]
	if len(d.failures) == 0 {
		d.failures = nil // let the backing array go
	}
}

// schedule computes when streaming mode has work next.
func (d *Diagnoser) schedule() {
	d.due = math.MaxInt64
	if len(d.httpErrors) > 0 {
		d.due = d.httpErrors[0].Time + d.opt.Settle
	}
	if len(d.failures) > 0 {
		d.due = min(d.due, d.failures[0].at+d.opt.Window)
	}
}

// incHeap is a min-heap of incidents by incidentLess.
type incHeap []*Incident

func (h incHeap) Len() int           { return len(h) }
func (h incHeap) Less(i, j int) bool { return incidentLess(h[i], h[j]) }
func (h incHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *incHeap) Push(x any)        { *h = append(*h, x.(*Incident)) }
func (h *incHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return x
}

// correlate finds the upstream connection that failed while the proxy
// handled the request answered with he's status.
func (d *Diagnoser) correlate(he *Incident) {
	reqTS, _ := he.Facts["request_time_ns"].(int64)
	delete(he.Facts, "request_time_ns")
	respTS := he.Time
	proxyIP := hostOf(he.Conn.Server)
	var best *failure
	bestScore := -1.0
	for _, f := range d.failures {
		// Not the proxy error's own connection.
		if f.snap == he.Conn {
			continue
		}
		// The upstream leg must have failed between the request's arrival
		// (a little slack for clock granularity) and the error response.
		if f.at < reqTS-int64(50e6) || f.at > respTS+int64(10e6) {
			continue
		}
		score := 1.0 - float64(respTS-f.at)/float64(respTS-reqTS+int64(50e6)+1)
		if f.clientI == proxyIP {
			score += 1 // the proxy's own address opened the upstream connection
		}
		if f.used {
			score -= 0.5
		}
		if score > bestScore {
			best, bestScore = f, score
		}
	}
	if best == nil {
		he.Summary += " The upstream connection is not in this capture: capture on the proxy's upstream side too."
		he.Facts["upstream"] = "not captured"
		return
	}
	best.used = true
	he.Related = append(he.Related, best.snap.UID)
	he.RelatedConns = append(he.RelatedConns, best.snap)
	he.Facts["upstream_conn"] = best.snap.UID
	he.Facts["upstream_failure"] = best.how
	he.Facts["upstream_server"] = best.snap.Server
	he.Facts["upstream_failed_ms_before_response"] = float64(respTS-best.at) / 1e6
	he.Packets = append(he.Packets, failingPackets(best)...)
	slices.Sort(he.Packets)
	he.Summary = fmt.Sprintf("The proxy %s answered %s with %d because its upstream connection to %s %s %.1f ms earlier (%s).",
		he.Conn.Server, he.Conn.Client, he.Facts["status"], best.snap.Server, best.how,
		float64(respTS-best.at)/1e6, best.snap.UID)
	if best.inc != nil {
		best.inc.Related = append(best.inc.Related, he.Conn.UID)
	}
}

func failingPackets(f *failure) []uint64 {
	if f.inc != nil {
		return f.inc.Packets
	}
	if f.pkts != nil {
		return f.pkts
	}
	var out []uint64
	for _, p := range f.snap.Packets {
		if p.Flags&(0x01|0x02|0x04) != 0 {
			out = append(out, p.Num)
		}
	}
	return out
}

func hostOf(addrport string) string {
	if i := strings.LastIndexByte(addrport, ':'); i > 0 {
		return strings.Trim(addrport[:i], "[]")
	}
	return addrport
}

// asFailure says whether c's server side failed it: refused, reset, or closed
// before answering a request.
func asFailure(c *conntrack.Conn, inc *Incident) *failure {
	srv, cli := &c.Ep[conntrack.FromServer], &c.Ep[conntrack.FromClient]
	if inc == nil && srv.RstPkt == 0 && !srv.FinPending {
		return nil // the common case: nothing failed
	}
	f := &failure{inc: inc, clientI: c.Client().Addr().String()}
	switch {
	case inc != nil && inc.Cause == cause.Refused:
		f.at, f.how = srv.RstTS, "was refused"
	case srv.RstPkt != 0 && (cli.RstPkt == 0 || srv.RstPkt < cli.RstPkt):
		f.at, f.how = srv.RstTS, "was reset by the upstream"
	case srv.FinPkt != 0 && srv.FinPending:
		f.at, f.how = srv.FinTS, "was closed by the upstream before it answered"
	default:
		return nil
	}
	return f
}

// explain fills the catalogue text of an incident.
func explain(inc *Incident) {
	if cs := cause.Lookup(inc.Cause); cs != nil {
		inc.Explanation = cs.Explanation
		inc.Advice = append([]string(nil), cs.Advice...)
	}
}

// Pending returns how many incidents have been kept (batch mode) or made
// ready (streaming mode) so far; Since(n) returns those after that point,
// for callers that hand them over as they go.
func (d *Diagnoser) Pending() int { return d.base + len(d.incidents) }

// Since returns the incidents kept or made ready after the first n. In
// streaming mode it returns only those of the latest Conn, Advance or
// Finish call (the earlier ones are forgotten).
func (d *Diagnoser) Since(n int) []*Incident {
	i := max(n-d.base, 0)
	if i >= len(d.incidents) {
		return nil
	}
	return d.incidents[i:]
}
