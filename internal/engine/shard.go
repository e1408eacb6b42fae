package engine

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/rstscope/rstscope/internal/cause"
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
}

type shard struct {
	pl   *Pipeline
	in   chan *shardBatch
	free chan *shardBatch
	cur  *shardBatch
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
	var wg sync.WaitGroup
	for i := range shards {
		so := opt
		so.Track.MaxConns = perShard
		so.Progress = nil
		sh := &shard{pl: NewPipeline(so), in: make(chan *shardBatch, shardBatches), free: make(chan *shardBatch, shardBatches)}
		for j := 0; j < shardBatches; j++ {
			sh.free <- &shardBatch{}
		}
		sh.cur = <-sh.free
		shards[i] = sh
		wg.Add(1)
		go func() {
			defer wg.Done()
			sh.work()
		}()
	}

	var f source.Frame
	var num uint64
	var rerr error
	st := &rd.stats
	guess := shards[0]
	for {
		err := src.Next(&f)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				rerr = fmt.Errorf("after %d packets: %w", num, err)
			}
			break
		}
		num++
		// Decode straight into the next slot of the shard the previous
		// packet went to, and copy only when the guess was wrong.
		p := &guess.cur.p[guess.cur.n]
		if rd.count(&f, p) {
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
				sh.in <- b
				sh.cur = <-sh.free
			}
		}
		if opt.Progress != nil && st.Frames&0xffff == 0 {
			opt.Progress(st.Frames)
		}
	}
	for _, sh := range shards {
		sh.cur.now = rd.now
		sh.in <- sh.cur
		close(sh.in)
	}
	wg.Wait()

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
	st.Incidents = map[cause.ID]int{}
	for id, c := range dg.Counts() {
		st.Incidents[id] = c
	}
	st.NotDetailed = dg.Dropped()
	return incs, *st, rerr
}

// work tracks the batches of one shard, then finishes its connections.
func (sh *shard) work() {
	pl := sh.pl
	var swept int64
	for b := range sh.in {
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
		if pl.now-swept >= 1e9 {
			pl.tr.Advance(pl.now)
			swept = pl.now
		}
		clear(b.note[:b.n])
		b.n, b.arena = 0, b.arena[:0]
		select {
		case sh.free <- b:
		default: // the last batch
		}
	}
	pl.tr.Flush()
}
