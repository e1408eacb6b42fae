package pcapio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rstscope/rstscope/internal/source"
)

// Builders for capture files in either byte order, written by hand so the
// reader is not only tested against this package's own writers.

type order = binary.AppendByteOrder

var (
	leOrder order = binary.LittleEndian
	beOrder order = binary.BigEndian
)

// pcapFile builds a classic pcap file.
type pcapFile struct {
	o    order
	nano bool
	b    []byte
}

func newPcapFile(o order, nano bool, snaplen, linkType uint32) *pcapFile {
	p := &pcapFile{o: o, nano: nano}
	magic := uint32(pcapMagicMicro)
	if nano {
		magic = pcapMagicNano
	}
	p.b = o.AppendUint32(p.b, magic)
	p.b = o.AppendUint16(p.b, 2)
	p.b = o.AppendUint16(p.b, 4)
	p.b = o.AppendUint32(p.b, 0)
	p.b = o.AppendUint32(p.b, 0)
	p.b = o.AppendUint32(p.b, snaplen)
	p.b = o.AppendUint32(p.b, linkType)
	return p
}

// record appends a record with explicit lengths; frac is µs or ns.
func (p *pcapFile) record(sec, frac uint32, data []byte, caplen, orig uint32) *pcapFile {
	p.b = p.o.AppendUint32(p.b, sec)
	p.b = p.o.AppendUint32(p.b, frac)
	p.b = p.o.AppendUint32(p.b, caplen)
	p.b = p.o.AppendUint32(p.b, orig)
	p.b = append(p.b, data...)
	return p
}

func (p *pcapFile) packet(sec, frac uint32, data []byte) *pcapFile {
	return p.record(sec, frac, data, uint32(len(data)), uint32(len(data)))
}

// ngFile builds a pcapng file.
type ngFile struct {
	o order
	b []byte
}

func (n *ngFile) block(typ uint32, body ...[]byte) *ngFile {
	var all []byte
	for _, b := range body {
		all = append(all, b...)
	}
	for len(all)%4 != 0 {
		all = append(all, 0)
	}
	n.b = n.o.AppendUint32(n.b, typ)
	n.b = n.o.AppendUint32(n.b, uint32(12+len(all)))
	n.b = append(n.b, all...)
	n.b = n.o.AppendUint32(n.b, uint32(12+len(all)))
	return n
}

// shb starts a section in byte order o (which the following blocks use).
func (n *ngFile) shb(o order) *ngFile {
	n.o = o
	var b []byte
	b = o.AppendUint32(b, byteOrderMagic)
	b = o.AppendUint16(b, 1)
	b = o.AppendUint16(b, 0)
	b = o.AppendUint64(b, ^uint64(0))
	return n.block(blockSHB, b)
}

func (n *ngFile) opt(code uint16, val []byte) []byte {
	var b []byte
	b = n.o.AppendUint16(b, code)
	b = n.o.AppendUint16(b, uint16(len(val)))
	b = append(b, val...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func (n *ngFile) idb(linkType uint16, snaplen uint32, opts ...[]byte) *ngFile {
	var b []byte
	b = n.o.AppendUint16(b, linkType)
	b = n.o.AppendUint16(b, 0)
	b = n.o.AppendUint32(b, snaplen)
	if len(opts) > 0 {
		opts = append(opts, n.opt(optEndOfOpt, nil))
	}
	return n.block(blockIDB, append([][]byte{b}, opts...)...)
}

func (n *ngFile) epb(iface uint32, ticks uint64, data []byte, orig uint32, opts ...[]byte) *ngFile {
	var b []byte
	b = n.o.AppendUint32(b, iface)
	b = n.o.AppendUint32(b, uint32(ticks>>32))
	b = n.o.AppendUint32(b, uint32(ticks))
	b = n.o.AppendUint32(b, uint32(len(data)))
	b = n.o.AppendUint32(b, orig)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	if len(opts) > 0 {
		opts = append(opts, n.opt(optEndOfOpt, nil))
	}
	return n.block(blockEPB, append([][]byte{b}, opts...)...)
}

func (n *ngFile) pb(iface uint16, ticks uint64, data []byte, orig uint32, opts ...[]byte) *ngFile {
	var b []byte
	b = n.o.AppendUint16(b, iface)
	b = n.o.AppendUint16(b, 0) // drops
	b = n.o.AppendUint32(b, uint32(ticks>>32))
	b = n.o.AppendUint32(b, uint32(ticks))
	b = n.o.AppendUint32(b, uint32(len(data)))
	b = n.o.AppendUint32(b, orig)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return n.block(blockPB, append([][]byte{b}, opts...)...)
}

func (n *ngFile) spb(orig uint32, data []byte) *ngFile {
	return n.block(blockSPB, n.o.AppendUint32(nil, orig), data)
}

// frame is a copy of a source.Frame that outlives the next call to Next.
type frame struct {
	ts       int64
	linkType uint32
	iface    int
	origLen  int
	data     string
	comment  string
	offset   int64
}

func copyFrame(f *source.Frame) frame {
	return frame{f.Timestamp, f.LinkType, f.Interface, f.OrigLen, string(f.Data), f.Comment, f.Offset}
}

// readAll reads every frame of data; err is nil at a clean end. It reads
// data every way the package can, and fails the test unless they all
// agree: through a buffer (NewReader on a bytes.Reader: the Reader and
// results it returns), and in place from a file that Open maps, with the
// default window and with windows so small that records meet their
// boundaries everywhere.
func readAll(t testing.TB, data []byte) (*Reader, []frame, error) {
	t.Helper()
	r, frames, err := readBuffered(t, data)
	path := filepath.Join(t.TempDir(), "capture")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, window := range []int{mmapWindow, 1, 61} {
		mr, mframes, merr := readMapped(t, path, window)
		what := fmt.Sprintf("mapped file (window %d)", window)
		if r == nil {
			if merr == nil || merr.Error() != path+": "+err.Error() {
				t.Fatalf("%s: NewReader failed with %v, but Open with %v", what, err, merr)
			}
			continue
		}
		checkSame(t, what, r, frames, err, mr, mframes, merr)
		if want := len(data) > 0 && mappable(data); mr.Stable() != want {
			t.Errorf("%s: Stable() = %v, want %v", what, mr.Stable(), want)
		}
		if r.Stable() {
			t.Errorf("buffered reader: Stable() = true")
		}
		if err == nil && mr.BytesRead() != r.BytesRead() {
			t.Errorf("%s: BytesRead() = %d, want %d", what, mr.BytesRead(), r.BytesRead())
		}
	}
	return r, frames, err
}

// readBuffered reads data through NewReader, and checks that an error
// sticks.
func readBuffered(t testing.TB, data []byte) (*Reader, []frame, error) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		if r != nil {
			t.Fatal("NewReader returned a reader and an error")
		}
		return nil, nil, err
	}
	frames, err := drain(r)
	checkSticky(t, "buffered reader", r, err)
	return r, frames, err
}

