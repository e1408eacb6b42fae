package pcapio

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/rstscope/rstscope/internal/source"
)

// Writers produce little-endian files with nanosecond timestamps, which
// both libpcap (tcpdump, Wireshark) and this package's Reader read back
// exactly. They buffer: call Flush when done.

const writeBufSize = 64 << 10

var le = binary.LittleEndian

// errTimestamp is returned for frames whose time cannot be represented.
var errTimestamp = errors.New("pcapio: timestamp before 1970 or beyond the format's range")

// NgWriter writes a pcapng file: one section, interfaces added with
// AddInterface, packets as enhanced packet blocks.
type NgWriter struct {
	w        *bufio.Writer
	snaplens []int
	hdr      [32]byte
}

// NewNgWriter writes a section header block naming rstscope as the
// writing application.
func NewNgWriter(w io.Writer) (*NgWriter, error) {
	nw := &NgWriter{w: bufio.NewWriterSize(w, writeBufSize)}
	const appl = "rstscope"
	opts := optionLen(len(appl)) + 4
	b := make([]byte, 0, 28+opts+4)
	b = le.AppendUint32(b, blockSHB)
	b = le.AppendUint32(b, uint32(28+opts))
	b = le.AppendUint32(b, byteOrderMagic)
	b = le.AppendUint16(b, 1) // version 1.0
	b = le.AppendUint16(b, 0)
	b = le.AppendUint64(b, ^uint64(0))   // section length not given
	b = appendOption(b, 4, []byte(appl)) // shb_userappl
	b = appendOption(b, optEndOfOpt, nil)
	b = le.AppendUint32(b, uint32(28+opts))
	if _, err := nw.w.Write(b); err != nil {
		return nil, err
	}
	return nw, nil
}

// AddInterface writes an interface description block with nanosecond
// timestamps (if_tsresol 9) and returns the interface's index for
// WritePacket. A snaplen of 0 means no limit; name may be empty.
func (w *NgWriter) AddInterface(linkType uint32, snaplen int, name string) (int, error) {
	if linkType > 0xffff {
		return 0, fmt.Errorf("pcapio: link type %d does not fit in pcapng's 16 bits", linkType)
	}
	if snaplen < 0 || snaplen > maxBlockLen {
		return 0, fmt.Errorf("pcapio: snaplen %d out of range", snaplen)
	}
	if len(name) > 0xffff {
		return 0, errors.New("pcapio: interface name longer than 65535 bytes")
	}
	opts := optionLen(1) + 4
	if name != "" {
		opts += optionLen(len(name))
	}
	n := uint32(20 + opts)
	b := make([]byte, 0, n)
	b = le.AppendUint32(b, blockIDB)
	b = le.AppendUint32(b, n)
	b = le.AppendUint16(b, uint16(linkType))
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, uint32(snaplen))
	if name != "" {
		b = appendOption(b, 2, []byte(name)) // if_name
	}
	b = appendOption(b, optTSResol, []byte{9})
	b = appendOption(b, optEndOfOpt, nil)
	b = le.AppendUint32(b, n)
	if _, err := w.w.Write(b); err != nil {
		return 0, err
	}
	w.snaplens = append(w.snaplens, snaplen)
	return len(w.snaplens) - 1, nil
}

// WritePacket writes f as an enhanced packet block on interface iface,
// using f.Timestamp, f.Data (cut to the interface's snaplen), f.OrigLen
// (at least the captured length) and f.Comment (as opt_comment when
// non-empty). It does not allocate.
func (w *NgWriter) WritePacket(iface int, f *source.Frame) error {
	if iface < 0 || iface >= len(w.snaplens) {
		return fmt.Errorf("pcapio: interface %d not added (have %d)", iface, len(w.snaplens))
	}
	if f.Timestamp < 0 {
		return errTimestamp
	}
	data := f.Data
	if s := w.snaplens[iface]; s > 0 && len(data) > s {
		data = data[:s]
	}
	if len(f.Comment) > 0xffff {
		return errors.New("pcapio: packet comment longer than 65535 bytes")
	}
	opts := 0
	if f.Comment != "" {
		opts = optionLen(len(f.Comment)) + 4
	}
	n := 32 + pad4(len(data)) + opts
	if n > maxBlockLen {
		return fmt.Errorf("pcapio: packet of %d bytes too large for a block", len(data))
	}
	ts := uint64(f.Timestamp)
	h := w.hdr[:28]
	le.PutUint32(h, blockEPB)
	le.PutUint32(h[4:], uint32(n))
	le.PutUint32(h[8:], uint32(iface))
	le.PutUint32(h[12:], uint32(ts>>32))
	le.PutUint32(h[16:], uint32(ts))
	le.PutUint32(h[20:], uint32(len(data)))
	le.PutUint32(h[24:], origLen(f.OrigLen, len(f.Data)))
	w.w.Write(h)
	w.w.Write(data)
	w.w.Write(w.zeros(pad4(len(data)) - len(data)))
	if f.Comment != "" {
		h = w.hdr[:4]
		le.PutUint16(h, optComment)
		le.PutUint16(h[2:], uint16(len(f.Comment)))
		w.w.Write(h)
		w.w.WriteString(f.Comment)
		w.w.Write(w.zeros(pad4(len(f.Comment)) - len(f.Comment)))
		w.w.Write(w.zeros(4)) // opt_endofopt
	}
	le.PutUint32(w.hdr[:4], uint32(n))
	_, err := w.w.Write(w.hdr[:4])
	return err
}

