package pcapio

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/rstscope/rstscope/internal/smaps"
	"github.com/rstscope/rstscope/internal/source"
)

// mappedSame checks that parsing data in place (as a mapped file is)
// gives exactly the frames and the error reading it as a stream gives.
// FuzzReader checks it too.
func mappedSame(t *testing.T, name string, data []byte) {
	t.Helper()
	if len(data) >= 2 && data[0] == magicGzip[0] && data[1] == magicGzip[1] {
		return // OpenMapped reads gzip as a stream
	}
	sr, serr := NewReader(bytes.NewReader(data))
	mr, merr := newMapped(append([]byte(nil), data...), false)
	if (sr == nil) != (mr == nil) || fmt.Sprint(serr) != fmt.Sprint(merr) {
		t.Fatalf("%s: opening as a stream: %v; in place: %v", name, serr, merr)
	}
	if sr == nil {
		return
	}
	defer mr.Close()
	sframes, serr := drain(sr)
	mframes, merr := drain(mr)
	if fmt.Sprint(serr) != fmt.Sprint(merr) {
		t.Fatalf("%s: the stream ends with %v, in place with %v", name, serr, merr)
	}
	if !reflect.DeepEqual(sframes, mframes) {
		t.Fatalf("%s: %d frames as a stream, %d in place, or they differ", name, len(sframes), len(mframes))
	}
	if sr.Format() != mr.Format() || !reflect.DeepEqual(sr.LinkTypes(), mr.LinkTypes()) {
		t.Fatalf("%s: format %q %v, in place %q %v", name, sr.Format(), sr.LinkTypes(), mr.Format(), mr.LinkTypes())
	}
}

// Every seed of the fuzz corpus (valid captures of each kind and cut
// copies of them) and every input of the error tests parses in place as it
// reads as a stream: frames, offsets, comments and errors.
func TestMappedSameAsStream(t *testing.T) {
	for _, s := range fuzzSeeds() {
		mappedSame(t, s.name, s.data)
	}
	for i, data := range badInputs() {
		mappedSame(t, "bad input "+strconv.Itoa(i), data)
	}
}

// NextBatch gives what Next gives, on the same inputs.
func TestNextBatchSameAsNext(t *testing.T) {
	for _, s := range fuzzSeeds() {
		batchSame(t, s.name, s.data)
	}
	for i, data := range badInputs() {
		batchSame(t, "bad input "+strconv.Itoa(i), data)
	}
}

// badInputs are captures broken in the ways TestErrors names.
func badInputs() [][]byte {
	pkt := make([]byte, 40)
	good := newPcapFile(leOrder, false, 65535, 1).packet(1, 0, pkt).packet(2, 0, pkt).b
	return [][]byte{
		good[:len(good)-10],      // cut inside a record
		good[:len(good)-40-16+5], // cut inside a record header
		good[:20],                // cut inside the file header
		newPcapFile(leOrder, false, 65535, 1).record(1, 0, pkt, 1<<30, 40).b, // caplen beyond anything
		newPcapFile(beOrder, true, 64, 1).record(1, 0, pkt, 100, 40).b,       // record longer than the file
		[]byte("\x0a\x0d\x0d\x0a\xff\xff\xff\xff"),
		[]byte("hello, world\n"),
	}
}

