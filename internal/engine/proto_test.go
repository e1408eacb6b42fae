package engine_test

import (
	"errors"
	"io"
	"os"
	"testing"

	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/pcapio"
	"github.com/rstscope/rstscope/internal/source"
)

type pbatch struct {
	p     [256]decode.Parsed
	num   [256]uint64
	ts    [256]int64
	n     int
	arena []byte
}

func BenchmarkProtoShard(b *testing.B) {
	path := os.Getenv("RSTSCOPE_BENCH_PCAP")
	if path == "" {
		b.Skip("set RSTSCOPE_BENCH_PCAP")
	}
	const shards = 2
	var pkts uint64
	for i := 0; i < b.N; i++ {
		rd, _ := pcapio.Open(path, nil)
		var f source.Frame
		var chans [shards]chan *pbatch
		var free [shards]chan *pbatch
		done := make(chan bool)
		for s := 0; s < shards; s++ {
			chans[s] = make(chan *pbatch, 8)
			free[s] = make(chan *pbatch, 8)
			for j := 0; j < 8; j++ {
				free[s] <- &pbatch{arena: make([]byte, 0, 256*256)}
			}
			go func(s int) {
				tr := conntrack.New(conntrack.Config{}, func(*conntrack.Conn) {})
				for bt := range chans[s] {
					for k := 0; k < bt.n; k++ {
						tr.Add(&bt.p[k], bt.num[k], bt.ts[k])
					}
					bt.n = 0
					bt.arena = bt.arena[:0]
					free[s] <- bt
				}
				tr.Flush()
				done <- true
			}(s)
		}
		var cur [shards]*pbatch
		for s := range cur {
			cur[s] = <-free[s]
		}
		var num uint64
		for {
			if err := rd.Next(&f); err != nil {
				if !errors.Is(err, io.EOF) {
					b.Fatal(err)
				}
				break
			}
			num++
			pkts++
			bt0 := cur[0]
			_ = bt0
			var p decode.Parsed
			p.Decode(f.LinkType, f.Data)
			if p.Status != decode.OK {
				continue
			}
			h := p.SrcWords[1] ^ p.DstWords[1] ^ uint64(p.SrcPort^p.DstPort)
			h *= 0x9e3779b97f4a7c15
			s := int(h >> 63)
			bt := cur[s]
			k := bt.n
			bt.p[k] = p
			if len(p.Payload) > 0 {
				st := len(bt.arena)
				bt.arena = append(bt.arena, p.Payload...)
				bt.p[k].Payload = bt.arena[st:len(bt.arena):len(bt.arena)]
			}
			bt.num[k], bt.ts[k] = num, f.Timestamp
			bt.n++
			if bt.n == len(bt.p) {
				chans[s] <- bt
				cur[s] = <-free[s]
			}
		}
		for s := range cur {
			chans[s] <- cur[s]
			close(chans[s])
		}
		for s := 0; s < shards; s++ {
			<-done
		}
		rd.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pkts), "ns/pkt")
}
