//go:build linux

package pcapio

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rstscope/rstscope/internal/source"
)

// bigPcap returns a classic pcap file of n packets of 100 to 1599 random
// bytes.
func bigPcap(n int) []byte {
	rng := rand.New(rand.NewPCG(3, 4))
	p := newPcapFile(leOrder, true, 65535, 1)
	for i := range n {
		d := make([]byte, 100+i*7%1500)
		for j := range d {
			d[j] = byte(rng.Uint32())
		}
		p.packet(uint32(i), 0, d)
	}
	return p.b
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "capture")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOpenMapsWhatItShould checks which inputs Open reads in place.
func TestOpenMapsWhatItShould(t *testing.T) {
	big := bigPcap(200) // over mmapMinSize
	if len(big) < mmapMinSize {
		t.Fatalf("test file of %d bytes is too small", len(big))
	}
	small := newPcapFile(leOrder, false, 65535, 1).packet(1, 0, []byte("x")).b
	for _, tc := range []struct {
		name   string
		data   []byte
		stable bool
	}{
		{"large", big, true},
		{"small", small, false},
		{"gzip", gz(big), false},
	} {
		if tc.name != "small" && len(tc.data) < mmapMinSize {
			t.Fatalf("%s: test file of %d bytes is too small", tc.name, len(tc.data))
		}
		r, err := Open(writeFile(t, tc.data), nil)
		if err != nil {
			t.Fatal(err)
		}
		frames, err := drain(r)
		if r.Stable() != tc.stable || err != nil || len(frames) == 0 {
			t.Errorf("%s: Stable() = %v, %d frames, %v; want %v", tc.name, r.Stable(), len(frames), err, tc.stable)
		}
		r.Close()
	}

	// Standard input and a named pipe are read through the buffer.
	r, err := Open("-", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	if r.Stable() {
		t.Error("standard input: Stable() = true")
	}
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			w.Write(big)
			w.Close()
		}
	}()
	r, err = Open(fifo, nil)
	if err != nil {
		t.Fatal(err)
	}
	frames, err := drain(r)
	if r.Stable() || len(frames) != 200 || err != nil {
		t.Errorf("named pipe: Stable() = %v, %d frames, %v; want false, 200, nil", r.Stable(), len(frames), err)
	}
	r.Close()
}

// TestMappedWindows reads a file of many windows, and checks that the
// pages behind are released and that frames stay valid until Close.
func TestMappedWindows(t *testing.T) {
	data := bigPcap(5000) // about 4 MB
	_, want, err := readBuffered(t, data)
	if err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, data)
	r, err := open(path, nil, mapOpts{minSize: 0, window: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var f source.Frame
	var datas [][]byte
	for i := 0; ; i++ {
		if err := r.Next(&f); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if i == len(want)/2 && r.released < len(data)/4 {
			t.Errorf("halfway through, only %d bytes released", r.released)
		}
		datas = append(datas, f.Data)
	}
	if len(datas) != len(want) {
		t.Fatalf("%d frames, want %d", len(datas), len(want))
	}
	for i, d := range datas {
		if string(d) != want[i].data {
			t.Fatalf("frame %d: Data changed before Close", i)
		}
	}
	if r.BytesRead() != int64(len(data)) {
		t.Errorf("BytesRead() = %d, want %d", r.BytesRead(), len(data))
	}
}

// TestMappedFileShrinks cuts a file short while it is being read: the
// reader must stop at the new end with an error saying so, not crash, even
// when the cut falls between records.
func TestMappedFileShrinks(t *testing.T) {
	data := bigPcap(3000)
	_, all, err := readBuffered(t, data)
	if err != nil {
		t.Fatal(err)
	}
	const window = 64 << 10
	for _, cut := range []int64{int64(len(data) / 2), all[2000].offset} {
		path := writeFile(t, data)
		r, err := open(path, nil, mapOpts{minSize: 0, window: window})
		if err != nil {
			t.Fatal(err)
		}
		var f source.Frame
		if err := r.Next(&f); err != nil {
			t.Fatal(err)
		}
		// Cut the file well past the window the reader is in.
		if err := os.Truncate(path, cut); err != nil {
			t.Fatal(err)
		}
		frames, err := drain(r)
		var fe *FormatError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), fmt.Sprintf("the file shrank to %d bytes", cut)) || fe.Err == nil {
			t.Fatalf("cut at %d: error %v, want a FormatError saying the file shrank", cut, err)
		}
		_, want, _ := readBuffered(t, data[:cut])
		if len(frames)+1 != len(want) || fe.Offset != want[len(want)-1].offset+int64(len(want[len(want)-1].data))+16 {
			t.Errorf("cut at %d: %d frames before the error at %d, want %d", cut, len(frames)+1, fe.Offset, len(want))
		}
		t.Log(err)
		r.Close()
	}
}

// TestMappedZeroAllocs is TestZeroAllocs for a mapped file.
func TestMappedZeroAllocs(t *testing.T) {
	n := &ngFile{}
	n.shb(leOrder)
	n.idb(1, 0, n.opt(optTSResol, []byte{9}))
	for i := range 2000 {
		n.epb(0, uint64(i), make([]byte, 60+i%200), 60+uint32(i%200), n.opt(2, []byte{0, 0, 0, 0}))
	}
	for _, data := range [][]byte{n.b, bigPcap(2000)} {
		r, err := open(writeFile(t, data), nil, mapOpts{minSize: 0, window: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		var f source.Frame
		var nextErr error
		allocs := testing.AllocsPerRun(1900, func() {
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
		r.Close()
	}
}
