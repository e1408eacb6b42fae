package pcapio

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/rstscope/rstscope/internal/source"
)

const (
	testSec  = 1700000000
	testNano = 123456789
	testTS   = int64(testSec*1_000_000_000 + testNano)
)

func TestByteOrdersAndResolutions(t *testing.T) {
	payloads := []string{"first packet", "2nd", "the third packet, longer"}
	pcapOf := func(o order, nano bool) []byte {
		p := newPcapFile(o, nano, 65535, uint32(source.LinkEthernet))
		for i, d := range payloads {
			frac := uint32(testNano / 1000)
			if nano {
				frac = testNano
			}
			p.packet(testSec+uint32(i), frac, []byte(d))
		}
		return p.b
	}
	ngOf := func(o order) []byte {
		n := &ngFile{}
		n.shb(o)
		n.idb(uint16(source.LinkEthernet), 65535, n.opt(optTSResol, []byte{9}))
		for i, d := range payloads {
			n.epb(0, uint64(testTS+int64(i)*1e9), []byte(d), uint32(len(d)))
		}
		return n.b
	}
	tests := []struct {
		name   string
		data   []byte
		format string
		trunc  int64 // timestamps are truncated to this many ns
	}{
		{"pcap µs little endian", pcapOf(leOrder, false), "pcap", 1000},
		{"pcap µs big endian", pcapOf(beOrder, false), "pcap", 1000},
		{"pcap ns little endian", pcapOf(leOrder, true), "pcap (ns)", 1},
		{"pcap ns big endian", pcapOf(beOrder, true), "pcap (ns)", 1},
		{"pcapng little endian", ngOf(leOrder), "pcapng", 1},
		{"pcapng big endian", ngOf(beOrder), "pcapng", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, frames, err := readAll(t, tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Format(); got != tt.format {
				t.Errorf("Format() = %q, want %q", got, tt.format)
			}
			if got := r.LinkTypes(); !slices.Equal(got, []uint32{source.LinkEthernet}) {
				t.Errorf("LinkTypes() = %v, want [1]", got)
			}
			if len(frames) != len(payloads) {
				t.Fatalf("got %d frames, want %d", len(frames), len(payloads))
			}
			var prevOff int64
			for i, f := range frames {
				wantTS := (testTS + int64(i)*1e9) / tt.trunc * tt.trunc
				if f.ts != wantTS {
					t.Errorf("frame %d: timestamp %d, want %d", i, f.ts, wantTS)
				}
				if f.data != payloads[i] || f.origLen != len(payloads[i]) {
					t.Errorf("frame %d: data %q orig %d, want %q", i, f.data, f.origLen, payloads[i])
				}
				if f.linkType != source.LinkEthernet || f.iface != 0 || f.comment != "" {
					t.Errorf("frame %d: %+v", i, f)
				}
				if f.offset <= prevOff {
					t.Errorf("frame %d: offset %d not after %d", i, f.offset, prevOff)
				}
				prevOff = f.offset
			}
			if got := r.BytesRead(); got != int64(len(tt.data)) {
				t.Errorf("BytesRead() = %d, want %d", got, len(tt.data))
			}
		})
	}
}

func TestPcapOffsets(t *testing.T) {
	p := newPcapFile(leOrder, false, 65535, 1).packet(1, 0, []byte("abcd")).packet(2, 0, []byte("xy"))
	_, frames, err := readAll(t, p.b)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 2 || frames[0].offset != 24 || frames[1].offset != 24+16+4 {
		t.Errorf("offsets: %+v, want 24 and 44", frames)
	}
}

