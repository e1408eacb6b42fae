// Package watch is the core of `rstscope watch`: it captures live, tracks
// connections with the same engine as `rstscope analyze`, and hands over each
// reset incident as soon as its connection is finished, with the kernel's own
// reason joined to the RST when the kernel's reset tracepoints can be read.
//
// The pieces, all driven from one goroutine (Run's), so none needs a lock:
//
//   - a live capture (internal/livecap, AF_PACKET with a kernel BPF filter);
//   - the flight recorder (recorder.go): every captured packet is copied into
//     a fixed circular buffer holding the last seconds of traffic, from which
//     a pcapng is cut for each incident (save.go);
//   - the kernel side (kernel.go): events from internal/ktrace, joined to
//     captured RSTs through internal/kjoin, the rest reported as KernelResets;
//   - the engine (pipeline.go), one pipeline for the whole watch with the
//     diagnosis streaming: incidents are handed over as they are found and
//     not kept, and proxy errors are tied to their upstream connection a
//     settle delay after their response, so a process that runs for weeks
//     keeps bounded memory and reports 502s within seconds.
//
// Packets reach the engine through a short queue: when kernel events are
// read, an RST waits there (at most Config.KernelWait) for the kernel's event
// describing it, because the event can be read after the packet. Everything
// captured is in the recorder first, so the queue costs no extra memory.
package watch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"time"

	"github.com/rstscope/rstscope/internal/bpfilter"
	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/engine"
	"github.com/rstscope/rstscope/internal/kjoin"
	"github.com/rstscope/rstscope/internal/ktrace"
	"github.com/rstscope/rstscope/internal/livecap"
	"github.com/rstscope/rstscope/internal/source"
)

// Config describes a watch. Zero fields get the defaults named.
type Config struct {
	// Interface to capture on; "" or "any" means every interface of the
	// network namespace (frames are then Linux cooked v2).
	Interface string
	// Filter is applied in the kernel (BPF); it also decides which kernel
	// resets are reported as inside or outside the filter.
	Filter   bpfilter.Options
	SnapLen  int // bytes kept per packet; default livecap's (262144)
	BufferMB int // capture ring size; default 8

	// Kernel enables the kernel's reset tracepoints when they can be read
	// (root, Linux 6.10+); otherwise watch goes on from packets only and
	// says why in Info.KernelErr.
	Kernel bool
	// KernelWait is how long a captured RST may wait for its kernel event
	// before it is analysed without one. Default 250ms.
	KernelWait time.Duration

	// RecordFor and RecordMB bound the flight recorder: packets older than
	// RecordFor are dropped, and the oldest go first when RecordMB (MiB)
	// is full. Defaults 30s and 64.
	RecordFor time.Duration
	RecordMB  int
	// SaveDir, if set, receives one pcapng per incident: the incident's
	// connection(s) and every packet from SaveBefore before the reset.
	SaveDir    string
	SaveBefore time.Duration // default 5s
	// SavesPerMinute bounds the files written (a token bucket with a burst
	// of the same size), so a reset storm cannot fill the disk or stall the
	// capture. Default 60.
	SavesPerMinute int

	// MaxConns caps the live connections tracked (oldest released first).
	// Default 100000.
	MaxConns int
	// Linger is how long an ended connection waits for late packets before
	// it is diagnosed; Idle finishes connections silent for that long.
	// Defaults 1s and 5m. Idle must exceed the longest keep-alive gap you
	// care about: a stale keep-alive is only recognised when the server's
	// FIN and the late request are in one connection. Proxy errors are
	// handed over Linger + 2 s (capture time) after their response, once
	// their upstream connection has been finished too (pipeline.go).
	Linger, Idle time.Duration

	// StatsEvery, if positive, calls OnStats that often.
	StatsEvery time.Duration

	// Metrics, if set, is updated as packets and incidents come.
	Metrics *Metrics

	OnIncident    func(*Incident)   // each incident, in the order diagnosed
	OnKernelReset func(KernelReset) // kernel resets no captured RST accounts for
	OnStats       func(Stats)
	// Warn, if set, receives problems watch works around (e.g. the
	// kernel's events stopping).
	Warn func(string)
	// Ready, if set, is called once capture and tracepoints are set up,
	// before the first packet is read.
	Ready func(Info)
	// Open opens the capture; default livecap.Open. Tests use it to open the
	// socket inside a network namespace of their own.
	Open func(livecap.Config) (*livecap.Handle, error)
}

