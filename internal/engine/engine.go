// Package engine runs the pipeline every rstscope command shares: frames from
// a source are decoded, tracked into connections, and each finished
// connection is diagnosed. Capture files (analyze), the lab's own capture
// and live capture (watch) all go through Run or a Pipeline.
package engine

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/source"
)

// Options configure a run.
type Options struct {
	Track    conntrack.Config
	Diagnose diagnose.Options
	// OnConn, if set, receives every finished connection (e.g. to write
	// conn rows). It must not keep c.
	OnConn func(c *conntrack.Conn)
	// OnIncident, if set, receives each reset incident as soon as its
	// connection finished (watch prints them live). Proxy errors come at
	// the end, from Finish. With Diagnose.Stream, every incident comes
	// here, proxy errors once they have settled (diagnose.Options.Settle)
	// or at Close, and none is kept: Close returns only those it released.
	OnIncident func(inc *diagnose.Incident)
	// Progress, if set, is called about every 65536 packets.
	Progress func(packets uint64)
	// Row, if set, appends a row for a finished connection to b (such as
	// report.AppendConn) and Run writes the rows to RowsTo. Unlike OnConn,
	// Row may be called on several goroutines at once, so Run can still
	// track in shards; the rows then come in an order fixed by the input
	// and the number of workers (see runSharded).
	Row    func(b []byte, c *conntrack.Conn) []byte
	RowsTo io.Writer
	// Workers is how many goroutines Run tracks connections on: 0 picks
	// GOMAXPROCS (at most maxWorkers), 1 keeps everything on the calling
	// goroutine. Run uses one when OnConn or OnIncident is set.
	Workers int
}

// maxWorkers bounds the shards of a sharded run.
const maxWorkers = 8

func (o *Options) workers() int {
	if o.OnConn != nil || o.OnIncident != nil {
		return 1
	}
	n := o.Workers
	if n <= 0 {
		n = min(runtime.GOMAXPROCS(0), maxWorkers)
	}
	return n
}

// Stats describe the input.
type Stats struct {
	Frames      uint64            // frames read
	Bytes       uint64            // captured bytes
	TCP         uint64            // TCP packets tracked
	NotTCP      uint64            // IP but not TCP, or not IP
	Malformed   uint64            // frames whose headers made no sense (see Skipped)
	Skipped     map[string]uint64 // reasons frames were not tracked
	Truncated   uint64            // TCP packets with payload cut by the snaplen
	LinkTypes   map[uint32]uint64
	First, Last int64 // capture time range, Unix ns
	Comments    uint64
	Track       conntrack.Stats
	// States counts finished connections by Zeek conn_state; Resets those
	// in which either side sent an RST.
	States map[string]uint64
	Resets uint64
	// Incidents counts incidents per cause, including those beyond the
	// detail limit; NotDetailed is how many were counted only.
	Incidents   map[cause.ID]int
	NotDetailed int
}

// Pipeline is the engine's state; Feed frames into it, then Close.
type Pipeline struct {
	opt   Options
	p     decode.Parsed
	tr    *conntrack.Tracker
	dg    *diagnose.Diagnoser
	stats Stats
	now   int64 // capture time reached: the latest frame or Tick
	swept int64 // the clock at a sharded run's last advanceShard
	// link type counts, batched: a map increment per packet is measurable
	lastLT  uint32
	ltCount uint64
	// rows collects Options.Row's rows: on a shard, into the batch being
	// tracked (see runSharded); otherwise into a buffer written to RowsTo
	// at once.
	rows *[]byte
	own  []byte
}

func (pl *Pipeline) flushLT() {
	if pl.ltCount > 0 {
		pl.stats.LinkTypes[pl.lastLT] += pl.ltCount
		pl.ltCount = 0
	}
}

// NewPipeline makes a pipeline.
func NewPipeline(opt Options) *Pipeline {
	pl := &Pipeline{opt: opt, dg: diagnose.New(opt.Diagnose)}
	pl.stats.Skipped = map[string]uint64{}
	pl.stats.LinkTypes = map[uint32]uint64{}
	pl.stats.States = map[string]uint64{}
	pl.tr = conntrack.New(opt.Track, pl.finished)
	return pl
}

func (pl *Pipeline) finished(c *conntrack.Conn) {
	pl.stats.States[c.State()]++
	if _, ok := c.ResetBy(); ok {
		pl.stats.Resets++
	}
	if pl.opt.OnConn != nil {
		pl.opt.OnConn(c)
	}
	if pl.opt.Row != nil {
		if pl.rows != nil {
			*pl.rows = pl.opt.Row(*pl.rows, c)
		} else {
			pl.own = pl.opt.Row(pl.own[:0], c)
			pl.opt.RowsTo.Write(pl.own)
		}
	}
	n := pl.dg.Pending()
	pl.dg.Conn(c, pl.now)
	if pl.opt.OnIncident != nil {
		for _, inc := range pl.dg.Since(n) {
			pl.opt.OnIncident(inc)
		}
	}
}

