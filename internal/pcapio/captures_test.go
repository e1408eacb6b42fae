package pcapio

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rstscope/rstscope/internal/source"
)

// zeekDir holds real captures from Zeek's test suite (see INDEX.md there),
// next to the repository: ../shared relative to the repository root.
const zeekDir = "../../../shared/captures/zeek"

func zeekCaptures(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(zeekDir, "*.pcap*"))
	if len(files) == 0 {
		t.Skipf("no captures in %s (the shared captures are not checked out next to the repository)", zeekDir)
	}
	return files
}

// TestZeekCaptures reads every real capture, plain and gzipped, and, when
// tcpdump is installed, checks frame count and every timestamp against it.
func TestZeekCaptures(t *testing.T) {
	tcpdump, lookErr := exec.LookPath("tcpdump")
	for _, path := range zeekCaptures(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			r, frames, err := readAll(t, data)
			if err != nil {
				t.Fatal(err)
			}
			if len(frames) == 0 || len(r.LinkTypes()) == 0 {
				t.Fatalf("%d frames, link types %v", len(frames), r.LinkTypes())
			}
			wantFormat := "pcap"
			if strings.HasSuffix(path, ".pcapng") {
				wantFormat = "pcapng"
			}
			if !strings.HasPrefix(r.Format(), wantFormat) {
				t.Errorf("Format() = %q, want %s", r.Format(), wantFormat)
			}
			for i, f := range frames {
				if len(f.data) == 0 || f.origLen < len(f.data) || !slices.Contains(r.LinkTypes(), f.linkType) {
					t.Errorf("frame %d: %d bytes, orig %d, link type %d", i, len(f.data), f.origLen, f.linkType)
				}
			}
			zr, zframes, err := readAll(t, gz(data))
			if err != nil || !slices.Equal(zframes, frames) || zr.Format() != "gzip+"+r.Format() {
				t.Errorf("gzipped: %q, %d frames, %v", zr.Format(), len(zframes), err)
			}

			if lookErr != nil {
				t.Skip("tcpdump not installed: not cross-checked")
			}
			ts, err := tcpdumpTimestamps(tcpdump, path)
			if err != nil {
				t.Fatal(err)
			}
			if len(ts) != len(frames) {
				t.Fatalf("%d frames, tcpdump counts %d", len(frames), len(ts))
			}
			for i, f := range frames {
				if f.ts != ts[i] {
					t.Errorf("frame %d: timestamp %d, tcpdump says %d", i+1, f.ts, ts[i])
				}
			}
		})
	}
}

// tcpdumpTimestamps returns the timestamp, in Unix ns, of every packet
// tcpdump prints for the file.
func tcpdumpTimestamps(tcpdump, path string) ([]int64, error) {
	cmd := exec.Command(tcpdump, "--time-stamp-precision=nano", "-tt", "-nn", "-q", "-r", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("tcpdump: %v: %s", err, stderr.Bytes())
	}
	var ts []int64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// Packet lines start with "seconds.nanoseconds"; any other line
		// continues the previous packet.
		first, _, _ := strings.Cut(sc.Text(), " ")
		sec, nsec, ok := strings.Cut(first, ".")
		s, err1 := strconv.ParseInt(sec, 10, 64)
		ns, err2 := strconv.ParseInt(nsec, 10, 64)
		if ok && err1 == nil && err2 == nil && len(nsec) == 9 {
			ts = append(ts, s*1e9+ns)
		}
	}
	return ts, sc.Err()
}

// TestTcpdumpReadsWriters checks the writers' output with libpcap.
func TestTcpdumpReadsWriters(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump not installed")
	}
	// A TCP SYN in Ethernet. (Not raw IP: libpcap 1.10 rejects a second
	// pcapng interface of LINKTYPE_RAW, comparing it with DLT_RAW.)
	syn := []byte{
		2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00,
		0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
		0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
	}
	dir := t.TempDir()
	var ngBuf, pcapBuf bytes.Buffer
	ng, _ := NewNgWriter(&ngBuf)
	ng.AddInterface(source.LinkEthernet, 0, "a")
	ng.AddInterface(source.LinkEthernet, 0, "b")
	pw, _ := NewPcapWriter(&pcapBuf, source.LinkEthernet, 0)
	var want []int64
	for i := range 10 {
		f := source.Frame{Timestamp: testTS + int64(i)*1_000_000_007, Data: syn, OrigLen: len(syn), Comment: "syn"}
		if err := ng.WritePacket(i%2, &f); err != nil {
			t.Fatal(err)
		}
		if err := pw.WritePacket(&f); err != nil {
			t.Fatal(err)
		}
		want = append(want, f.Timestamp)
	}
	ng.Flush()
	pw.Flush()
	for name, b := range map[string][]byte{"w.pcapng": ngBuf.Bytes(), "w.pcap": pcapBuf.Bytes()} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, b, 0o644)
		got, err := tcpdumpTimestamps(tcpdump, path)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: tcpdump sees timestamps %v, want %v", name, got, want)
		}
	}
}
