package engine

import (
	"io"
	"sync"

	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/source"
)

// Sharded tracking. The reading goroutine decodes every frame, keeps the
// capture's statistics, and hands each TCP packet, in batches, to the
// shard that owns its connection (a hash of the 4-tuple that does not
// depend on direction). Each shard is a pipeline of its own: a tracker and
// a diagnoser on their own goroutine. At the end the shards' diagnosers are
// merged, so proxy errors are tied to upstream failures in any shard, and
// their counters are added up.
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
	shardBatchLen = 2048 // packets per batch
	shardBatches  = 3    // batches in flight per shard
)

// shardBatch carries decoded packets to a shard; their payloads are copied
// into arena, since a source's frame is only valid until its next frame.
type shardBatch struct {
	n     int
	now   int64 // capture time reached by the reader when it was sent
	p     [shardBatchLen]decode.Parsed
	num   [shardBatchLen]uint64
	ts    [shardBatchLen]int64
	note  [shardBatchLen]string
	arena []byte
	sh    *shard
	rows  []byte        // rows of the connections finished while tracking it
	done  chan struct{} // tracked
}

type shard struct {
	pl   *Pipeline
	in   chan *shardBatch
	free []*shardBatch // tracked and written out: the reader's to fill
	cur  *shardBatch
}

// sent is the reader's queue of batches handed to shards, oldest first:
// a batch is reused only once it was tracked and its rows written, in this
// order.
type sent struct {
	q   []*shardBatch // at most shards × shardBatches
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
func shardOf(p *decode.Parsed, n int) int {
	h := p.SrcWords[0] ^ p.SrcWords[1] ^ p.DstWords[0] ^ p.DstWords[1] ^ uint64(p.SrcPort^p.DstPort)
	h ^= uint64(p.SrcPort) * uint64(p.DstPort) // keeps a<->b symmetric, breaks port-only patterns
	h *= 0x9e3779b97f4a7c15
	return int((h >> 32) * uint64(n) >> 32) // the top bits scaled to [0, n), no division
}

func runSharded(src source.Source, opt Options, n int) ([]*diagnose.Incident, Stats, error) {
	rd := NewPipeline(opt) // decodes and counts; its tracker stays empty
	perShard := opt.Track.MaxConns
	if perShard <= 0 {
		perShard = conntrack.DefaultMaxConns
	}
	perShard = max(perShard/n, 1) // the sum stays within the cap

	shards := make([]*shard, n)
	out := &sent{out: opt.RowsTo}
	var wg sync.WaitGroup
	for i := range shards {
		so := opt
		so.Track.MaxConns = perShard
		so.Progress = nil
		sh := &shard{pl: NewPipeline(so), in: make(chan *shardBatch, shardBatches)}
		for j := 0; j < shardBatches; j++ {
			sh.free = append(sh.free, &shardBatch{sh: sh, done: make(chan struct{}, 1)})
		}
		sh.cur = out.take(sh)
		shards[i] = sh
		wg.Add(1)
		go func() {
			defer wg.Done()
			sh.work()
		}()
	}

	st := &rd.stats
	guess := shards[0]
	rerr := readAll(src, func(f *source.Frame, num uint64) {
		// Decode straight into the next slot of the shard the previous
		// packet went to, and copy only when the guess was wrong.
		p := &guess.cur.p[guess.cur.n]
		if rd.count(f, p) {
			sh := shards[shardOf(p, n)]
			b := sh.cur
			k := b.n
			if sh != guess {
				b.p[k] = *p
				p = &b.p[k]
				guess = sh
			}
			if len(p.Payload) > 0 {
				at := len(b.arena)
				b.arena = append(b.arena, p.Payload...)
				p.Payload = b.arena[at:len(b.arena):len(b.arena)]
			}
			b.num[k], b.ts[k], b.note[k] = num, f.Timestamp, f.Comment
			b.n++
			if b.n == shardBatchLen {
				b.now = rd.now
				out.send(b)
				sh.cur = out.take(sh)
			}
		}
		if opt.Progress != nil && st.Frames&0xffff == 0 {
			opt.Progress(st.Frames)
		}
	})
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

	// Merge: one diagnoser correlates and orders everything.
	rd.flushLT()
	dg := shards[0].pl.dg
	for _, sh := range shards {
		if sh.pl.dg != dg {
			dg.Merge(sh.pl.dg)
		}
		st.Track.Add(sh.pl.tr.Stats())
		for k, v := range sh.pl.stats.States {
			st.States[k] += v
		}
		st.Resets += sh.pl.stats.Resets
	}
	incs := dg.Finish()
	st.countIncidents(dg)
	return incs, *st, rerr
}

// work tracks the batches of one shard.
func (sh *shard) work() {
	pl := sh.pl
	var swept int64
	for b := range sh.in {
		pl.rows = &b.rows
		for i := 0; i < b.n; i++ {
			if ts := b.ts[i]; ts > pl.now {
				pl.now = ts
			}
			pl.add(&b.p[i], b.num[i], b.ts[i], b.note[i])
		}
		// The reader's clock, not only this shard's packets, moves time on:
		// ended connections are finished on time even in a quiet shard.
		if b.now > pl.now {
			pl.now = b.now
		}
		if pl.now-swept >= 1e8 {
			pl.tr.Advance(pl.now)
			swept = pl.now
		}
		clear(b.note[:b.n])
		b.n, b.arena = 0, b.arena[:0]
		pl.rows = nil
		b.done <- struct{}{}
	}
}
