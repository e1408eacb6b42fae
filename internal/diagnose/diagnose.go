package diagnose

import (
	"fmt"
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
	// MaxIncidents bounds the incidents kept with full detail; the rest
	// are only counted. Default 10000.
	MaxIncidents int
}

// Diagnoser collects incidents from finished connections.
type Diagnoser struct {
	opt       Options
	incidents []*Incident
	counts    map[cause.ID]int
	dropped   int
	// upstream candidates and proxy errors, correlated in Finish.
	failures   []*failure
	httpErrors []*Incident
	now        int64
}

// failure is a connection whose server side failed: refused, reset, or
// closed before answering. A proxy error may name it as its cause.
type failure struct {
	snap    *Snapshot
	at      int64 // the failing packet
	how     string
	inc     *Incident
	used    bool
	clientI string // client IP
}

// New returns a Diagnoser.
func New(opt Options) *Diagnoser {
	if opt.MaxIncidents <= 0 {
		opt.MaxIncidents = 10000
	}
	return &Diagnoser{opt: opt, counts: map[cause.ID]int{}}
}

// Counts returns incidents per cause (including those not kept in detail).
func (d *Diagnoser) Counts() map[cause.ID]int { return d.counts }

// Dropped says how many incidents were counted but not kept.
func (d *Diagnoser) Dropped() int { return d.dropped }

// Conn examines a finished connection; now is the capture time reached so
// far. It returns the connection's snapshot only when the connection is part
// of an incident (else nil, and nothing was copied).
func (d *Diagnoser) Conn(c *conntrack.Conn, now int64) *Snapshot {
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
	// Proxy errors on this connection.
	c.EachHTTP(func(m *conntrack.HTTPMsg) bool {
		if m.Dir == conntrack.FromServer && (m.Status == 502 || m.Status == 503 || m.Status == 504) {
			he := httpError(c, snapOnce(), *m)
			d.httpErrors = append(d.httpErrors, he)
		}
		return true
	})
	// Could this connection be the failed upstream leg of a proxy error?
	if f := asFailure(c, inc); f != nil {
		f.snap = snapOnce()
		if len(d.failures) < 4*d.opt.MaxIncidents {
			d.failures = append(d.failures, f)
		}
	}
	return snap
}

func (d *Diagnoser) add(inc *Incident) {
	d.counts[inc.Cause]++
	if len(d.incidents) >= d.opt.MaxIncidents {
		d.dropped++
		return
	}
	d.incidents = append(d.incidents, inc)
}

// Finish ties proxy errors to upstream failures and returns every incident
// kept, in time order.
func (d *Diagnoser) Finish() []*Incident {
	for _, he := range d.httpErrors {
		d.correlate(he)
		d.add(he)
	}
	d.httpErrors = nil
	sort.SliceStable(d.incidents, func(i, j int) bool { return d.incidents[i].Time < d.incidents[j].Time })
	return d.incidents
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
		if f.snap.UID == he.Conn.UID {
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
	if inc == nil && srv.RstPkt == 0 && (srv.FinPkt == 0 || c.HTTPTotal == 0) {
		return nil // the common case: nothing failed
	}
	f := &failure{inc: inc, clientI: c.Client().Addr().String()}
	switch {
	case inc != nil && inc.Cause == cause.Refused:
		f.at, f.how = srv.RstTS, "was refused"
	case srv.RstPkt != 0 && (cli.RstPkt == 0 || srv.RstPkt < cli.RstPkt):
		f.at, f.how = srv.RstTS, "was reset by the upstream"
	case srv.FinPkt != 0 && !answeredBefore(c, srv.FinTS) && hasRequest(c):
		f.at, f.how = srv.FinTS, "was closed by the upstream before it answered"
	default:
		return nil
	}
	return f
}

func hasRequest(c *conntrack.Conn) bool {
	found := false
	c.EachHTTP(func(m *conntrack.HTTPMsg) bool { found = m.Method != ""; return !found })
	return found
}

// answeredBefore: the last request before ts got a response before ts.
func answeredBefore(c *conntrack.Conn, ts int64) bool {
	pending := false
	c.EachHTTP(func(m *conntrack.HTTPMsg) bool {
		if m.TS > ts {
			return false
		}
		if m.Method != "" {
			pending = true
		} else if m.Status >= 200 {
			pending = false
		}
		return true
	})
	return !pending
}

// explain fills the catalogue text of an incident.
func explain(inc *Incident) {
	if cs := cause.Lookup(inc.Cause); cs != nil {
		inc.Explanation = cs.Explanation
		inc.Advice = append([]string(nil), cs.Advice...)
	}
}

// Pending returns how many incidents are kept so far; Since(n) returns
// those added after that point (for callers that print as they go).
func (d *Diagnoser) Pending() int { return len(d.incidents) }

// Since returns the incidents kept after the first n.
func (d *Diagnoser) Since(n int) []*Incident {
	if n >= len(d.incidents) {
		return nil
	}
	return d.incidents[n:]
}
