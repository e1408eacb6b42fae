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

// BenchmarkStages splits the cost per packet of the pipeline on one
// goroutine: reading, then decoding, then tracking (without diagnosis), over
// the capture named by RSTSCOPE_BENCH_PCAP.
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
				tr := conntrack.New(conntrack.Config{}, func(*conntrack.Conn) {})
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
