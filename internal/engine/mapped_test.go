package engine

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

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

// The same when the cut falls inside a frame's data: the reader reads the
// frame's headers from the last page left and faults copying the rest (in
// the runtime's memmove) or, on one goroutine, decoding it.
func TestMappedFileShrinksInsideFrame(t *testing.T) {
	data := mixedCapture(500)
	page := int64(os.Getpagesize())
	// A frame whose first 64 bytes lie before a page boundary and whose
	// data goes on past it.
	cut := int64(-1)
	rd, err := pcapio.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var f source.Frame
	for cut < 0 && rd.Next(&f) == nil {
		start, end := f.Offset+16, f.Offset+16+int64(len(f.Data))
		if p := (start + 64 + page - 1) / page * page; p < end {
			cut = p
		}
	}
	if cut < 0 {
		t.Fatal("no frame crosses a page boundary far enough in")
	}
	for _, w := range []int{1, 2} {
		path, rd := mappedFile(t, data)
		if err := os.Truncate(path, cut); err != nil {
			t.Fatal(err)
		}
		_, _, err := Run(rd, Options{Workers: w})
		if err == nil || !strings.Contains(err.Error(), "shrank") {
			t.Errorf("%d workers, cut at %d: error %v, want one saying the file shrank", w, cut, err)
		}
	}
}