// Info says what Run managed to set up.
type Info struct {
	Interface string
	LinkType  uint32
	Kernel    bool  // kernel reset tracepoints are being read
	KernelErr error // why not, when Config.Kernel was set
}

// Incident is a diagnosed incident as watch hands it over.
type Incident struct {
	*diagnose.Incident
	N       int    // 1-based, in the order printed
	Capture string // the pcapng saved for it, "" if none
	SaveErr error  // why it was not saved, when SaveDir is set
	// Delay is from the capture of the packet that decided the incident
	// (usually the RST) to the moment it was handed over.
	Delay time.Duration
}

// Stats are watch's counters, cumulative since Run started.
type Stats struct {
	Elapsed       time.Duration
	Packets       uint64 // frames captured
	Bytes         uint64
	KernelPackets uint64 // packets the kernel passed to the socket (incl. dropped)
	Drops         uint64 // packets the kernel dropped because the ring was full
	RecorderDrops uint64 // packets too large for the recorder (not analysed)
	LiveConns     int
	Conns         uint64 // connections finished
	Evicted       uint64 // connections released early (MaxConns)
	Incidents     int
	KernelMatched uint64 // captured RSTs given the kernel's reason
	KernelOnly    uint64 // kernel resets reported without a captured RST
	KernelLost    uint64 // kernel events overwritten before read
	Saved         uint64
	SaveSkipped   uint64
	RecorderBytes int
	RecorderPkts  int
	RecorderSpan  time.Duration
	HeapInuse     uint64
	MaxDelay      time.Duration // longest Incident.Delay
	KernelTracing bool
}

// pendingRec is a captured packet waiting in the recorder to be analysed.
type pendingRec struct {
	off    int
	seq    uint64
	ts     int64
	rst    bool
	joined bool   // the kernel's event was found
	tried  uint64 // Watcher.kAdded when a join was last tried (^0: never)
}

// Watcher is the state of one Run.
type Watcher struct {
	cfg      Config
	h        *livecap.Handle
	linkType uint32
	tr       *ktrace.Tracer
	evs      <-chan ktrace.Event
	kAdded   uint64
	ks       kernelSide
	rec      *recorder
	pend     []pendingRec
	pendHead int
	nextFeed uint64
	p        decode.Parsed
	pl       *engine.Pipeline
	lastTick int64
	nInc     int
	saveTok  float64
	saveLast time.Time
	runStamp string
	stats    Stats
	start    time.Time
	closing  bool
}

// Run watches until ctx is done, then finishes every connection (their
// incidents are handed over too), removes the tracefs instance and returns
// the final counters. It returns an error only when the capture cannot be
// opened or fails; a missing kernel side is reported through Info.
func Run(ctx context.Context, cfg Config) (Stats, error) {
	w := &Watcher{cfg: cfg, start: time.Now()}
	w.defaults()
	open := w.cfg.Open
	if open == nil {
		open = livecap.Open
	}
	h, err := open(livecap.Config{Interface: w.cfg.Interface, Filter: w.cfg.Filter, SnapLen: w.cfg.SnapLen,
		BufferMB: w.cfg.BufferMB, PollTimeout: 50 * time.Millisecond, BlockTimeout: 20 * time.Millisecond})
	if err != nil {
		return w.stats, err
	}
	w.h = h
	defer h.Close()
	w.linkType = h.LinkType()
	info := Info{Interface: w.cfg.Interface, LinkType: w.linkType}
	if w.cfg.Kernel {
		if err := ktrace.Available(); err != nil {
			info.KernelErr = err
		} else if tr, err := ktrace.Open(context.Background()); err != nil {
			// Not ctx: the tracer must outlive ctx until shutdown has
			// joined the last RSTs; shutdown (and the defer) close it.
			info.KernelErr = err
		} else {
			w.tr, w.evs = tr, tr.Events()
			info.Kernel = true
			defer tr.Close()
		}
	}
	w.stats.KernelTracing = info.Kernel
	if m := w.cfg.Metrics; m != nil {
		m.setup(w.cfg, info)
	}
	if w.cfg.Ready != nil {
		w.cfg.Ready(info)
	}
	err = w.loop(ctx)
	w.shutdown()
	return w.finalStats(), err
}

