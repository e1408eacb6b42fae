package watch

import (
	"net/netip"
	"time"

	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/engine"
	"github.com/rstscope/rstscope/internal/source"
)

// Generations. The engine keeps every incident it found (and every failed
// connection a proxy error might point to) until it is closed, and its
// packet numbers and uids count from its start: fine for a file, not for a
// process that runs for weeks. So watch retires the current pipeline after
// rotateIncidents incidents, rotateConns finished connections or rotateAge,
// and starts a new one for new connections. A retired ("draining")
// generation keeps receiving the packets of the connections it already
// tracks, and is closed as soon as it tracks none; at most maxDraining are
// kept, the oldest being closed (its connections finished early) beyond that.
// Memory is therefore bounded by a few generations' worth of incidents plus
// the connection cap.
var (
	rotateIncidents        = 500
	rotateConns     uint64 = 200000
	rotateAge              = 5 * time.Minute
	maxDraining            = 3
)

// genMaxIncidents is the engine's own cap on incidents kept: well above
// rotateIncidents so that a draining generation never silently drops one.
const genMaxIncidents = 1 << 20

// gen is one engine pipeline and the connections it tracks.
type gen struct {
	pl        *engine.Pipeline
	live      map[flowKey]struct{}
	born      time.Time
	incidents int
	finished  uint64
}

// flowKey names a connection regardless of direction.
type flowKey struct{ a, b netip.AddrPort }

func makeKey(a, b netip.AddrPort) flowKey {
	if b.Compare(a) < 0 {
		a, b = b, a
	}
	return flowKey{a, b}
}

func keyOf(p *decode.Parsed) flowKey {
	return makeKey(netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort))
}

func (w *Watcher) newGen() *gen {
	g := &gen{live: map[flowKey]struct{}{}, born: time.Now()}
	g.pl = engine.NewPipeline(engine.Options{
		Track:    conntrack.Config{MaxConns: w.cfg.MaxConns, Linger: int64(w.cfg.Linger), Inactive: int64(w.cfg.Idle)},
		Diagnose: diagnose.Options{MaxIncidents: genMaxIncidents},
		OnConn: func(c *conntrack.Conn) {
			delete(g.live, makeKey(c.Ep[0].Addr, c.Ep[1].Addr))
			g.finished++
			w.stats.Conns++
			if c.Evicted {
				w.stats.Evicted++
			}
		},
		OnIncident: func(inc *diagnose.Incident) {
			g.incidents++
			w.incident(inc)
		},
	})
	w.gens = append(w.gens, g)
	return g
}

// route feeds a decoded frame (w.p holds its decoding) to the generation
// that tracks its connection, or to the current one.
func (w *Watcher) route(f *source.Frame, num uint64) {
	if len(w.gens) == 0 {
		w.newGen()
	}
	g := w.gens[len(w.gens)-1]
	if w.p.Status != decode.OK {
		g.pl.Feed(f, num) // counted by the engine as not TCP or malformed
		return
	}
	k := keyOf(&w.p)
	for _, old := range w.gens[:len(w.gens)-1] {
		if _, ok := old.live[k]; ok {
			g = old
			break
		}
	}
	g.pl.Feed(f, num)
	// Whatever the engine finished during Feed, the packet's own
	// connection is live in g now.
	g.live[k] = struct{}{}
}

// tick advances the generation's clock to capture time ts, so connections
// that ended are diagnosed although no packet arrives.
func (g *gen) tick(ts int64) { g.pl.Tick(ts) }

// manageGens retires the current generation when it is full or old, and
// closes draining generations that track nothing (or are too many).
func (w *Watcher) manageGens() {
	if len(w.gens) == 0 {
		w.newGen()
	}
	cur := w.gens[len(w.gens)-1]
	if cur.incidents >= rotateIncidents || cur.finished >= rotateConns ||
		(time.Since(cur.born) >= rotateAge && cur.finished > 0) {
		w.newGen()
	}
	for i := 0; i < len(w.gens)-1; {
		if len(w.gens[i].live) == 0 {
			w.closeGen(i)
			continue
		}
		i++
	}
	for len(w.gens)-1 > maxDraining {
		w.closeGen(0)
	}
}

// closeGen closes generation i: its connections are finished (and their
// incidents handed over), then proxy errors, which the engine ties to their
// upstream connections only at the end, are handed over too.
func (w *Watcher) closeGen(i int) {
	g := w.gens[i]
	incs, _ := g.pl.Close()
	w.gens = append(w.gens[:i], w.gens[i+1:]...)
	for _, inc := range incs {
		if inc.Kind == diagnose.KindHTTPError {
			w.incident(inc)
		}
	}
}