// zeros returns n (at most 4) zero bytes of padding.
func (w *NgWriter) zeros(n int) []byte {
	z := w.hdr[28:32]
	clear(z)
	return z[:n]
}

// Flush writes buffered data to the underlying writer.
func (w *NgWriter) Flush() error { return w.w.Flush() }

// PcapWriter writes a classic pcap file with nanosecond timestamps (magic
// a1b23c4d), version 2.4, little endian. Classic pcap has no comments:
// Frame.Comment is not written.
type PcapWriter struct {
	w       *bufio.Writer
	snaplen int
	hdr     [pcapRecordHeaderLen]byte
}

// NewPcapWriter writes the file header. A snaplen of 0 or less means
// 262144, libpcap's maximum.
func NewPcapWriter(w io.Writer, linkType uint32, snaplen int) (*PcapWriter, error) {
	if snaplen <= 0 {
		snaplen = maxPcapCaplen
	}
	if snaplen > maxBlockLen {
		return nil, fmt.Errorf("pcapio: snaplen %d out of range", snaplen)
	}
	pw := &PcapWriter{w: bufio.NewWriterSize(w, writeBufSize), snaplen: snaplen}
	b := make([]byte, 0, pcapFileHeaderLen)
	b = le.AppendUint32(b, pcapMagicNano)
	b = le.AppendUint16(b, 2)
	b = le.AppendUint16(b, 4)
	b = le.AppendUint32(b, 0) // thiszone
	b = le.AppendUint32(b, 0) // sigfigs
	b = le.AppendUint32(b, uint32(snaplen))
	b = le.AppendUint32(b, linkType)
	if _, err := pw.w.Write(b); err != nil {
		return nil, err
	}
	return pw, nil
}

// WritePacket writes one record: f.Timestamp, f.Data cut to the snaplen,
// and f.OrigLen (at least the captured length). It does not allocate.
func (w *PcapWriter) WritePacket(f *source.Frame) error {
	if f.Timestamp < 0 || f.Timestamp/1e9 > 0xffffffff {
		return errTimestamp
	}
	data := f.Data
	if len(data) > w.snaplen {
		data = data[:w.snaplen]
	}
	h := w.hdr[:]
	le.PutUint32(h, uint32(f.Timestamp/1e9))
	le.PutUint32(h[4:], uint32(f.Timestamp%1e9))
	le.PutUint32(h[8:], uint32(len(data)))
	le.PutUint32(h[12:], origLen(f.OrigLen, len(f.Data)))
	w.w.Write(h)
	_, err := w.w.Write(data)
	return err
}

// Flush writes buffered data to the underlying writer.
func (w *PcapWriter) Flush() error { return w.w.Flush() }

// optionLen is the encoded size of an option with n bytes of value.
func optionLen(n int) int { return 4 + pad4(n) }

func pad4(n int) int { return (n + 3) &^ 3 }

// appendOption appends a pcapng option, padded to 4 bytes.
func appendOption(b []byte, code uint16, val []byte) []byte {
	b = le.AppendUint16(b, code)
	b = le.AppendUint16(b, uint16(len(val)))
	b = append(b, val...)
	for i := len(val); i%4 != 0; i++ {
		b = append(b, 0)
	}
	return b
}

// origLen is the original length to record: at least the captured
// length, at most what 32 bits hold.
func origLen(orig, caplen int) uint32 {
	return uint32(min(uint64(max(orig, caplen)), 0xffffffff))
}
