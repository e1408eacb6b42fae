package engine_test

import (
	"os"
	"testing"

	"github.com/rstscope/rstscope/internal/engine"
	"github.com/rstscope/rstscope/internal/pcapio"
)

// BenchmarkPipelineFile runs the whole pipeline (read, decode, track,
// diagnose) over the capture named by RSTSCOPE_BENCH_PCAP, e.g. one made by
// ../shared/bench/make-capture.sh. It reports ns per packet.
func BenchmarkPipelineFile(b *testing.B) {
	path := os.Getenv("RSTSCOPE_BENCH_PCAP")
	if path == "" {
		b.Skip("set RSTSCOPE_BENCH_PCAP to a capture file")
	}
	var pkts uint64
	for i := 0; i < b.N; i++ {
		rd, err := pcapio.Open(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		_, st, err := engine.Run(rd, engine.Options{})
		rd.Close()
		if err != nil {
			b.Fatal(err)
		}
		pkts += st.Frames
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pkts), "ns/pkt")
}