// Feed processes one frame. num is its 1-based number in the input.
func (pl *Pipeline) Feed(f *source.Frame, num uint64) {
	pl.p.Decode(f.LinkType, f.Data)
	pl.FeedDecoded(f, &pl.p, num)
}

// FeedDecoded is Feed for a caller that has decoded f into p already (watch
// looks at each packet before the engine does).
func (pl *Pipeline) FeedDecoded(f *source.Frame, p *decode.Parsed, num uint64) {
	pl.countFrame(f)
	if pl.track(p, num, f.Timestamp, f.Comment) {
		pl.release()
	}
	if pl.opt.Progress != nil && pl.stats.Frames&0xffff == 0 {
		pl.opt.Progress(pl.stats.Frames)
	}
}

// countFrame counts f in the statistics that need no decoding: frames,
// bytes, link types, the time range. In a sharded run the reader counts
// these; the shards count the rest (track).
func (pl *Pipeline) countFrame(f *source.Frame) {
	st := &pl.stats
	st.Frames++
	st.Bytes += uint64(len(f.Data))
	if f.LinkType != pl.lastLT || pl.ltCount == 0 {
		pl.flushLT()
		pl.lastLT = f.LinkType
	}
	pl.ltCount++
	if st.First == 0 || f.Timestamp < st.First {
		st.First = f.Timestamp
	}
	if f.Timestamp > st.Last {
		st.Last = f.Timestamp
	}
	if f.Timestamp > pl.now {
		pl.now = f.Timestamp
	}
}

// track counts frame number num, decoded into p, by what it turned out to
// be, and tracks it if it is a TCP packet (which it reports), moving the
// clock to its time.
func (pl *Pipeline) track(p *decode.Parsed, num uint64, ts int64, comment string) bool {
	if !pl.countDecoded(p, comment != "") {
		return false
	}
	if ts > pl.now {
		pl.now = ts
	}
	pl.add(p, num, ts, comment)
	return true
}

// advanceShard moves a shard's tracker to the pipeline's clock once 100 ms
// of capture time have passed since the last time: the clock follows the
// whole capture, the tracker only its own packets, and ended connections
// must be finished on time even in a quiet shard.
func (pl *Pipeline) advanceShard() {
	if pl.now-pl.swept >= 1e8 {
		pl.tr.Advance(pl.now)
		pl.swept = pl.now
	}
}

// countDecoded counts a decoded frame by what it turned out to be, and
// reports whether it is a TCP packet to track.
func (pl *Pipeline) countDecoded(p *decode.Parsed, comment bool) bool {
	st := &pl.stats
	switch p.Status {
	case decode.OK:
	case decode.NotIP, decode.NotTCP:
		st.NotTCP++
		return false
	default:
		st.Malformed++
		st.Skipped[p.Status.String()]++
		return false
	}
	st.TCP++
	if p.Truncated {
		st.Truncated++
	}
	if comment {
		st.Comments++
	}
	return true
}

// merge adds what the shards' pipelines counted to st, whose frame counts
// are already there, and returns the incidents of all shards: their
// diagnosers merged into one, so that proxy errors are tied to upstream
// failures in any shard and everything is ordered as on one goroutine.
func merge(st *Stats, shards []*Pipeline) []*diagnose.Incident {
	dg := shards[0].dg
	for _, pl := range shards {
		if pl.dg != dg {
			dg.Merge(pl.dg)
		}
		st.Track.Add(pl.tr.Stats())
		st.addDecoded(&pl.stats)
		for k, v := range pl.stats.States {
			st.States[k] += v
		}
		st.Resets += pl.stats.Resets
	}
	incs := dg.Finish()
	st.countIncidents(dg)
	return incs
}

// addDecoded adds the counts of o, another pipeline's countDecoded, to st.
func (st *Stats) addDecoded(o *Stats) {
	st.TCP += o.TCP
	st.NotTCP += o.NotTCP
	st.Malformed += o.Malformed
	st.Truncated += o.Truncated
	st.Comments += o.Comments
	for k, v := range o.Skipped {
		st.Skipped[k] += v
	}
}

// add gives a decoded TCP packet to the tracker, with its comment (the
// kernel's reset reason, in captures rstscope wrote) as a note.
func (pl *Pipeline) add(p *decode.Parsed, num uint64, ts int64, comment string) {
	c := pl.tr.Add(p, num, ts)
	if comment != "" {
		c.AddNote(num, comment)
	}
}

// Tick advances the pipeline's clock to ts without a packet (see
// conntrack.Tracker.Advance): connections that ended and lingered, or idled
// out, are finished and diagnosed. Live sources call it when traffic is quiet.
func (pl *Pipeline) Tick(ts int64) {
	if ts > pl.now {
		pl.now = ts
	}
	pl.tr.Advance(ts)
	pl.release()
}

// release moves the streaming diagnoser's clock (see diagnose.Options.Stream)
// and hands over the proxy errors that settled. A batch diagnoser has
// nothing to release before Close.
func (pl *Pipeline) release() {
	if !pl.opt.Diagnose.Stream {
		return
	}
	if n := pl.dg.Pending(); pl.dg.Advance(pl.now) && pl.opt.OnIncident != nil {
		for _, inc := range pl.dg.Since(n) {
			pl.opt.OnIncident(inc)
		}
	}
}

