package pcapio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"testing/iotest"

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

// readAll reads every frame of data; err is nil at a clean end.
func readAll(t testing.TB, data []byte) (*Reader, []frame, error) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, nil, err
	}
	frames, err := drain(r)
	return r, frames, err
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

// drainBatch reads r to its end as drain does, through NextBatch with room
// for size frames, copying each batch's frames only after the call: frames
// a refill had moved would differ from drain's. It also checks that an
// error is sticky.
func drainBatch(t *testing.T, r *Reader, size int) ([]frame, error) {
	t.Helper()
	var frames []frame
	fs := make([]source.Frame, size)
	for {
		n, err := r.NextBatch(fs)
		if n < 0 || n > size || (err != nil) != (n == 0) {
			t.Fatalf("NextBatch gave %d frames and %v", n, err)
		}
		if err != nil {
			if again, err2 := r.NextBatch(fs); again != 0 || err2 != err {
				t.Fatalf("NextBatch after %v gave %d, %v", err, again, err2)
			}
			if errors.Is(err, io.EOF) {
				return frames, nil
			}
			return frames, err
		}
		for i := range fs[:n] {
			frames = append(frames, copyFrame(&fs[i]))
		}
	}
}

// batchSame checks that NextBatch, with room for 1, 3 or 256 frames, gives
// the frames and the error Next gives, for data read as a stream (in the
// reads iotest.HalfReader makes, so that records straddle refills) and in
// place.
func batchSame(t *testing.T, name string, data []byte) {
	t.Helper()
	open := map[string]func() (*Reader, error){
		"stream":   func() (*Reader, error) { return NewReader(iotest.HalfReader(bytes.NewReader(data))) },
		"in place": func() (*Reader, error) { return newMapped(append([]byte(nil), data...), false) },
	}
	for how, opener := range open {
		r, err := opener()
		if err != nil {
			continue // mappedSame compares the opening errors
		}
		want, werr := drain(r)
		r.Close()
		for _, size := range []int{1, 3, 256} {
			r, _ := opener()
			got, gerr := drainBatch(t, r, size)
			r.Close()
			if fmt.Sprint(gerr) != fmt.Sprint(werr) || !reflect.DeepEqual(got, want) {
				t.Fatalf("%s %s, batches of %d: %d frames and %v, Next gave %d and %v",
					name, how, size, len(got), gerr, len(want), werr)
			}
		}
	}
}