func TestPcapLengths(t *testing.T) {
	tests := []struct {
		name        string
		snaplen     uint32
		caplen      uint32
		orig        uint32
		wantOrig    int
		overSnaplen int
		wantErr     string
	}{
		{"normal", 65535, 100, 100, 100, 0, ""},
		{"snaplen-truncated", 64, 64, 1500, 1500, 0, ""},
		{"orig shorter than captured is fixed up", 65535, 100, 60, 100, 0, ""},
		{"over snaplen is tolerated and counted", 64, 200, 200, 200, 1, ""},
		{"caplen at the limit", 64, 262144, 262144, 262144, 1, ""},
		{"caplen over the limit", 65535, 262145, 262145, 0, 0, "record 1 at offset 24: captured length 262145 is larger than 262144"},
		{"huge caplen", 65535, 0xffffffff, 0, 0, 0, "captured length 4294967295"},
		{"large snaplen raises the limit", 1 << 20, 300000, 300000, 300000, 0, ""},
		{"snaplen 0 means the default limit", 0, 262144, 262144, 262144, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := make([]byte, min(tt.caplen, 1<<20))
			p := newPcapFile(leOrder, true, tt.snaplen, 1).record(1, 0, data, tt.caplen, tt.orig)
			r, frames, err := readAll(t, p.b)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				var fe *FormatError
				if !errors.As(err, &fe) {
					t.Errorf("error %T is not a *FormatError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(frames) != 1 || len(frames[0].data) != int(tt.caplen) || frames[0].origLen != tt.wantOrig {
				t.Fatalf("got %d frames, len %d orig %d; want 1, %d, %d", len(frames), len(frames[0].data), frames[0].origLen, tt.caplen, tt.wantOrig)
			}
			if got := r.OverSnaplen(); got != tt.overSnaplen {
				t.Errorf("OverSnaplen() = %d, want %d", got, tt.overSnaplen)
			}
		})
	}
}

func TestPcapLinkTypeFCSBits(t *testing.T) {
	// The upper bits of the header's network field carry the FCS length.
	p := newPcapFile(leOrder, false, 65535, 0x14000001).packet(1, 0, []byte("x"))
	r, frames, err := readAll(t, p.b)
	if err != nil {
		t.Fatal(err)
	}
	if frames[0].linkType != 1 || !slices.Equal(r.LinkTypes(), []uint32{1}) {
		t.Errorf("link type %d, LinkTypes %v; want 1", frames[0].linkType, r.LinkTypes())
	}
}

func TestPcapngInterfacesAndComments(t *testing.T) {
	for _, o := range []order{leOrder, beOrder} {
		n := &ngFile{}
		n.shb(o)
		n.idb(uint16(source.LinkEthernet), 65535)                                                  // µs by default
		n.idb(uint16(source.LinkRaw), 128, n.opt(2, []byte("tun0")), n.opt(optTSResol, []byte{3})) // ms
		n.epb(0, uint64(testTS/1000), []byte("eth frame"), 9, n.opt(optComment, []byte("first comment")), n.opt(optComment, []byte("second")))
		n.epb(1, uint64(testTS/1e6), []byte("raw packet"), 1400)
		n.epb(0, uint64(testTS/1000), []byte("no comment"), 10, n.opt(0x8001, []byte{1, 2, 3}))
		n.pb(1, uint64(testTS/1e6), []byte("obsolete pb"), 11, n.opt(optComment, []byte("pb comment\x00")))
		r, frames, err := readAll(t, n.b)
		if err != nil {
			t.Fatal(err)
		}
		want := []frame{
			{testTS / 1000 * 1000, source.LinkEthernet, 0, 9, "eth frame", "first comment", 0},
			{testTS / 1e6 * 1e6, source.LinkRaw, 1, 1400, "raw packet", "", 0},
			{testTS / 1000 * 1000, source.LinkEthernet, 0, 10, "no comment", "", 0},
			{testTS / 1e6 * 1e6, source.LinkRaw, 1, 11, "obsolete pb", "pb comment\x00", 0},
		}
		for i := range frames {
			frames[i].offset = 0
		}
		if !slices.Equal(frames, want) {
			t.Errorf("frames:\n got %+v\nwant %+v", frames, want)
		}
		if got := r.LinkTypes(); !slices.Equal(got, []uint32{source.LinkEthernet, source.LinkRaw}) {
			t.Errorf("LinkTypes() = %v, want [1 101]", got)
		}
	}
}

