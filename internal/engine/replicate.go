package engine

import (
	"io"
	"sync"

	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/source"
)

// Replicated tracking (Options.ReadEach), for an input that can be read
// more than once (a capture file, source.Reopener). Each of n workers reads the whole input
// through a reader of its own, and decodes and tracks only the frames of
// its shard: the same direction-independent hash of the 4-tuple as
// runSharded, read by decode.PeekFlow without decoding the rest. Frames
// PeekFlow cannot place are decoded to find their flow; those that are not
// TCP go to worker 0. Nothing passes between the workers while they read.
//
// Why read the file n times: a frame read from the page cache costs about
// 13 ns, while handing it to another goroutine costs the reader a copy and
// the receiver cache misses on memory another CPU wrote. On one of this
// project's two-CPU machines, whose CPUs did not always share a cache, the
// hand-over cost more than the tracking it spread in some minutes; on
// another it was 20% faster in all of them, and is the default
// (docs/design.md has the numbers).
//
// Worker 0 also counts what needs no decoding (frames, bytes, link types,
// the time range) and calls Progress. Each worker's clock moves with every
// frame, its own or not, and its tracker is advanced every 100 ms of
// capture time, so ended connections are finished on time in every shard.
// As in runSharded, a shard sees exactly the packets one tracker would see
// for its connections, in the same order, so connections, incidents and
// their order are those of one goroutine; the connection cap is split
// between the shards.
//
// Rows (Options.Row) are collected per worker and handed to the writer
// every rowWindow frames, or sooner when a buffer is full (spillLen), each
// chunk marked with the frame it was handed on at. The writer merges them
// by that frame, worker 0's before worker 1's at the same frame: an order
// fixed by the input and n. The connections still open at the end come
// last, worker after worker.

// rowWindow is how many frames of rows a worker collects at most before
// handing them to the writer; rowBuffers buffers carry them.
const (
	rowWindow  = 1 << 13
	rowBuffers = 4
)

// rowChunk is one worker's rows made up to frame end (the end of input:
// the largest uint64).
type rowChunk struct {
	end  uint64
	rows []byte
}

type replica struct {
	pl     *Pipeline
	src    source.Source
	frames uint64 // frames read: the worker that read fewest reports its error
	err    error
	out    chan rowChunk // nil without Options.Row
	free   chan []byte   // row buffers given back by the writer
}

// runReplicated reads srcs (one per worker, all over the same input) on
// len(srcs) goroutines.
func runReplicated(srcs []source.Source, opt Options) ([]*diagnose.Incident, Stats, error) {
	n := len(srcs)
	perShard := perShardConns(opt, n)
	ws := make([]*replica, n)
	for i := range ws {
		so := opt
		so.Track.MaxConns = perShard
		so.Progress = nil
		w := &replica{pl: NewPipeline(so), src: srcs[i]}
		if opt.Row != nil {
			// A fixed set of buffers per worker: one being filled, the
			// rest queued or being written. A worker that runs ahead waits
			// for the writer instead of allocating, so memory stays flat
			// (allocating a buffer per window took the --json peak on the
			// bench capture from 80 to 150 MB).
			w.out = make(chan rowChunk, rowBuffers)
			w.free = make(chan []byte, rowBuffers)
			for range rowBuffers - 1 {
				w.free <- make([]byte, 0, spillLen+spillLen/4)
			}
		}
		ws[i] = w
	}
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.read(i, n, opt.Progress)
		}()
	}
	if opt.Row != nil {
		writeRows(ws, opt.RowsTo)
	}
	wg.Wait()

	// Worker 0's frame counts, then everyone's decoding counts, trackers
	// and diagnosers.
	ws[0].pl.flushLT()
	st := ws[0].pl.stats.frames()
	pls := make([]*Pipeline, n)
	rerr, fewest := ws[0].err, ws[0].frames
	for i, w := range ws {
		pls[i] = w.pl
		if w.err != nil && w.frames < fewest {
			rerr, fewest = w.err, w.frames
		}
	}
	incs := merge(&st, pls)
	return incs, st, rerr
}

// read is worker i of n: it reads every frame of its source and tracks
// those of its shard.
func (w *replica) read(i, n int, progress func(uint64)) {
	pl := w.pl
	var p decode.Parsed
	var rows []byte
	var at uint64 // the frame being read; at the end, the largest uint64
	handOn := func() {
		w.out <- rowChunk{end: at, rows: rows}
		rows = (<-w.free)[:0]
	}
	if w.out != nil {
		rows = make([]byte, 0, spillLen+spillLen/4)
		pl.rows = &rows
		pl.spill = handOn
	}
	nextWindow := uint64(rowWindow)
	w.err = readAll(w.src, func(f *source.Frame, num uint64) {
		w.frames, at = num, num
		if i == 0 {
			pl.countFrame(f)
			if progress != nil && num&0xffff == 0 {
				progress(num)
			}
		} else if f.Timestamp > pl.now {
			pl.now = f.Timestamp
		}
		if sh, decoded := shardFor(f, &p, n); sh == i {
			if !decoded {
				p.Decode(f.LinkType, f.Data)
			}
			pl.track(&p, num, f.Timestamp, f.Comment)
		}
		pl.advanceShard()
		if w.out != nil && num >= nextWindow {
			handOn()
			nextWindow = num + rowWindow
		}
	})
	at = ^uint64(0)
	pl.tr.Flush()
	if w.out != nil {
		w.out <- rowChunk{end: at, rows: rows}
		close(w.out)
	}
	pl.rows, pl.spill = nil, nil
}

// writeRows writes the workers' row chunks in window order, worker 0's
// first within a window: a merge on (end, worker). Every worker closes its
// channel at its end, so a worker that stops early (a read error) does not
// hold up the others.
func writeRows(ws []*replica, to io.Writer) {
	heads := make([]*rowChunk, len(ws))
	next := func(i int) {
		if c, ok := <-ws[i].out; ok {
			heads[i] = &c
		} else {
			heads[i] = nil
		}
	}
	for i := range ws {
		next(i)
	}
	for {
		min := -1
		for i, h := range heads {
			if h != nil && (min < 0 || h.end < heads[min].end) {
				min = i
			}
		}
		if min < 0 {
			return
		}
		if len(heads[min].rows) > 0 {
			to.Write(heads[min].rows)
		}
		ws[min].free <- heads[min].rows // never blocks: the worker's own buffer comes back
		next(min)
	}
}