func (w *Watcher) defaults() {
	c := &w.cfg
	if c.Interface == "" {
		c.Interface = "any"
	}
	if c.KernelWait <= 0 {
		c.KernelWait = 250 * time.Millisecond
	}
	if c.RecordFor <= 0 {
		c.RecordFor = 30 * time.Second
	}
	if c.RecordMB <= 0 {
		c.RecordMB = 64
	}
	if c.SaveBefore <= 0 {
		c.SaveBefore = 5 * time.Second
	}
	if c.SavesPerMinute <= 0 {
		c.SavesPerMinute = 60
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 100000
	}
	if c.Linger <= 0 {
		c.Linger = time.Second
	}
	if c.Idle <= 0 {
		c.Idle = 5 * time.Minute
	}
	snap := c.SnapLen
	if snap <= 0 {
		snap = livecap.DefaultSnapLen
	}
	size := c.RecordMB << 20
	if size < 2*(snap+recHeader) {
		size = 2 * (snap + recHeader)
	}
	w.rec = newRecorder(size, int64(c.RecordFor))
	w.nextFeed = 1
	w.ks.filter = c.Filter
	w.saveTok = float64(c.SavesPerMinute)
	w.runStamp = w.start.UTC().Format("20060102T150405Z")
	w.newPipeline()
}

// loop reads packets until ctx is done.
func (w *Watcher) loop(ctx context.Context) error {
	var f source.Frame
	nextTick := time.Now()
	nextStats := time.Now().Add(w.cfg.StatsEvery)
	nextSlow := time.Now()
	for ctx.Err() == nil {
		err := w.h.Next(&f)
		switch {
		case err == nil:
			w.capture(&f)
		case errors.Is(err, livecap.ErrTimeout):
		case errors.Is(err, net.ErrClosed):
			return nil
		default:
			return fmt.Errorf("capture: %w", err)
		}
		w.drainKernel()
		now := time.Now()
		w.feedReady(now.UnixNano(), false)
		if now.Before(nextTick) {
			continue
		}
		nextTick = now.Add(100 * time.Millisecond)
		w.tick(now.UnixNano())
		if !now.Before(nextSlow) {
			nextSlow = now.Add(time.Second)
			w.refreshStats()
		}
		if w.cfg.StatsEvery > 0 && !now.Before(nextStats) && w.cfg.OnStats != nil {
			nextStats = now.Add(w.cfg.StatsEvery)
			w.cfg.OnStats(w.snapshotStats())
		}
	}
	return nil
}

// capture copies a captured frame into the recorder and queues it.
func (w *Watcher) capture(f *source.Frame) {
	w.stats.Packets++
	w.stats.Bytes += uint64(len(f.Data))
	if m := w.cfg.Metrics; m != nil {
		m.packets.Inc()
		m.bytes.Add(float64(len(f.Data)))
	}
	for {
		seq, off, ok := w.rec.add(f, w.nextFeed)
		if ok {
			rst := false
			if w.evs != nil { // RSTs wait for their kernel event
				w.p.Decode(f.LinkType, f.Data)
				rst = w.p.Status == decode.OK && w.p.Flags&decode.RST != 0
			}
			w.pend = append(w.pend, pendingRec{off: off, seq: seq, ts: f.Timestamp, rst: rst, tried: ^uint64(0)})
			return
		}
		if w.pendHead == len(w.pend) {
			// Larger than the whole recorder: cannot happen with the
			// sizes defaults() picks, but never loop forever.
			w.stats.RecorderDrops++
			return
		}
		// The recorder is full of packets not analysed yet: analyse the
		// oldest now rather than lose it.
		w.feedFront()
	}
}