func TestPcapngSections(t *testing.T) {
	n := &ngFile{}
	n.shb(leOrder)
	n.idb(1, 0)
	n.idb(113, 0)
	n.epb(1, 5, []byte("s1 if1"), 6)
	n.block(5, []byte("interface statistics, skipped"))
	n.shb(beOrder) // new section: interfaces start again, other byte order
	n.idb(276, 0)
	n.block(0x40000bad, []byte("custom block, skipped"))
	n.epb(0, 7, []byte("s2 if0"), 6)
	good := len(n.b)
	n.epb(1, 8, []byte("s2 if1 does not exist"), 21)
	r, frames, err := readAll(t, n.b)
	if len(frames) != 2 || frames[0].iface != 1 || frames[0].linkType != 113 ||
		frames[1].iface != 0 || frames[1].linkType != 276 || frames[1].ts != 7000 {
		t.Errorf("frames %+v", frames)
	}
	if got := r.LinkTypes(); !slices.Equal(got, []uint32{1, 113, 276}) {
		t.Errorf("LinkTypes() = %v, want [1 113 276]", got)
	}
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Offset != int64(good) || fe.Record != 10 ||
		!strings.Contains(fe.Msg, "interface 1, but the section has 1") {
		t.Errorf("error %v, want interface out of range at record 10, offset %d", err, good)
	}
}

