package pcapio

import (
	"io"
	"os"
	"testing"

	"github.com/rstscope/rstscope/internal/source"
)

// BenchmarkReadCaptureFile reads the capture file named by
// RSTSCOPE_BENCH_PCAP from start to end per op, the way Open does (mapped,
// if it can be) and through the buffer, and reports ns/packet. Warm the
// page cache first (cat FILE >/dev/null).
func BenchmarkReadCaptureFile(b *testing.B) {
	path := os.Getenv("RSTSCOPE_BENCH_PCAP")
	if path == "" {
		b.Skip("RSTSCOPE_BENCH_PCAP is not set")
	}
	for _, bc := range []struct {
		name string
		o    mapOpts
	}{
		{"Open", mapOpts{minSize: mmapMinSize, window: mmapWindow}},
		{"buffered", mapOpts{minSize: -1}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var f source.Frame
			packets := 0
			for b.Loop() {
				r, err := open(path, nil, bc.o)
				if err != nil {
					b.Fatal(err)
				}
				for {
					if err := r.Next(&f); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
					packets++
				}
				r.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(packets), "ns/packet")
		})
	}
}