// drainKernel moves the events read so far into the kernel side.
func (w *Watcher) drainKernel() {
	for w.evs != nil {
		select {
		case ev, ok := <-w.evs:
			if !ok {
				w.evs = nil
				if !w.closing {
					// The tracer stopped on its own (tracefs instance
					// removed, read error): go on from packets only.
					w.stats.KernelTracing = false
					if w.cfg.Warn != nil {
						w.cfg.Warn(fmt.Sprintf("kernel reset events stopped (%v); going on from packets only", w.tr.Err()))
					}
					if m := w.cfg.Metrics; m != nil {
						m.kernelUp.Set(0)
					}
				}
				return
			}
			w.ks.add(ev)
			w.kAdded++
		default:
			return
		}
	}
}

// feedReady analyses queued packets in order while the oldest is ready: any
// packet but an RST at once; an RST once its kernel event is found, or after
// KernelWait. With force, everything queued goes.
func (w *Watcher) feedReady(now int64, force bool) {
	for w.pendHead < len(w.pend) {
		e := &w.pend[w.pendHead]
		if e.rst && !e.joined {
			if e.tried != w.kAdded { // new events since the last try
				e.tried = w.kAdded
				e.joined = w.join(e)
			}
			if !e.joined && !force && now-e.ts < int64(w.cfg.KernelWait) {
				return
			}
		}
		w.feedFront()
	}
	// Reclaim the consumed front of the queue.
	if w.pendHead == len(w.pend) {
		w.pend, w.pendHead = w.pend[:0], 0
	} else if w.pendHead > 1024 && w.pendHead*2 > len(w.pend) {
		n := copy(w.pend, w.pend[w.pendHead:])
		w.pend = w.pend[:n]
		w.pendHead = 0
	}
}

// join looks for the kernel's event for the queued RST e and, when found,
// attaches it to the recorded packet as a comment.
func (w *Watcher) join(e *pendingRec) bool {
	var f source.Frame
	w.rec.fill(e.off, &f, w.linkType)
	w.p.Decode(f.LinkType, f.Data)
	ev, ok := w.ks.join.MatchPacket(&w.p, f.Timestamp)
	if !ok {
		return false
	}
	w.rec.comment(e.seq, kjoin.Comment(ev))
	w.ks.matched++
	w.stats.KernelMatched++
	if m := w.cfg.Metrics; m != nil {
		m.kernelResets.With("sent", reasonLabel(ev.Reason), "true").Inc()
	}
	return true
}

// feedFront analyses the oldest queued packet.
func (w *Watcher) feedFront() {
	e := w.pend[w.pendHead]
	w.pendHead++
	w.nextFeed = e.seq + 1
	var f source.Frame
	w.rec.fill(e.off, &f, w.linkType)
	w.p.Decode(f.LinkType, f.Data)
	if w.p.Status == decode.OK && w.p.Flags&decode.RST != 0 && w.tr != nil {
		src := netip.AddrPortFrom(w.p.Src.Unmap(), w.p.SrcPort)
		dst := netip.AddrPortFrom(w.p.Dst.Unmap(), w.p.DstPort)
		if w.ks.claimRecv(src, dst, f.Timestamp) {
			if m := w.cfg.Metrics; m != nil {
				m.kernelResets.With("received", "none", "true").Inc()
			}
		}
	}
	w.pl.FeedDecoded(&f, &w.p, e.seq)
}

// tick advances the engine's clock when traffic is quiet (so ended
// connections are diagnosed, and proxy errors that settled are handed over,
// without waiting for the next packet) and reports kernel resets nobody
// captured.
func (w *Watcher) tick(now int64) {
	// Frames captured up to about now minus the ring's block timeout have
	// been read; nothing queued may be overtaken.
	safe := now - int64(100*time.Millisecond)
	if w.pendHead < len(w.pend) && w.pend[w.pendHead].ts-1 < safe {
		safe = w.pend[w.pendHead].ts - 1
	}
	if safe > w.lastTick {
		w.lastTick = safe
		w.pl.Tick(safe)
	}
	if w.tr != nil {
		w.ks.flush(safe-kjoin.Window-int64(50*time.Millisecond), w.kernelOnly)
	}
}