func TestPcapngSimplePacketBlock(t *testing.T) {
	n := &ngFile{}
	n.shb(leOrder)
	n.idb(101, 8, n.opt(optTSResol, []byte{9}))
	n.epb(0, 42, []byte("abc"), 3)
	n.spb(20, []byte("0123456789abcdefghij")) // cut to snaplen 8
	n.spb(2, []byte("xy"))                    // padded in the block; orig says 2
	_, frames, err := readAll(t, n.b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range frames {
		frames[i].offset = 0
	}
	want := []frame{
		{42, 101, 0, 3, "abc", "", 0},
		{42, 101, 0, 20, "01234567", "", 0},
		{42, 101, 0, 2, "xy", "", 0},
	}
	if !slices.Equal(frames, want) {
		t.Errorf("frames:\n got %+v\nwant %+v", frames, want)
	}
}

func TestPcapngTimestamps(t *testing.T) {
	tests := []struct {
		name  string
		opts  func(n *ngFile) [][]byte
		ticks uint64
		want  int64
	}{
		{"default µs", nil, 1_700_000_000_123_456, 1_700_000_000_123_456_000},
		{"10^-9", func(n *ngFile) [][]byte { return [][]byte{n.opt(optTSResol, []byte{9})} }, 1_700_000_000_123_456_789, 1_700_000_000_123_456_789},
		{"10^-0", func(n *ngFile) [][]byte { return [][]byte{n.opt(optTSResol, []byte{0})} }, 1_700_000_000, 1_700_000_000_000_000_000},
		{"10^-12", func(n *ngFile) [][]byte { return [][]byte{n.opt(optTSResol, []byte{12})} }, 1_700_000_000_123_456_789, 1_700_000_000_123_456},
		{"2^-20", func(n *ngFile) [][]byte { return [][]byte{n.opt(optTSResol, []byte{0x80 | 20})} }, 3<<20 + 1<<19, 3_500_000_000},
		{"2^-32", func(n *ngFile) [][]byte { return [][]byte{n.opt(optTSResol, []byte{0x80 | 32})} }, 1_700_000_000<<32 | 1<<30, 1_700_000_000_250_000_000},
		{"2^-0", func(n *ngFile) [][]byte { return [][]byte{n.opt(optTSResol, []byte{0x80})} }, 5, 5_000_000_000},
		{"2^-100 rounds to 0", func(n *ngFile) [][]byte { return [][]byte{n.opt(optTSResol, []byte{0x80 | 100})} }, 1 << 63, 0},
		{"10^-60 rounds to 0", func(n *ngFile) [][]byte { return [][]byte{n.opt(optTSResol, []byte{60})} }, 1 << 63, 0},
		{"if_tsoffset", func(n *ngFile) [][]byte {
			return [][]byte{n.opt(optTSOffset, n.o.AppendUint64(nil, 1_000_000_000)), n.opt(optTSResol, []byte{9})}
		}, 700_000_000_000_000_005, 1_700_000_000_000_000_005},
		{"negative if_tsoffset", func(n *ngFile) [][]byte {
			return [][]byte{n.opt(optTSOffset, n.o.AppendUint64(nil, ^uint64(0)))}
		}, 3_000_000, 2_000_000_000},
	}
	for _, tt := range tests {
		for _, o := range []order{leOrder, beOrder} {
			n := &ngFile{}
			n.shb(o)
			var opts [][]byte
			if tt.opts != nil {
				opts = tt.opts(n)
			}
			n.idb(1, 0, opts...)
			n.epb(0, tt.ticks, []byte("p"), 1)
			_, frames, err := readAll(t, n.b)
			if err != nil || len(frames) != 1 {
				t.Fatalf("%s: %d frames, error %v", tt.name, len(frames), err)
			}
			if frames[0].ts != tt.want {
				t.Errorf("%s: timestamp %d, want %d", tt.name, frames[0].ts, tt.want)
			}
		}
	}
}

func TestGzip(t *testing.T) {
	pcap := newPcapFile(beOrder, false, 65535, 1).packet(1, 2, []byte("hello")).packet(3, 4, []byte("world"))
	n := &ngFile{}
	n.shb(leOrder).idb(1, 0).epb(0, 1, []byte("ng"), 2, n.opt(optComment, []byte("c")))
	tests := []struct {
		name   string
		plain  []byte
		format string
		frames int
	}{
		{"pcap", pcap.b, "gzip+pcap", 2},
		{"pcapng", n.b, "gzip+pcapng", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			zw.Write(tt.plain)
			zw.Close()
			r, frames, err := readAll(t, z.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			_, plainFrames, _ := readAll(t, tt.plain)
			if r.Format() != tt.format || len(frames) != tt.frames || !slices.Equal(frames, plainFrames) {
				t.Errorf("format %q, frames %+v; want %q, %+v", r.Format(), frames, tt.format, plainFrames)
			}
			if got := r.BytesRead(); got != int64(z.Len()) {
				t.Errorf("BytesRead() = %d, want the compressed size %d", got, z.Len())
			}
		})
	}
}

func gz(b []byte) []byte {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b)
	zw.Close()
	return z.Bytes()
}

