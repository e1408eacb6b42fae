package engine

import (
	"io"
	"sync"

	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/hugepage"
	"github.com/rstscope/rstscope/internal/source"
)

// Sharded tracking. The reading goroutine reads every frame, keeps the
// statistics that need no decoding, and hands each frame, in batches, to the
// shard that owns its connection (a hash of the 4-tuple that does not
// depend on direction, read by decode.PeekFlow without decoding the rest).
// Each shard is a pipeline of its own on its own goroutine: it decodes its
// frames, counts what they are, and tracks and diagnoses them. Frames that
// PeekFlow cannot place are decoded by the reader to find their flow; those
// that turn out not to be TCP (or malformed) it counts itself. At the end the shards' diagnosers
// are merged, so proxy errors are tied to upstream failures in any shard,
// and their counters are added up.
//
// The reader copies the raw frame, not a decoded packet: a frame is about
// as long as the decoded struct it would become, and decoding it on the
// shard's goroutine takes that work off the reader, which every packet
// passes through (on the bench capture the reader alone went from about 48
// to under 30 ns per packet; see docs/design.md). It copies from a file
// mapped into memory too: a shard reading its frames densely from its own
// batch was faster than one taking them in place from the mapping, where
// they lie between the other shards' (see docs/design.md, "Reading a file
// in place").
//
// What a shard sees of a connection is exactly what one tracker would see,
// in the same order, and connection IDs are packet numbers, so connections,
// incidents and their order are the same as on one goroutine. What differs:
// the connection cap (Config.MaxConns) applies per shard, split evenly, and
// the peak of live connections is the sum of the shards' peaks.
//
// Rows (Options.Row) are made by the shards, into the batch they were
// tracking when the connection finished, and written by the reading
// goroutine in the order it sent the batches; at the end it finishes the
// connections still open itself, shard after shard. That order depends only
// on the input and the number of shards, not on timing; it is not the order
// one goroutine would give, since a shard's clock moves only with its own
// packets.

const (
	shardBatchLen = 2048    // frames per batch at most
	shardArenaLen = 1 << 18 // and this many bytes of frames: a batch is sent when either is reached
	shardBatches  = 12      // batches in flight per shard
	// With rows to make (Options.Row) fewer: each batch keeps a row buffer
	// as large as the largest sweep it carried, and 12 took --json on the
	// bench capture to 94-103 MB (8: 88-98 MB, 6: 83-90 MB, as fast).
	shardBatchesRows = 6
)

// shardFrame is one frame of a batch: its bytes are the batch's arena from
// the previous frame's end to end.
type shardFrame struct {
	ts  int64
	num uint64
	end uint32
	lt  uint32
}

// shardBatch carries frames to a shard, copied into arena, since a
// source's frame is only valid until its next frame.
type shardBatch struct {
	n   int
	now int64 // capture time reached by the reader when it was sent
	fr  [shardBatchLen]shardFrame
	// note holds the frames' comments, read and cleared only when notes
	// (the frames with one) is not 0: nearly no batch has any, and the
	// per-frame read of a 16-byte slot and the clear of 32 KiB after each
	// batch cost about 1% (0.64 -> 0.63 s, 10 alternating runs).
	note  [shardBatchLen]string
	notes int
	arena []byte // len(arena) is the capacity: used is how much is filled
	used  int
	sh    *shard
	rows  []byte        // rows of the connections finished while tracking it
	done  chan struct{} // tracked
}

// add copies a frame's bytes into the arena, growing it (apart from the
// others) for a frame longer than the room left (more than 64 KiB, since a
// batch is sent once shardArenaLen bytes are filled). A fixed arena and a
// count spare append's write of the slice header (and its write barrier)
// on every frame.
func (b *shardBatch) add(data []byte) {
	if len(b.arena)-b.used < len(data) {
		b.arena = append(b.arena[:b.used], data...)
		b.arena = b.arena[:cap(b.arena)]
	} else {
		copy(b.arena[b.used:], data)
	}
	b.used += len(data)
}

