package engine

import (
	"os"
	"testing"

	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/pcapio"
	"github.com/rstscope/rstscope/internal/source"
)

// The benchmarks run over the capture named by RSTSCOPE_BENCH_PCAP, e.g. one
// made by ../shared/bench/make-capture.sh, and report ns per packet.

// benchCapture returns the capture's path, or skips.
func benchCapture(b *testing.B) string {
	path := os.Getenv("RSTSCOPE_BENCH_PCAP")
	if path == "" {
		b.Skip("set RSTSCOPE_BENCH_PCAP to a capture file")
	}
	return path
}

// eachFrame opens path and calls fn for every frame.
func eachFrame(b *testing.B, path string, fn func(f *source.Frame, num uint64)) {
	rd, err := pcapio.Open(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer rd.Close()
	err = readAll(rd, readBatchOne, nil, func(fs []source.Frame, first uint64) {
		for i := range fs {
			fn(&fs[i], first+uint64(i))
		}
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPipelineFile runs the whole pipeline (read, decode, track,
// diagnose), as analyze does: "mapped" on the file mapped into memory
// (pcapio.OpenMapped, what analyze uses for a file), "read" through read
// calls (as stdin is read).
func BenchmarkPipelineFile(b *testing.B) {
	path := benchCapture(b)
	for _, mode := range []string{"mapped", "read"} {
		b.Run(mode, func(b *testing.B) {
			var pkts uint64
			for i := 0; i < b.N; i++ {
				var rd *pcapio.Reader
				var err error
				if mode == "mapped" {
					rd, err = pcapio.OpenMapped(path, nil)
				} else {
					rd, err = pcapio.Open(path, nil)
				}
				if err != nil {
					b.Fatal(err)
				}
				_, st, err := Run(rd, Options{})
				rd.Close()
				if err != nil {
					b.Fatal(err)
				}
				pkts += st.Frames
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pkts), "ns/pkt")
		})
	}
}

// BenchmarkStages splits the cost per packet of the pipeline on one
// goroutine: reading, then decoding, then tracking (without diagnosis).
func BenchmarkStages(b *testing.B) {
	path := benchCapture(b)
	for _, stage := range []string{"read", "decode", "track"} {
		b.Run(stage, func(b *testing.B) {
			var pkts uint64
			for i := 0; i < b.N; i++ {
				var p decode.Parsed
				tr := conntrack.New(conntrack.Config{}, func(*conntrack.Conn) {})
				eachFrame(b, path, func(f *source.Frame, num uint64) {
					pkts++
					if stage == "read" {
						return
					}
					p.Decode(f.LinkType, f.Data)
					if stage == "track" && p.Status == decode.OK {
						tr.Add(&p, num, f.Timestamp)
					}
				})
				tr.Flush()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pkts), "ns/pkt")
		})
	}
}

// BenchmarkTrackInMemory times the tracker alone, over the first 600000 TCP
// packets decoded in memory beforehand.
func BenchmarkTrackInMemory(b *testing.B) {
	var ps []decode.Parsed
	var ts []int64
	eachFrame(b, benchCapture(b), func(f *source.Frame, num uint64) {
		var p decode.Parsed
		if p.Decode(f.LinkType, f.Data); p.Status != decode.OK || len(ps) >= 600000 {
			return
		}
		p.Payload = append([]byte(nil), p.Payload...)
		ps = append(ps, p)
		ts = append(ts, f.Timestamp)
	})
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