func TestErrors(t *testing.T) {
	pcap3 := newPcapFile(leOrder, false, 65535, 1).
		packet(1, 0, make([]byte, 40)).packet(2, 0, make([]byte, 40)).packet(3, 0, make([]byte, 40)).b
	ng := func(f func(n *ngFile)) []byte {
		n := &ngFile{}
		n.shb(leOrder).idb(1, 0)
		f(n)
		return n.b
	}
	const ngStart = 28 + 20 // SHB + IDB
	tests := []struct {
		name   string
		data   []byte
		frames int    // frames read before the error
		want   string // whole error text
		record int    // -1: not a FormatError
		offset int64
	}{
		{"empty", nil, 0, "not a capture file: empty input", -1, 0},
		{"text", []byte("<!DOCTYPE html><html>"), 0,
			`not a capture file: starts with 3c 21 44 4f 43 54 59 50 45 20 68 74 6d 6c 3e 3c ("<!DOCTYPE html><")`, -1, 0},
		{"short", []byte{0xd4, 0xc3}, 0, `not a capture file: starts with d4 c3 ("..")`, -1, 0},
		{"gzip of text", gz([]byte("hi")), 0, `not a capture file (inside gzip): starts with 68 69 ("hi")`, -1, 0},
		{"pcap header truncated", pcap3[:20], 0, "file header at offset 0: file ends inside the file header: have 20 of 24 bytes", 0, 0},
		{"pcap version 1", append(append([]byte{}, pcap3[:4]...), append([]byte{1, 0}, pcap3[6:]...)...), 0,
			"file header at offset 0: unsupported pcap version 1.4", 0, 0},
		{"pcap ends inside record header", pcap3[:24+2*56+7], 2,
			"record 3 at offset 136: file ends inside record 3: have 7 of 16 bytes", 3, 136},
		{"pcap ends inside record data", pcap3[:24+2*56+16+10], 2,
			"record 3 at offset 136: file ends inside record 3: have 26 of 56 bytes", 3, 136},
		{"gzipped pcap ends inside record", gz(pcap3[:24+56+30]), 1,
			"record 2 at offset 80: file ends inside record 2: have 30 of 56 bytes", 2, 80},
		{"gzip stream cut", gz(pcap3)[:60], -1, "", -2, 0},
		{"pcapng block too short", ng(func(n *ngFile) { n.b = leOrder.AppendUint32(n.b, 6); n.b = leOrder.AppendUint32(n.b, 8) }), 0,
			"record 3 at offset 48: block type 0x6 has invalid length 8 (want a multiple of 4 from 12 to 16777216)", 3, ngStart},
		{"pcapng block length not a multiple of 4", ng(func(n *ngFile) { n.b = leOrder.AppendUint32(n.b, 6); n.b = leOrder.AppendUint32(n.b, 33) }), 0,
			"record 3 at offset 48: block type 0x6 has invalid length 33 (want a multiple of 4 from 12 to 16777216)", 3, ngStart},
		{"pcapng block over 16 MiB", ng(func(n *ngFile) { n.b = leOrder.AppendUint32(n.b, 99); n.b = leOrder.AppendUint32(n.b, 16<<20+4) }), 0,
			"record 3 at offset 48: block type 0x63 has invalid length 16777220 (want a multiple of 4 from 12 to 16777216)", 3, ngStart},
		{"pcapng captured length beyond block", ng(func(n *ngFile) {
			n.epb(0, 1, []byte("ok"), 2)
			n.epb(0, 1, []byte("12345678"), 8)
			binary.LittleEndian.PutUint32(n.b[len(n.b)-20:], 1000) // the caplen field
		}), 1, "record 4 at offset 84: captured length 1000 exceeds the block (room for 8)", 4, ngStart + 36},
		{"pcapng block truncated", ng(func(n *ngFile) { n.epb(0, 1, []byte("12345678"), 8); n.b = n.b[:len(n.b)-5] }), 0,
			"record 3 at offset 48: file ends inside record 3: have 35 of 40 bytes", 3, ngStart},
		{"pcapng skipped block truncated", ng(func(n *ngFile) { n.block(5, make([]byte, 100)); n.b = n.b[:len(n.b)-1] }), 0,
			"record 3 at offset 48: file ends inside record 3: have 111 of 112 bytes", 3, ngStart},
		{"pcapng trailer mismatch", ng(func(n *ngFile) { n.epb(0, 1, []byte("x"), 1); n.b[len(n.b)-4]++ }), 0,
			"record 3 at offset 48: block type 0x6: trailing length 37 differs from leading length 36", 3, ngStart},
		{"pcapng interface out of range", ng(func(n *ngFile) { n.epb(7, 1, []byte("x"), 1) }), 0,
			"record 3 at offset 48: packet refers to interface 7, but the section has 1", 3, ngStart},
		{"pcapng option overruns block", ng(func(n *ngFile) { n.epb(0, 1, []byte("x"), 1, leOrder.AppendUint32(nil, 1|200<<16)) }), 0,
			"record 3 at offset 48: option 1 has length 200, but only 4 bytes are left in the block", 3, ngStart},
		{"pcapng bad byte-order magic", []byte("\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1b\x01\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\x1c\x00\x00\x00"), 0,
			"record 1 at offset 0: section header has byte-order magic 4d 3c 2b 1b, want 1a 2b 3c 4d in either order", 1, 0},
		{"pcapng version 2", []byte("\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a\x02\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\x1c\x00\x00\x00"), 0,
			"record 1 at offset 0: unsupported pcapng version 2.0", 1, 0},
		{"pcapng simple packet without interface", (&ngFile{}).shb(leOrder).spb(1, []byte("x")).b, 0,
			"record 2 at offset 28: simple packet block in a section without interfaces", 2, 28},
		{"pcapng tsresol of wrong length", (&ngFile{}).shb(leOrder).idb(1, 0, leOrder.AppendUint32(nil, 9|2<<16)).b, 0,
			"record 2 at offset 28: if_tsresol option has length 2, want 1", 2, 28},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tt.data))
			var frames []frame
			if err == nil {
				frames, err = drain(r)
				var f source.Frame
				if again := r.Next(&f); again != err {
					t.Errorf("second Next after the error returned %v, want the same error", again)
				}
			}
			if err == nil {
				t.Fatalf("no error, %d frames", len(frames))
			}
			if tt.frames >= 0 && len(frames) != tt.frames {
				t.Errorf("%d frames before the error, want %d", len(frames), tt.frames)
			}
			if tt.record == -2 && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("error %v does not wrap io.ErrUnexpectedEOF", err)
			}
			if tt.want != "" && err.Error() != tt.want {
				t.Errorf("error\n got %q\nwant %q", err, tt.want)
			}
			var fe *FormatError
			if isFE := errors.As(err, &fe); isFE != (tt.record != -1) {
				t.Fatalf("error %T %v: FormatError %v, want %v", err, err, isFE, tt.record != -1)
			}
			if fe != nil && tt.record >= 0 && (fe.Record != tt.record || fe.Offset != tt.offset) {
				t.Errorf("record %d offset %d, want %d %d", fe.Record, fe.Offset, tt.record, tt.offset)
			}
		})
	}
}