type shard struct {
	pl   *Pipeline
	in   chan *shardBatch
	free []*shardBatch // tracked and written out: the reader's to fill
	cur  *shardBatch
}

// arenaCap is the room of a batch's arena: a batch is sent once
// shardArenaLen bytes are filled, so a frame of up to 64 KiB always fits.
const arenaCap = shardArenaLen + 64<<10

// newShard makes a shard tracking into pl with batches batches to fill.
// Their arenas are one allocation, advised to the kernel for transparent
// huge pages (hugepage.Alloc): the reader writes and the shard reads
// 3.8 MB of them over and over (12 batches), 960 pages of 4 KiB that
// missed the TLB. On the bench capture, medians of alternating runs in
// small and in huge pages: 0.645 against 0.61 s (8 runs each), then 0.58
// against 0.575 s (12 runs each), for 2-3 MB more at the peak.
func newShard(pl *Pipeline, batches int) *shard {
	sh := &shard{pl: pl, in: make(chan *shardBatch, batches)}
	arenas := hugepage.Alloc(batches * arenaCap)
	for j := 0; j < batches; j++ {
		a := arenas[j*arenaCap : (j+1)*arenaCap : (j+1)*arenaCap]
		sh.free = append(sh.free, &shardBatch{sh: sh, done: make(chan struct{}, 1), arena: a})
	}
	return sh
}

// sent is the reader's queue of batches handed to shards, oldest first:
// a batch is reused only once it was tracked and its rows written, in this
// order.
type sent struct {
	q   []*shardBatch // at most shards × batches in flight
	out io.Writer     // Options.RowsTo
}

// retire waits for the oldest batch sent, writes its rows and gives it back
// to its shard.
func (s *sent) retire() {
	b := s.q[0]
	s.q[0] = nil
	s.q = s.q[1:]
	<-b.done
	if len(b.rows) > 0 {
		s.out.Write(b.rows)
	}
	b.rows = b.rows[:0]
	b.sh.free = append(b.sh.free, b)
}

// take returns a batch for sh to fill, retiring older ones until one is
// free.
func (s *sent) take(sh *shard) *shardBatch {
	for len(sh.free) == 0 {
		s.retire()
	}
	b := sh.free[len(sh.free)-1]
	sh.free = sh.free[:len(sh.free)-1]
	return b
}

// send hands b to its shard.
func (s *sent) send(b *shardBatch) {
	s.q = append(s.q, b)
	b.sh.in <- b
}

// shardOf picks a shard from the connection's endpoints; swapping them gives
// the same shard.
func shardOf(f *decode.Flow, n int) int {
	h := f.SrcWords[0] ^ f.SrcWords[1] ^ f.DstWords[0] ^ f.DstWords[1] ^ uint64(f.SrcPort^f.DstPort)
	h ^= uint64(f.SrcPort) * uint64(f.DstPort) // keeps a<->b symmetric, breaks port-only patterns
	h *= 0x9e3779b97f4a7c15
	return int((h >> 32) * uint64(n) >> 32) // the top bits scaled to [0, n), no division
}

// perShardConns is the connection cap of each of n shards: the sum stays
// within Options.Track.MaxConns.
func perShardConns(opt Options, n int) int {
	c := opt.Track.MaxConns
	if c <= 0 {
		c = conntrack.DefaultMaxConns
	}
	return max(c/n, 1)
}