// readMapped reads the file at path through open with the given window,
// mapping it whatever its size. For a Stable reader it keeps every frame's
// Data, not a copy, and checks they all still hold the frame's bytes after
// the last Next. It closes the reader.
func readMapped(t testing.TB, path string, window int) (*Reader, []frame, error) {
	t.Helper()
	r, err := open(path, nil, mapOpts{minSize: 0, window: window})
	if err != nil {
		if r != nil {
			t.Fatal("open returned a reader and an error")
		}
		return nil, nil, err
	}
	var frames []frame
	var datas [][]byte
	var f source.Frame
	for {
		err = r.Next(&f)
		if err != nil {
			break
		}
		frames = append(frames, copyFrame(&f))
		datas = append(datas, f.Data)
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	checkSticky(t, "mapped file", r, err)
	if r.Stable() {
		for i, d := range datas {
			if string(d) != frames[i].data {
				t.Fatalf("mapped file: frame %d's Data changed before Close", i)
			}
		}
	}
	if cerr := r.Close(); cerr != nil {
		t.Errorf("mapped file: Close: %v", cerr)
	}
	if nerr := r.Next(&f); nerr == nil || nerr == io.EOF {
		t.Errorf("mapped file: Next after Close returned %v, want an error", nerr)
	}
	return r, frames, err
}

// checkSticky checks that Next, after returning err (nil: io.EOF), returns
// the same again.
func checkSticky(t testing.TB, what string, r *Reader, err error) {
	t.Helper()
	want := err
	if want == nil {
		want = io.EOF
	}
	var f source.Frame
	if again := r.Next(&f); again != want {
		t.Errorf("%s: Next after %v returned %v", what, want, again)
	}
}

// checkSame fails the test unless a second way of reading (got) gave the
// same frames, error and reader state as the first (want).
func checkSame(t testing.TB, what string, want *Reader, wantFrames []frame, wantErr error,
	got *Reader, gotFrames []frame, gotErr error) {
	t.Helper()
	if !slices.Equal(gotFrames, wantFrames) {
		t.Errorf("%s: %d frames differ from the %d read through a buffer", what, len(gotFrames), len(wantFrames))
	}
	if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
		t.Errorf("%s: error %v, want %v", what, gotErr, wantErr)
	}
	var gfe, wfe *FormatError
	if errors.As(gotErr, &gfe) != errors.As(wantErr, &wfe) ||
		(gfe != nil && (gfe.Offset != wfe.Offset || gfe.Record != wfe.Record || gfe.Msg != wfe.Msg)) {
		t.Errorf("%s: error %#v, want %#v", what, gotErr, wantErr)
	}
	if got.Format() != want.Format() || !slices.Equal(got.LinkTypes(), want.LinkTypes()) ||
		got.OverSnaplen() != want.OverSnaplen() {
		t.Errorf("%s: format %q, link types %v, over snaplen %d; want %q, %v, %d", what,
			got.Format(), got.LinkTypes(), got.OverSnaplen(), want.Format(), want.LinkTypes(), want.OverSnaplen())
	}
}

func drain(r *Reader) ([]frame, error) {
	var frames []frame
	var f source.Frame
	for {
		err := r.Next(&f)
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		if err != nil {
			return frames, err
		}
		frames = append(frames, copyFrame(&f))
	}
}

// cycle is an endless reader: head once, then body over and over. It lets
// benchmarks and allocation tests read any number of packets without
// reopening.
type cycle struct {
	head, body []byte
	pos        int
}

func (c *cycle) Read(p []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(p, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	n := 0
	for n < len(p) {
		k := copy(p[n:], c.body[c.pos:])
		n += k
		c.pos = (c.pos + k) % len(c.body)
	}
	return n, nil
}
