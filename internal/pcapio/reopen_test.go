package pcapio

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// A capture file opened by path can be read again, from its start, by an
// independent reader that sees the same frames; bytes appended after the
// first open (tcpdump still writing) are seen by neither.
func TestReopen(t *testing.T) {
	p := newPcapFile(leOrder, true, 65535, 1)
	for i := uint32(0); i < 50; i++ {
		p.packet(1000+i, i*7, bytes.Repeat([]byte{byte(i)}, 60+int(i)))
	}
	path := filepath.Join(t.TempDir(), "c.pcap")
	if err := os.WriteFile(path, p.b, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The file grows after it was opened.
	more := newPcapFile(leOrder, true, 65535, 1).packet(9999, 1, []byte("late")).b[24:]
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.Write(more)
	f.Close()

	again, err := r.Reopen()
	if err != nil {
		t.Fatal(err)
	}
	first, err1 := drain(r)
	second, err2 := drain(again.(*Reader))
	if err1 != nil || err2 != nil || len(first) != 50 {
		t.Fatalf("%d frames, errors %v %v", len(first), err1, err2)
	}
	if !reflect.DeepEqual(first, second) {
		t.Errorf("the reopened reader saw other frames")
	}
	// Closing the second reader leaves the file to the first.
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
	if third, err := r.Reopen(); err != nil {
		t.Fatal(err)
	} else if fr, _ := drain(third.(*Reader)); len(fr) != 50 {
		t.Errorf("after closing a reopened reader: %d frames", len(fr))
	}
}

func TestReopenReadOnce(t *testing.T) {
	p := newPcapFile(leOrder, false, 65535, 1).packet(1, 2, []byte("x"))
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(p.b)
	zw.Close()
	for name, mk := range map[string]func() (*Reader, error){
		"stream": func() (*Reader, error) { return NewReader(bytes.NewReader(p.b)) },
		"gzip":   func() (*Reader, error) { return NewReaderAt(bytes.NewReader(z.Bytes()), int64(z.Len())) },
		"stdin":  func() (*Reader, error) { return Open("-", bytes.NewReader(p.b)) },
	} {
		r, err := mk()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := r.Reopen(); !errors.Is(err, ErrNotReopenable) {
			t.Errorf("%s: Reopen gave %v, want ErrNotReopenable", name, err)
		}
	}
	// An uncompressed ReaderAt can be.
	r, _ := NewReaderAt(bytes.NewReader(p.b), int64(len(p.b)))
	if _, err := r.Reopen(); err != nil {
		t.Errorf("ReaderAt: %v", err)
	}
}
