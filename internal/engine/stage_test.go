package engine_test

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/pcapio"
	"github.com/rstscope/rstscope/internal/source"
)

func BenchmarkStages(b *testing.B) {
	path := os.Getenv("RSTSCOPE_BENCH_PCAP")
	if path == "" {
		b.Skip("set RSTSCOPE_BENCH_PCAP")
	}
	for _, stage := range []string{"read", "decode", "track"} {
		b.Run(stage, func(b *testing.B) {
			var pkts uint64
			for i := 0; i < b.N; i++ {
				rd, _ := pcapio.Open(path, nil)
				var f source.Frame
				var p decode.Parsed
				tr := conntrack.New(conntrack.Config{Linger: lingerBench()}, func(*conntrack.Conn) {})
				for {
					if err := rd.Next(&f); err != nil {
						if !errors.Is(err, io.EOF) {
							b.Fatal(err)
						}
						break
					}
					pkts++
					if stage == "read" {
						continue
					}
					p.Decode(f.LinkType, f.Data)
					if stage == "decode" || p.Status != decode.OK {
						continue
					}
					tr.Add(&p, pkts, f.Timestamp)
				}
				tr.Flush()
				rd.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pkts), "ns/pkt")
		})
	}
}

func lingerBench() int64 {
	if s := os.Getenv("LINGER"); s != "" {
		d, _ := time.ParseDuration(s)
		return int64(d)
	}
	return 0
}
