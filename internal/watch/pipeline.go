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

// The engine. Watch runs one engine pipeline for its whole life, with the
// diagnosis in streaming mode (diagnose.Options.Stream), so that a process
// that runs for weeks keeps bounded memory:
//
//   - each incident is handed over once, as soon as it is known, and is not
//     kept;
//   - connections whose server side failed (refused, reset, closed before
//     answering: the upstream candidates of proxy errors) are kept for a
//     bounded window of capture time, and a bounded number of them;
//   - a proxy error (502/503/504) is held until capture time has passed its
//     response by settleDelay (the connection linger plus settleMargin), so
//     that the upstream connection that failed, which may end after the
//     client's, has been finished by the tracker; it is then tied to its
//     upstream and handed over.
//
// Live connections are capped (Config.MaxConns). Packet numbers and
// connection uids count from the start of the watch.

// settleMargin is added to the linger to make the settle delay of proxy
// errors: upstream packets after the failure (retransmissions, the proxy's
// own close) extend its connection's linger.
const settleMargin = 2 * time.Second

// settleDelay is how long after its response a proxy error waits for its
// upstream connection to finish.
func (w *Watcher) settleDelay() time.Duration { return w.cfg.Linger + settleMargin }

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

// newPipeline sets up the engine.
func (w *Watcher) newPipeline() {
	w.live = map[flowKey]struct{}{}
	w.pl = engine.NewPipeline(engine.Options{
		Track:    conntrack.Config{MaxConns: w.cfg.MaxConns, Linger: int64(w.cfg.Linger), Inactive: int64(w.cfg.Idle)},
		Diagnose: diagnose.Options{Stream: true, Settle: int64(w.settleDelay())},
		OnConn: func(c *conntrack.Conn) {
			delete(w.live, makeKey(c.Ep[0].Addr, c.Ep[1].Addr))
			w.stats.Conns++
			if c.Evicted {
				w.stats.Evicted++
			}
		},
		OnIncident: w.incident,
	})
}

// route feeds a decoded frame (w.p holds its decoding) to the engine.
func (w *Watcher) route(f *source.Frame, num uint64) {
	if w.p.Status != decode.OK {
		w.pl.Feed(f, num) // counted by the engine as not TCP or malformed
		return
	}
	// The key first: saving an incident found during Feed decodes
	// recorded packets into w.p.
	k := keyOf(&w.p)
	w.pl.Feed(f, num)
	// Whatever the engine finished during Feed, the packet's own
	// connection is live now.
	w.live[k] = struct{}{}
}
