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

// BenchmarkTrackInMemory times only the tracker over pre-decoded packets.
func BenchmarkTrackInMemory(b *testing.B) {
	path := os.Getenv("RSTSCOPE_BENCH_PCAP")
	if path == "" {
		b.Skip("set RSTSCOPE_BENCH_PCAP")
	}
	rd, _ := pcapio.Open(path, nil)
	var f source.Frame
	var ps []decode.Parsed
	var ts []int64
	for len(ps) < 600000 {
		if err := rd.Next(&f); err != nil {
			if !errors.Is(err, io.EOF) {
				b.Fatal(err)
			}
			break
		}
		var p decode.Parsed
		p.Decode(f.LinkType, f.Data)
		if p.Status != decode.OK {
			continue
		}
		p.Payload = append([]byte(nil), p.Payload...)
		ps = append(ps, p)
		ts = append(ts, f.Timestamp)
	}
	rd.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tr := conntrack.New(conntrack.Config{}, func(*conntrack.Conn) {})
		for k := range ps {
			tr.Add(&ps[k], uint64(k+1), ts[k])
		}
		tr.Flush()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ps)), "ns/pkt")
}