// TestSlowReader reads through a reader that hands out one byte at a time
// and one that fails on the second read, so that every refill path runs.
func TestSlowReader(t *testing.T) {
	n := &ngFile{}
	n.shb(leOrder).idb(1, 0)
	p := newPcapFile(leOrder, true, 0, 1)
	for i := range 300 {
		d := bytes.Repeat([]byte{byte(i)}, i*37%1500)
		n.epb(0, uint64(i), d, uint32(len(d)))
		p.packet(uint32(i), 0, d)
	}
	for _, data := range [][]byte{n.b, p.b, gz(n.b)} {
		_, want, err := readAll(t, data)
		if err != nil || len(want) != 300 {
			t.Fatalf("%d frames, %v", len(want), err)
		}
		r, err := NewReader(iotest.OneByteReader(bytes.NewReader(data)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := drain(r)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("one byte at a time: %d frames, %v; want the same %d frames", len(got), err, len(want))
		}
		r, err = NewReader(iotest.TimeoutReader(bytes.NewReader(data)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := drain(r); !errors.Is(err, iotest.ErrTimeout) {
			t.Errorf("failing reader: error %v, want one wrapping %v", err, iotest.ErrTimeout)
		} else if !regexp.MustCompile(`^record [0-9]+ at offset [0-9]+: read failed after [0-9]+ of [0-9]+ bytes: timeout$`).MatchString(err.Error()) {
			t.Errorf("failing reader: error %q does not say where it failed", err)
		}
	}
}

// TestLargeBlocks checks records larger than the default buffer.
func TestLargeBlocks(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16)
	n := &ngFile{}
	n.shb(beOrder).idb(1, 0).epb(0, 1, []byte("small"), 5).epb(0, 2, big, uint32(len(big))).epb(0, 3, []byte("after"), 5)
	p := newPcapFile(leOrder, false, 4<<20, 1).packet(1, 0, []byte("small")).packet(2, 0, big).packet(3, 0, []byte("after"))
	for _, data := range [][]byte{n.b, p.b} {
		_, frames, err := readAll(t, data)
		if err != nil {
			t.Fatal(err)
		}
		if len(frames) != 3 || frames[1].data != string(big) || frames[2].data != "after" {
			t.Errorf("large record not read back intact")
		}
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	data := newPcapFile(leOrder, false, 65535, 1).packet(1, 0, []byte("x")).b
	path := filepath.Join(dir, "a.pcap")
	os.WriteFile(path, data, 0o644)
	bad := filepath.Join(dir, "b.txt")
	os.WriteFile(bad, []byte("text"), 0o644)

	for _, tc := range []struct{ path, stdin string }{{path, ""}, {"-", string(data)}} {
		r, err := Open(tc.path, strings.NewReader(tc.stdin))
		if err != nil {
			t.Fatal(err)
		}
		frames, err := drain(r)
		if err != nil || len(frames) != 1 {
			t.Errorf("Open(%q): %d frames, %v", tc.path, len(frames), err)
		}
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		var f source.Frame
		if err := r.Next(&f); err == nil || err == io.EOF {
			t.Errorf("Next after Close returned %v, want an error", err)
		}
	}
	if _, err := Open(filepath.Join(dir, "missing"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Open(bad, nil); err == nil || !strings.HasPrefix(err.Error(), bad+": not a capture file") {
		t.Errorf("text file: %v, want it named", err)
	}
	if _, err := Open("-", strings.NewReader("nope")); err == nil || !strings.HasPrefix(err.Error(), "standard input: not a capture file") {
		t.Errorf("text on stdin: %v", err)
	}
}

// TestZeroAllocs checks the promise of the hot path: reading a packet
// without a comment allocates nothing.
func TestZeroAllocs(t *testing.T) {
	n := &ngFile{}
	n.shb(leOrder)
	n.idb(1, 0, n.opt(optTSResol, []byte{9}))
	head := len(n.b)
	for i := range 100 {
		n.epb(0, uint64(i), make([]byte, 60+i), 60+uint32(i), n.opt(2, []byte{0, 0, 0, 0})) // epb_flags
	}
	p := newPcapFile(beOrder, false, 65535, 1)
	for i := range 100 {
		p.packet(uint32(i), 0, make([]byte, 60+i))
	}
	for _, c := range []*cycle{
		{head: n.b[:head], body: n.b[head:]},
		{head: p.b[:24], body: p.b[24:]},
	} {
		r, err := NewReader(c)
		if err != nil {
			t.Fatal(err)
		}
		var f source.Frame
		var nextErr error
		allocs := testing.AllocsPerRun(50000, func() {
			if err := r.Next(&f); err != nil {
				nextErr = err
			}
		})
		if nextErr != nil {
			t.Fatal(nextErr)
		}
		if allocs != 0 {
			t.Errorf("%s: %v allocations per packet, want 0", r.Format(), allocs)
		}
	}
}

func TestPcapngInterfaceLimit(t *testing.T) {
	n := &ngFile{}
	n.shb(leOrder)
	for range maxInterfaces {
		n.idb(1, 0)
	}
	n.epb(maxInterfaces-1, 1, []byte("last interface"), 14)
	limit := len(n.b)
	n.idb(1, 0)
	_, frames, err := readAll(t, n.b)
	if len(frames) != 1 || frames[0].iface != maxInterfaces-1 {
		t.Errorf("frames %+v, want one on interface %d", frames, maxInterfaces-1)
	}
	want := fmt.Sprintf("record %d at offset %d: more than 65536 interfaces in one section", maxInterfaces+3, limit)
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}