// writeTemp writes data to a file of its own and returns the path.
func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.pcap")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// OpenMapped maps a plain capture file and reads everything else as Open
// does: gzip, standard input, a file too short to be a capture.
func TestOpenMapped(t *testing.T) {
	pkt := make([]byte, 60)
	plain := newPcapFile(leOrder, false, 65535, 1).packet(1, 0, pkt).packet(2, 0, pkt).b
	for _, tc := range []struct {
		name   string
		data   []byte
		mapped bool
		frames int
	}{
		{"pcap", plain, runtime.GOOS != "windows" && runtime.GOOS != "plan9" && runtime.GOOS != "js", 2},
		{"gzip", gz(plain), false, 2},
	} {
		rd, err := OpenMapped(writeTemp(t, tc.data), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		frames, err := drain(rd)
		if err != nil || len(frames) != tc.frames || rd.Mapped() != tc.mapped {
			t.Errorf("%s: %d frames, %v, mapped %v; want %d frames, mapped %v", tc.name, len(frames), err, rd.Mapped(), tc.frames, tc.mapped)
		}
		rd.Close()
	}
	// Too short, and not a capture: the same messages as Open gives.
	for _, data := range [][]byte{nil, []byte("ab"), []byte("hello, world\n")} {
		path := writeTemp(t, data)
		_, oerr := Open(path, nil)
		_, merr := OpenMapped(path, nil)
		if oerr == nil || merr == nil || oerr.Error() != merr.Error() {
			t.Errorf("%q: Open: %v; OpenMapped: %v", data, oerr, merr)
		}
	}
	rd, err := OpenMapped("-", bytes.NewReader(plain))
	if err != nil || rd.Mapped() {
		t.Fatalf("stdin: %v, mapped %v", err, rd != nil && rd.Mapped())
	}
	rd.Close()
}

// bigCapture is a classic pcap file of about size bytes.
func bigCapture(size int) []byte {
	p := newPcapFile(leOrder, false, 65535, 1)
	pkt := make([]byte, 1000)
	for i := 0; len(p.b) < size; i++ {
		p.packet(uint32(i), 0, pkt)
	}
	return p.b
}

// mappingRSS returns how many kB of the mapping at base are resident in
// this process (Linux only; the test skips elsewhere).
func mappingRSS(t *testing.T, base uintptr) int {
	t.Helper()
	n, err := smaps.KB(base, "Rss")
	if err != nil {
		t.Skipf("cannot read the mapping's size from /proc/self/smaps: %v", err)
	}
	return n
}

// A mapped file's pages are given back behind the reader, so reading a file
// does not make it resident.
func TestMappedGivesBackMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/self/smaps")
	}
	defer func(s int64) { dropStep = s }(dropStep)
	dropStep = 1 << 20
	rd, err := OpenMapped(writeTemp(t, bigCapture(24<<20)), nil)
	if err != nil || !rd.Mapped() {
		t.Fatalf("%v, mapped %v", err, rd != nil && rd.Mapped())
	}
	defer rd.Close()
	base := uintptr(unsafe.Pointer(unsafe.SliceData(rd.mapped.data)))
	var f source.Frame
	var frames int
	var peak int
	for rd.Next(&f) == nil {
		if frames++; frames%1000 == 0 {
			peak = max(peak, mappingRSS(t, base))
		}
	}
	if frames < 20000 || peak < 512 || peak > 3<<10 {
		t.Errorf("%d frames; at most %d kB of the 24 MB mapping resident while reading, want 0.5 to 3 MB (steps of 1 MB)", frames, peak)
	}
}

// A file that shrinks while it is mapped makes the next touch of a page
// past its new end fault; under debug.SetPanicOnFault that is a panic,
// which Fault turns into an error that says so. Other panics are not its.
func TestMappedFault(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("relies on SIGBUS for a truncated mapping")
	}
	data := bigCapture(1 << 20)
	path := writeTemp(t, data)
	rd, err := OpenMapped(path, nil)
	if err != nil || !rd.Mapped() {
		t.Fatalf("%v, mapped %v", err, rd != nil && rd.Mapped())
	}
	defer rd.Close()
	var f source.Frame
	if err := rd.Next(&f); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 4096); err != nil {
		t.Fatal(err)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var got error
	frames := 1
	func() {
		defer func() {
			v := recover()
			if v == nil {
				t.Fatal("no fault reading past the new end of the file")
			}
			got = rd.Fault(v)
		}()
		for rd.Next(&f) == nil {
			frames++
		}
	}()
	var se *ShrankError
	if !errors.As(got, &se) || !strings.Contains(got.Error(), "shrank") || se.Offset < 4096 || se.Offset >= int64(len(data)) {
		t.Errorf("after %d frames: Fault gave %v", frames, got)
	}
	if rd.Fault("another panic") != nil || rd.Fault(errors.New("x")) != nil {
		t.Error("Fault claims a panic that is not a fault in the mapping")
	}
}

// NextBatch prefetches a mapped input ahead of the reader (fetchAhead):
// never past the mapping's end, in whole lines, and up to about
// fetchDistance bytes ahead of where each call started.
func TestFetchAheadStaysInMapping(t *testing.T) {
	data := bigCapture(1 << 20)
	rd, err := newMapped(data, false)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	fs := make([]source.Frame, 8)
	calls := 0
	for {
		off := rd.off
		n, err := rd.NextBatch(fs)
		if n == 0 {
			if err == nil {
				t.Fatal("no frames and no error")
			}
			break
		}
		calls++
		m := &rd.mapped
		lag := int64(8*64 + 64) // a fetch waits for 8 lines; alignment
		want := min(off+fetchDistance, int64(len(data))) - lag
		if m.fetched > int64(len(data)) || m.fetched%64 != 0 || m.fetched < want {
			t.Fatalf("call %d at offset %d: prefetched up to %d, want a line boundary in [%d, %d]", calls, off, m.fetched, want, len(data))
		}
	}
	if m := &rd.mapped; calls < 100 || m.fetched < int64(len(data))-2*64 {
		t.Fatalf("%d calls; prefetched up to %d of %d bytes", calls, m.fetched, len(data))
	}
}
