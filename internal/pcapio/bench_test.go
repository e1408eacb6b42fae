package pcapio

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/rstscope/rstscope/internal/source"
)

const benchPackets = 100_000

// benchFrames returns benchPackets Ethernet/IPv4/TCP frames of 54 to 1514
// bytes, about 400 on average, mostly small as in real traffic.
func benchFrames() []source.Frame {
	rng := rand.New(rand.NewPCG(1, 2))
	frames := make([]source.Frame, benchPackets)
	for i := range frames {
		size := 54
		switch p := rng.IntN(100); {
		case p < 20:
			size = 1514
		case p < 60:
			size = 54 + rng.IntN(600)
		}
		d := make([]byte, size)
		copy(d, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45})
		binary.BigEndian.PutUint16(d[16:], uint16(size-14))
		d[23] = 6 // TCP
		frames[i] = source.Frame{Timestamp: testTS + int64(i)*1000, Data: d, OrigLen: size}
	}
	return frames
}

func benchPcap(b *testing.B) []byte {
	var buf bytes.Buffer
	w, _ := NewPcapWriter(&buf, source.LinkEthernet, 0)
	for _, f := range benchFrames() {
		w.WritePacket(&f)
	}
	w.Flush()
	return buf.Bytes()
}

func benchPcapng(b *testing.B) []byte {
	var buf bytes.Buffer
	w, _ := NewNgWriter(&buf)
	w.AddInterface(source.LinkEthernet, 0, "eth0")
	for _, f := range benchFrames() {
		w.WritePacket(0, &f)
	}
	w.Flush()
	return buf.Bytes()
}

// benchPerPacket reads packets from an endless replay of data (header
// once, then its records over and over), one packet per b.N: ns/op is
// ns/packet and allocs/op is allocations per packet.
func benchPerPacket(b *testing.B, data []byte, headLen int) {
	r, err := NewReader(&cycle{head: data[:headLen], body: data[headLen:]})
	if err != nil {
		b.Fatal(err)
	}
	var f source.Frame
	var bytes int64
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Next(&f); err != nil {
			b.Fatal(err)
		}
		bytes += int64(len(f.Data))
	}
	b.SetBytes(bytes / int64(b.N))
}

// BenchmarkReadPcap measures the hot path: one op is one packet.
func BenchmarkReadPcap(b *testing.B) {
	benchPerPacket(b, benchPcap(b), pcapFileHeaderLen)
}

// BenchmarkReadPcapng is BenchmarkReadPcap for enhanced packet blocks.
func BenchmarkReadPcapng(b *testing.B) {
	data := benchPcapng(b)
	r, _ := NewReader(bytes.NewReader(data))
	var f source.Frame
	r.Next(&f) // the section header and interface come before the first packet
	benchPerPacket(b, data, int(f.Offset))
}

// BenchmarkReadFile reads the whole in-memory file per op, the way the
// analyzer does, and reports ns/packet.
func BenchmarkReadFile(b *testing.B) {
	for _, bc := range []struct {
		name string
		data []byte
	}{
		{"pcap", benchPcap(b)},
		{"pcapng", benchPcapng(b)},
		{"gzip+pcap", gz(benchPcap(b))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var f source.Frame
			for b.Loop() {
				r, err := NewReader(bytes.NewReader(bc.data))
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for {
					if err := r.Next(&f); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
					n++
				}
				if n != benchPackets {
					b.Fatalf("%d packets, want %d", n, benchPackets)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchPackets), "ns/packet")
		})
	}
}