// runSharded is Run on n shards. fault, if set, turns a fault while the
// reader touches a mapped input into an error (see readAll); the shards
// touch only their batches.
func runSharded(src source.Source, fault func(any) error, opt Options, n int) ([]*diagnose.Incident, Stats, error) {
	rd := NewPipeline(opt) // counts frames; its tracker stays empty
	perShard := perShardConns(opt, n)

	shards := make([]*shard, n)
	out := &sent{out: opt.RowsTo}
	batches := shardBatches
	if opt.Row != nil {
		batches = shardBatchesRows
	}
	var wg sync.WaitGroup
	for i := range shards {
		so := opt
		so.Track.MaxConns = perShard
		so.Progress = nil
		sh := newShard(NewPipeline(so), batches)
		sh.cur = out.take(sh)
		shards[i] = sh
		wg.Add(1)
		go func() {
			defer wg.Done()
			sh.work()
		}()
	}

	d := &dealer{rd: rd, shards: shards, out: out, progress: opt.Progress}
	rerr := readAll(src, readBatchShard, fault, d.deal)
	for _, sh := range shards {
		sh.cur.now = rd.now
		out.send(sh.cur)
		close(sh.in)
	}
	for len(out.q) > 0 {
		out.retire()
	}
	wg.Wait()
	// The connections still open are finished here, shard after shard, so
	// that their rows go straight out in that order.
	for _, sh := range shards {
		sh.pl.now = rd.now
		sh.pl.tr.Flush()
	}

	rd.flushLT()
	pls := make([]*Pipeline, n)
	for i, sh := range shards {
		pls[i] = sh.pl
	}
	st := &rd.stats
	incs := merge(st, pls)
	return incs, *st, rerr
}

// dealer is the reading goroutine of a sharded run: it counts frames and
// deals them out to the shards that own them.
type dealer struct {
	rd       *Pipeline // counts frames; its tracker stays empty
	shards   []*shard
	out      *sent
	progress func(frames uint64)
	p        decode.Parsed // for frames PeekFlow leaves to Decode
}

// deal counts a run of frames, the first numbered first, and copies each
// into the batch of the shard that owns its connection, sending the
// batches that fill up.
func (d *dealer) deal(fs []source.Frame, first uint64) {
	rd, st := d.rd, &d.rd.stats
	before := st.Frames
	for i := range fs {
		f := &fs[i]
		rd.countFrame(f)
		var fl decode.Flow
		var si int
		if decode.PeekFlow(&fl, f.LinkType, f.Data) {
			si = shardOf(&fl, len(d.shards))
		} else if si = d.decodeFlow(f); si < 0 {
			continue
		}
		sh := d.shards[si]
		b := sh.cur
		b.add(f.Data)
		b.fr[b.n] = shardFrame{ts: f.Timestamp, num: first + uint64(i), end: uint32(b.used), lt: f.LinkType}
		if f.Comment != "" { // the slots are cleared once tracked
			b.note[b.n] = f.Comment
			b.notes++
		}
		b.n++
		if b.n == shardBatchLen || b.used >= shardArenaLen {
			b.now = rd.now
			d.out.send(b)
			sh.cur = d.out.take(sh)
		}
	}
	if d.progress != nil && st.Frames>>16 != before>>16 {
		d.progress(st.Frames)
	}
}

// decodeFlow finds the shard of a frame decode.PeekFlow could not place,
// by decoding it. A frame that is not a TCP segment (or is malformed) is
// counted here, and gives -1: no shard needs it.
func (d *dealer) decodeFlow(f *source.Frame) int {
	p := &d.p
	if p.Decode(f.LinkType, f.Data); p.Status != decode.OK {
		d.rd.countDecoded(p, f.Comment != "")
		return -1
	}
	fl := p.Flow()
	return shardOf(&fl, len(d.shards))
}

// work decodes and tracks the batches of one shard.
func (sh *shard) work() {
	pl := sh.pl
	var p decode.Parsed
	for b := range sh.in {
		pl.rows = &b.rows
		start := uint32(0)
		for i := 0; i < b.n; i++ {
			fr := &b.fr[i]
			p.Decode(fr.lt, b.arena[start:fr.end:fr.end])
			start = fr.end
			note := ""
			if b.notes > 0 {
				note = b.note[i]
			}
			pl.track(&p, fr.num, fr.ts, note)
		}
		// The reader's clock, not only this shard's packets, moves time on.
		if b.now > pl.now {
			pl.now = b.now
		}
		pl.advanceShard()
		if b.notes > 0 {
			clear(b.note[:b.n])
			b.notes = 0
		}
		b.n, b.used = 0, 0
		pl.rows = nil
		b.done <- struct{}{}
	}
}