// kernelOnly hands over a kernel reset no captured packet accounts for.
func (w *Watcher) kernelOnly(kr KernelReset) {
	w.stats.KernelOnly++
	if m := w.cfg.Metrics; m != nil {
		if kr.Sent {
			m.kernelResets.With("sent", reasonLabel(kr.Reason), "false").Inc()
		}
		if kr.Received {
			m.kernelResets.With("received", "none", "false").Inc()
		}
	}
	if w.cfg.OnKernelReset != nil {
		w.cfg.OnKernelReset(kr)
	}
}

func reasonLabel(r string) string {
	if r == "" {
		return "NOT_SPECIFIED"
	}
	return r
}

// incident is called by the engine for each incident, once.
func (w *Watcher) incident(inc *diagnose.Incident) {
	w.nInc++
	out := &Incident{Incident: inc, N: w.nInc}
	if w.cfg.SaveDir != "" {
		out.Capture, out.SaveErr = w.save(inc)
	}
	out.Delay = time.Since(time.Unix(0, inc.Time))
	if out.Delay > w.stats.MaxDelay {
		w.stats.MaxDelay = out.Delay
	}
	if m := w.cfg.Metrics; m != nil {
		m.countIncident(out)
	}
	if w.cfg.OnIncident != nil {
		w.cfg.OnIncident(out)
	}
}

// refreshStats reads the capture's and tracer's counters into stats and
// metrics (once a second).
func (w *Watcher) refreshStats() {
	if st, err := w.h.Stats(); err == nil {
		w.stats.KernelPackets, w.stats.Drops = st.Packets, st.Drops
	}
	if w.tr != nil {
		w.stats.KernelLost = w.tr.Lost()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.stats.HeapInuse = ms.HeapInuse
	st := w.snapshotStats()
	if m := w.cfg.Metrics; m != nil {
		m.update(st)
	}
}

// snapshotStats fills in the counters computed on demand.
func (w *Watcher) snapshotStats() Stats {
	st := w.stats
	st.Elapsed = time.Since(w.start)
	st.Incidents = w.nInc
	tr := w.pl.Tracked()
	st.LiveConns, st.Conns, st.Evicted = tr.Live, tr.Finished, tr.Evicted
	st.RecorderBytes, st.RecorderPkts = w.rec.bytes, w.rec.n
	if w.rec.n > 0 {
		st.RecorderSpan = time.Duration(w.rec.newest - w.rec.oldestTS())
	}
	return st
}

// shutdown analyses what is queued, reports the remaining kernel events,
// and closes the engine: its connections are finished and every proxy error
// still waiting is tied to its upstream and handed over.
func (w *Watcher) shutdown() {
	w.closing = true
	w.h.Close()
	// RSTs still queued get their usual chance to meet their kernel event.
	deadline := time.Now().Add(w.cfg.KernelWait)
	for w.pendHead < len(w.pend) && time.Now().Before(deadline) {
		w.drainKernel()
		w.feedReady(time.Now().UnixNano(), false)
		if w.pendHead < len(w.pend) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	w.drainKernel()
	w.feedReady(time.Now().UnixNano(), true)
	if w.tr != nil {
		// Give events still in the kernel's buffers a moment to arrive,
		// then report every unclaimed one.
		w.tr.Close()
		w.drainKernel()
		w.ks.flush(1<<62, w.kernelOnly)
	}
	w.pl.Close()
	w.refreshStats()
}

func (w *Watcher) finalStats() Stats { return w.snapshotStats() }

// ErrSaveSkipped is Incident.SaveErr when the rate limit (SavesPerMinute)
// skipped the file; such skips are counted in Stats.SaveSkipped.
var ErrSaveSkipped = errors.New("not saved: more than the allowed captures per minute")

// ensureDir makes SaveDir if needed.
func ensureDir(dir string) error { return os.MkdirAll(dir, 0o750) }
