package watch

import (
	"time"

	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/engine"
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

// newPipeline sets up the engine.
func (w *Watcher) newPipeline() {
	w.pl = engine.NewPipeline(engine.Options{
		Track:      conntrack.Config{MaxConns: w.cfg.MaxConns, Linger: int64(w.cfg.Linger), Inactive: int64(w.cfg.Idle)},
		Diagnose:   diagnose.Options{Stream: true, Settle: int64(w.settleDelay())},
		OnIncident: w.incident,
	})
}