// Close finishes every connection and returns the incidents and stats.
func (pl *Pipeline) Close() ([]*diagnose.Incident, Stats) {
	pl.flushLT()
	pl.tr.Flush()
	incs := pl.dg.Finish()
	if pl.opt.Diagnose.Stream && pl.opt.OnIncident != nil {
		for _, inc := range incs {
			pl.opt.OnIncident(inc)
		}
	}
	pl.stats.Track = pl.tr.Stats()
	pl.stats.countIncidents(pl.dg)
	return incs, pl.stats
}

// countIncidents copies dg's counts of incidents per cause, kept in detail
// or not.
func (st *Stats) countIncidents(dg *diagnose.Diagnoser) {
	st.Incidents = map[cause.ID]int{}
	for id, n := range dg.Counts() {
		st.Incidents[id] = n
	}
	st.NotDetailed = dg.Dropped()
}

// Frames asked of a batch source at once. A frame's bytes are read (its
// header, to find its length) when the batch is taken and again when it is
// handled: in a small batch they are still in the level-1 cache then. On
// the bench capture one goroutine took 0.89-0.97 s with batches of 1,
// 0.94-0.97 with 8, 0.98-1.07 with 32 and 1.08-1.17 s with 256, where
// tracking 256 packets between the two reads evicts them; the sharded
// reader, which only copies each frame between, 0.55-0.57 s with 8 and
// 0.57-0.65 with 256.
const (
	readBatchOne   = 1 // one pipeline
	readBatchShard = 8 // the reader of a sharded run
)

// batchSource is a source that can hand over several frames per call
// (pcapio.Reader): the frames of one batch stay valid together, until the
// next call.
type batchSource interface {
	NextBatch(fs []source.Frame) (int, error)
}

// readAll calls fn for every run of frames of src, the first numbered
// first (from 1), and returns the error that stopped it (nil at the end of
// input). A batch source gives runs of up to batch frames, any other one
// frame at a time; fn must be done with a run when it returns. With
// fault set (a mapped source, see mappedFault), a memory fault while
// touching a frame is recovered and fault's error returned, counting the
// frames of the runs fn returned from.
func readAll(src source.Source, batch int, fault func(any) error, fn func(fs []source.Frame, first uint64)) (err error) {
	var num, done uint64 // done: frames of the runs fn returned from
	if fault != nil {
		defer func() {
			if v := recover(); v != nil {
				if err = fault(v); err == nil {
					panic(v)
				}
				err = fmt.Errorf("after %d packets: %w", done, err)
			}
		}()
	}
	bs, _ := src.(batchSource)
	fs := make([]source.Frame, batch)
	for {
		n := 1
		var err error
		if bs != nil {
			n, err = bs.NextBatch(fs)
		} else {
			err = src.Next(&fs[0])
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("after %d packets: %w", num, err)
		}
		fn(fs[:n], num+1)
		num += uint64(n)
		done = num
	}
}

// feedAll is readAll's fn for one pipeline.
func (pl *Pipeline) feedAll(fs []source.Frame, first uint64) {
	for i := range fs {
		pl.Feed(&fs[i], first+uint64(i))
	}
}

// mappedFault returns the Fault method of a source whose frames point into
// a file mapped into memory (pcapio.OpenMapped), where touching a frame can
// fault if the file shrinks, and nil for any other source.
func mappedFault(src source.Source) func(any) error {
	type mapped interface {
		Mapped() bool
		Fault(v any) error
	}
	if m, ok := src.(mapped); ok && m.Mapped() {
		return m.Fault
	}
	return nil
}

// Tracked returns the tracker's counters so far (live connections,
// finished, evicted, ...).
func (pl *Pipeline) Tracked() conntrack.Stats { return pl.tr.Stats() }

// Diagnoser returns the pipeline's diagnoser, for inspection.
func (pl *Pipeline) Diagnoser() *diagnose.Diagnoser { return pl.dg }

// Run reads src to the end through a pipeline. A read error after some
// frames is returned together with the results for what was read.
//
// With more than one CPU, and no OnConn or OnIncident callback (whose
// order would then depend on goroutine timing), connections are tracked
// in shards on several goroutines; the results are the same as on one
// goroutine, except where noted on runSharded: the input is read once and
// its frames handed to the shards.
//
// A source whose file is mapped into memory (pcapio.OpenMapped) is read
// under debug.SetPanicOnFault: if the file shrinks while it is read, the
// run stops with an error saying so, and the results cover what was read.
func Run(src source.Source, opt Options) ([]*diagnose.Incident, Stats, error) {
	fault := mappedFault(src)
	if fault != nil {
		// A mapped file that shrinks faults: as a panic to recover, not
		// the end of the program (see pcapio.OpenMapped).
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	}
	if n := opt.workers(); n > 1 {
		return runSharded(src, fault, opt, n)
	}
	pl := NewPipeline(opt)
	rerr := readAll(src, readBatchOne, fault, pl.feedAll)
	incs, st := pl.Close()
	return incs, st, rerr
}
