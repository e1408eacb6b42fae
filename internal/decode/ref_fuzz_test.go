package decode

import (
	"reflect"
	"testing"
	"unsafe"
)

// FuzzDecodeRef decodes arbitrary bytes as every link type with Decode and
// with the general decoder alone (decodeAny, the whole of Decode before
// its fast path for Ethernet/IPv4/TCP) and requires the same Parsed,
// field for field: Payload must be the same view of the input (pointer,
// length and capacity), not only the same bytes, and nil where the
// reference leaves it nil. The seeds (testdata/fuzz/FuzzDecodeRef) are
// frames near the edges of Decode's Ethernet/IPv4/TCP fast path.
func FuzzDecodeRef(f *testing.F) {
	for _, s := range refSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, link := range fuzzLinks {
			compareRef(t, link, data)
		}
	})
}

// refDecode decodes data with the general decoder alone.
func refDecode(linkType uint32, data []byte) Parsed {
	var p Parsed
	p.decodeAny(linkType, data)
	return p
}

// compareRef fails t unless Decode and the general decoder agree on data.
func compareRef(t *testing.T, link uint32, data []byte) {
	t.Helper()
	want := refDecode(link, data)
	// Start from a dirty Parsed: Decode must overwrite every field.
	got := Parsed{Status: 99, IPVersion: 9, TTL: 1, IPID: 1, DF: true, SrcPort: 1, DstPort: 1, Seq: 1, Ack: 1,
		Flags: 0xff, Window: 1, Opts: Options{MSS: 1, WScale: 3, SACKPerm: true, SACK: true, HasTS: true, TSVal: 1, TSEcr: 1},
		PayloadLen: 7, Payload: data, Truncated: true, Tunneled: true, SrcWords: [2]uint64{1, 1}, DstWords: [2]uint64{1, 1}}
	got.Decode(link, data)
	if !reflect.DeepEqual(got, want) || !sameView(got.Payload, want.Payload) {
		t.Fatalf("link %d, frame %x:\n got %+v\nwant %+v", link, data, got, want)
	}
}

// sameView reports whether a and b are the same view of memory: the same
// nil-ness, length, capacity and, when the capacity is not 0, the same
// first element. (A slice of capacity 0 has no element to point to: Go
// sets its pointer to the base of whatever it was cut from, which differs
// between equivalent slicings and cannot be observed without unsafe.)
func sameView(a, b []byte) bool {
	return (a == nil) == (b == nil) && len(a) == len(b) && cap(a) == cap(b) &&
		(cap(a) == 0 || unsafe.SliceData(a) == unsafe.SliceData(b))
}

// refSeeds are frames around the fast path's edges: the common data
// segment, Linux's SYN, other option layouts, TSO's zero length, Ethernet
// padding, and the header fields the fast path checks, each changed.
func refSeeds() [][]byte {
	syn := ether(0x0800, ipv4(v4a, v4b, 6, nil, seg{sport: 40000, dport: 80, seq: 1, flags: SYN, win: 65495, opts: synOpts}.bytes()))
	data := ether(0x0800, v4pkt)
	frames := [][]byte{
		data, syn,
		ether(0x0800, ipv4(v4a, v4b, 6, nil, seg{flags: RST | ACK}.bytes())),
		ether(0x0800, ipv4(v4a, v4b, 6, nil, seg{flags: ACK, opts: cat([]byte{1, 1}, tsOpt(5, 6), []byte{1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2})}.bytes())),
		ether(0x0800, ipv4(v4a, v4b, 6, nil, seg{flags: ACK, opts: []byte{8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1}}.bytes())),
		ether(0x0800, ipv4(v4a, v4b, 6, nil, seg{flags: SYN, opts: []byte{2, 4, 5, 0xb4, 1, 3, 3, 6, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 4, 2}}.bytes())),
		ether(0x0800, ipv4(v4a, v4b, 6, []byte{1, 1, 1, 0}, dataSeg.bytes())),
		ether(0x0800, ipv4(v4a, v4b, 17, nil, udp(1, 2, nil))),
		ether(0x86dd, v6pkt),
		setU16(append([]byte(nil), data...), 16, 0),                        // TSO: total length 0
		append(append([]byte(nil), data...), make([]byte, 9)...),           // Ethernet padding
		setU16(append([]byte(nil), data...), 16, uint16(len(data)-14+100)), // snaplen-cut payload
	}
	edit := func(base []byte, off int, v byte) {
		f := append([]byte(nil), base...)
		f[off] = v
		frames = append(frames, f)
	}
	// Ethertype, version/IHL, total length, flags and fragment offset,
	// protocol, data offset, and the option bytes the compares look at.
	for _, m := range []struct {
		off int
		v   byte
	}{{12, 0x86}, {13, 1}, {14, 0x46}, {14, 0x55}, {16, 0}, {17, 0}, {17, 39}, {17, 20}, {20, 0x20}, {20, 0x41}, {21, 1},
		{23, 17}, {46, 0x40}, {46, 0x50}, {46, 0xf0}, {46, 0x10}, {54, 0}, {55, 0}, {56, 7}, {57, 0x0b}} {
		edit(data, m.off, m.v)
	}
	for _, m := range []struct {
		off int
		v   byte
	}{{54, 3}, {55, 5}, {58, 5}, {59, 3}, {60, 9}, {61, 11}, {70, 0}, {71, 4}, {72, 2}, {73, 15}, {73, 0xff}, {46, 0x90}} {
		edit(syn, m.off, m.v)
	}
	for _, base := range [][]byte{data, syn} {
		for n := 14 + 38; n < len(base); n += 3 {
			frames = append(frames, base[:n])
		}
	}
	return frames
}

// TestDecodeMatchesRef runs the FuzzDecodeRef comparison on the seeds, the
// table cases and every prefix of each, so plain `go test` checks it too.
func TestDecodeMatchesRef(t *testing.T) {
	frames := refSeeds()
	for _, tc := range linkCases() {
		frames = append(frames, tc.frame)
	}
	for _, fr := range frames {
		for n := 0; n <= len(fr); n++ {
			for _, link := range fuzzLinks {
				compareRef(t, link, fr[:n])
				compareRef(t, link, fr[:n:n])
			}
		}
	}
}
