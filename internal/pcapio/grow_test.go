package pcapio

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A capture file opened by path is read up to the size it had when it was
// opened: bytes appended afterwards (tcpdump still writing) are not seen,
// not even as a record cut in the middle.
func TestFileReadToOpenSize(t *testing.T) {
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

	frames, err := drain(r)
	if err != nil || len(frames) != 50 {
		t.Fatalf("%d frames, error %v; want the 50 there were at open", len(frames), err)
	}
}
