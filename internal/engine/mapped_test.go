package engine

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/pcapio"
	"github.com/rstscope/rstscope/internal/source"
)

// mappedFile writes data to a file and opens it mapped.
func mappedFile(t *testing.T, data []byte) (string, *pcapio.Reader) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("relies on SIGBUS for a truncated mapping")
	}
	path := filepath.Join(t.TempDir(), "in.pcap")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rd, err := pcapio.OpenMapped(path, nil)
	if err != nil || !rd.Mapped() {
		t.Fatalf("%v, mapped %v", err, rd != nil && rd.Mapped())
	}
	t.Cleanup(func() { rd.Close() })
	return path, rd
}

// A capture file cut short by another program while analyze reads it
// (tcpdump -W reusing a ring file): the run ends with an error that says
// so and the results of what was read, on one goroutine and on several,
// instead of the SIGBUS that kills a program touching a mapped page past
// the end of its file.
func TestMappedFileShrinks(t *testing.T) {
	data := mixedCapture(3000)
	full := runWith(t, data, 1)
	for _, w := range []int{1, 2} {
		path, rd := mappedFile(t, data)
		if err := os.Truncate(path, int64(len(data)/3)); err != nil {
			t.Fatal(err)
		}
		_, st, err := Run(rd, Options{Workers: w})
		if err == nil || !strings.Contains(err.Error(), "shrank") {
			t.Errorf("%d workers: error %v, want one saying the file shrank", w, err)
		}
		if st.Frames == 0 || st.Frames >= full.stats.Frames || st.Track.Conns == 0 {
			t.Errorf("%d workers: %d frames, %d connections of %d frames", w, st.Frames, st.Track.Conns, full.stats.Frames)
		}
	}
}

// A shard that faults on a frame it holds (the file shrank after the reader
// passed it) stops with the error, and the rest of the batch is not
// tracked.
func TestShardFault(t *testing.T) {
	data := mixedCapture(500)
	path, rd := mappedFile(t, data)
	rd.Hold()
	b := &shardBatch{held: make([][]byte, shardBatchLen)}
	var f source.Frame
	for b.n < shardBatchLen && rd.Next(&f) == nil {
		if f.Offset > int64(len(data)/2) {
			b.fr[b.n] = shardFrame{ts: f.Timestamp, num: uint64(b.n + 1), lt: f.LinkType}
			b.held[b.n] = f.Data
			b.n++
		}
	}
	if b.n < 10 {
		t.Fatalf("only %d frames in the second half", b.n)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	sh := &shard{pl: NewPipeline(Options{})}
	var p decode.Parsed
	err := sh.track(b, &p, rd.Fault)
	if err == nil || !strings.Contains(err.Error(), "shrank") {
		t.Errorf("track: %v, want an error saying the file shrank", err)
	}
	if n := sh.pl.stats.TCP; n != 0 {
		t.Errorf("%d packets tracked from a file cut to nothing", n)
	}
}
