package pcapio

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/rstscope/rstscope/internal/source"
)

// testFrames covers what the writers must carry: nanosecond timestamps,
// truncated frames (OrigLen > len(Data)), an OrigLen below the captured
// length (fixed up), empty data, comments of every padding length.
var testFrames = []source.Frame{
	{Timestamp: testTS, Data: []byte("hello"), OrigLen: 5, Comment: "c"},
	{Timestamp: testTS + 1, Data: []byte("trunc"), OrigLen: 1500, Comment: "ab"},
	{Timestamp: testTS + 999_999_999, Data: []byte("orig too small"), OrigLen: 3, Comment: "abc"},
	{Timestamp: 0, Data: nil, OrigLen: 0, Comment: "abcd"},
	{Timestamp: 4_294_967_295_999_999_999, Data: bytes.Repeat([]byte{0xff}, 1023), OrigLen: 1023, Comment: "quote \" newline \n nul \x00 end"},
}

func TestPcapWriterRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewPcapWriter(&buf, source.LinkRaw, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range testFrames {
		if err := w.WritePacket(&testFrames[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r, frames, err := readAll(t, buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if r.Format() != "pcap (ns)" || !slices.Equal(r.LinkTypes(), []uint32{source.LinkRaw}) {
		t.Errorf("format %q, link types %v", r.Format(), r.LinkTypes())
	}
	if len(frames) != len(testFrames) {
		t.Fatalf("%d frames, want %d", len(frames), len(testFrames))
	}
	off := int64(24)
	for i, got := range frames {
		in := testFrames[i]
		want := frame{in.Timestamp, source.LinkRaw, 0, max(in.OrigLen, len(in.Data)), string(in.Data), "", off}
		if got != want {
			t.Errorf("frame %d:\n got %+v\nwant %+v", i, got, want)
		}
		off += 16 + int64(len(in.Data))
	}
}

func TestNgWriterRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewNgWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	eth, err := w.AddInterface(source.LinkEthernet, 0, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	sll, err := w.AddInterface(source.LinkSLL2, 4, "")
	if err != nil {
		t.Fatal(err)
	}
	if eth != 0 || sll != 1 {
		t.Fatalf("interface indexes %d %d, want 0 1", eth, sll)
	}
	for i := range testFrames {
		for _, iface := range []int{eth, sll} {
			if err := w.WritePacket(iface, &testFrames[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r, frames, err := readAll(t, buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if r.Format() != "pcapng" || !slices.Equal(r.LinkTypes(), []uint32{source.LinkEthernet, source.LinkSLL2}) {
		t.Errorf("format %q, link types %v", r.Format(), r.LinkTypes())
	}
	if len(frames) != 2*len(testFrames) {
		t.Fatalf("%d frames, want %d", len(frames), 2*len(testFrames))
	}
	for i, got := range frames {
		in := testFrames[i/2]
		data := in.Data
		want := frame{in.Timestamp, source.LinkEthernet, 0, max(in.OrigLen, len(data)), string(data), in.Comment, got.offset}
		if i%2 == 1 {
			data = data[:min(len(data), 4)] // snaplen 4
			want = frame{in.Timestamp, source.LinkSLL2, 1, max(in.OrigLen, len(in.Data)), string(data), in.Comment, got.offset}
		}
		if got != want {
			t.Errorf("frame %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
}

func TestWriterErrors(t *testing.T) {
	var buf bytes.Buffer
	ng, _ := NewNgWriter(&buf)
	if _, err := ng.AddInterface(70000, 0, ""); err == nil {
		t.Error("AddInterface accepted a link type over 16 bits")
	}
	if _, err := ng.AddInterface(1, -1, ""); err == nil {
		t.Error("AddInterface accepted a negative snaplen")
	}
	if err := ng.WritePacket(0, &source.Frame{}); err == nil {
		t.Error("WritePacket accepted an interface that was not added")
	}
	ng.AddInterface(1, 0, "")
	if err := ng.WritePacket(0, &source.Frame{Timestamp: -1}); !errors.Is(err, errTimestamp) {
		t.Errorf("negative timestamp: %v", err)
	}
	if err := ng.WritePacket(0, &source.Frame{Comment: string(make([]byte, 70000))}); err == nil {
		t.Error("WritePacket accepted a comment over 65535 bytes")
	}
	if err := ng.WritePacket(0, &source.Frame{Data: make([]byte, maxBlockLen)}); err == nil {
		t.Error("WritePacket accepted a packet larger than a block may be")
	}
	pw, _ := NewPcapWriter(&buf, 1, 0)
	if err := pw.WritePacket(&source.Frame{Timestamp: 1 << 62}); !errors.Is(err, errTimestamp) {
		t.Errorf("timestamp beyond 2106: %v", err)
	}
	if _, err := NewPcapWriter(&buf, 1, maxBlockLen+1); err == nil {
		t.Error("NewPcapWriter accepted a snaplen over 16 MiB")
	}
}

// TestWritersDoNotAllocate keeps saving evidence cheap in live watch.
func TestWritersDoNotAllocate(t *testing.T) {
	f := source.Frame{Timestamp: testTS, Data: make([]byte, 100), OrigLen: 100, Comment: "reset here"}
	ng, _ := NewNgWriter(discard{})
	ng.AddInterface(1, 0, "")
	pw, _ := NewPcapWriter(discard{}, 1, 0)
	if a := testing.AllocsPerRun(1000, func() { ng.WritePacket(0, &f) }); a != 0 {
		t.Errorf("NgWriter.WritePacket: %v allocations, want 0", a)
	}
	if a := testing.AllocsPerRun(1000, func() { pw.WritePacket(&f) }); a != 0 {
		t.Errorf("PcapWriter.WritePacket: %v allocations, want 0", a)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
