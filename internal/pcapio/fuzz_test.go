package pcapio

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rstscope/rstscope/internal/source"
)

// FuzzReader feeds arbitrary bytes to the reader. Whatever the input, the
// reader must not panic, must return only *FormatError from Next, must keep
// its buffer within the 16 MiB block limit, and every frame it returns must
// be consistent; parsed in place (as a mapped file is), the input must give
// the same frames and errors.
func FuzzReader(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		mappedSame(t, "input", data)
		batchSame(t, "input", data)
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			if r != nil {
				t.Fatal("NewReader returned a reader and an error")
			}
			return
		}
		defer r.Close()
		compressed := len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b
		var fr source.Frame
		prev := int64(-1)
		for n := 0; n < 1<<20; n++ { // bounds the time a gzip bomb can take
			err := r.Next(&fr)
			if err == io.EOF {
				break
			}
			if err != nil {
				var fe *FormatError
				if !errors.As(err, &fe) {
					t.Fatalf("Next returned %T %v, want a *FormatError", err, err)
				}
				if again := r.Next(&fr); again != err {
					t.Fatalf("Next after an error returned %v, then %v", err, again)
				}
				break
			}
			if len(fr.Data) > fr.OrigLen || fr.Interface < 0 || fr.Offset <= prev ||
				!slices.Contains(r.LinkTypes(), fr.LinkType) {
				t.Fatalf("inconsistent frame: %d bytes, orig %d, iface %d, offset %d after %d, link type %d not in %v",
					len(fr.Data), fr.OrigLen, fr.Interface, fr.Offset, prev, fr.LinkType, r.LinkTypes())
			}
			if !compressed && fr.Offset+int64(len(fr.Data)) > int64(len(data)) {
				t.Fatalf("frame at %d of %d bytes lies beyond the %d-byte input", fr.Offset, len(fr.Data), len(data))
			}
			prev = fr.Offset
		}
		if len(r.buf) > maxBlockLen || (!compressed && len(r.buf) > max(bufSize, 2*len(data))) {
			t.Fatalf("buffer grew to %d bytes for a %d-byte input", len(r.buf), len(data))
		}
	})
}

type fuzzSeed struct {
	name string
	data []byte
}

// fuzzSeeds are small valid captures of each kind, and truncated copies.
// TestWriteFuzzCorpus stores them in testdata/fuzz/FuzzReader.
func fuzzSeeds() []fuzzSeed {
	pkt := []byte("\x45\x00\x00\x28\x00\x01\x00\x00\x40\x06\x00\x00\x0a\x00\x00\x01\x0a\x00\x00\x02\x30\x39\x00\x50\x00\x00\x00\x01\x00\x00\x00\x00\x50\x04\xff\xff\x00\x00\x00\x00")
	pcapLE := newPcapFile(leOrder, false, 65535, 101).packet(1, 2, pkt).record(3, 4, pkt[:20], 20, 40).b
	pcapBE := newPcapFile(beOrder, true, 64, 1).packet(5, 6, pkt).packet(7, 8, pkt[:3]).b
	n := &ngFile{}
	n.shb(leOrder)
	n.idb(1, 0, n.opt(optTSResol, []byte{9}), n.opt(optTSOffset, leOrder.AppendUint64(nil, 10)))
	n.idb(101, 30, n.opt(optTSResol, []byte{0x80 | 20}))
	n.epb(1, 1<<20, pkt, 40, n.opt(optComment, []byte("reset")))
	n.spb(40, pkt)
	n.block(5, make([]byte, 8))
	n.pb(0, 1, pkt[:4], 40)
	ngLE := n.b
	n = &ngFile{}
	n.shb(beOrder).idb(228, 0).epb(0, 123456, pkt, 40)
	n.shb(leOrder).idb(229, 0).epb(0, 7, pkt[:8], 40)
	ngBE := n.b
	var seeds []fuzzSeed
	for _, s := range []fuzzSeed{{"pcap-le-us", pcapLE}, {"pcap-be-ns", pcapBE}, {"pcapng-le", ngLE}, {"pcapng-be-2sections", ngBE}} {
		seeds = append(seeds, s,
			fuzzSeed{s.name + "-truncated", s.data[:len(s.data)-len(s.data)/3]},
			fuzzSeed{s.name + "-gzip", gz(s.data)})
	}
	seeds = append(seeds, fuzzSeed{"gzip-truncated", gz(ngLE)[:40]}, fuzzSeed{"text", []byte("not a capture")})
	return seeds
}

// TestWriteFuzzCorpus rewrites the committed seed corpus from fuzzSeeds
// when PCAPIO_WRITE_CORPUS=1; otherwise it checks the corpus is current
// (for gzip seeds only that they exist: compressed bytes may differ
// between Go versions).
func TestWriteFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	write := os.Getenv("PCAPIO_WRITE_CORPUS") == "1"
	if write {
		os.MkdirAll(dir, 0o755)
	}
	for _, s := range fuzzSeeds() {
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s.data)
		path := filepath.Join(dir, "seed-"+s.name)
		if write {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || (string(got) != want && !bytes.Contains([]byte(s.name), []byte("gzip"))) {
			t.Errorf("%s is missing or stale (%v): run PCAPIO_WRITE_CORPUS=1 go test -run TestWriteFuzzCorpus", path, err)
		}
	}
}
