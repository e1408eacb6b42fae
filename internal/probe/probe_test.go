package probe

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// littleEndian: the fixtures hold /proc/net/tcp as an x86/arm64 kernel prints it.
func littleEndian() bool {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], 1)
	return b[0] == 1
}

// fixtureProc copies testdata/proc into a temporary directory and adds
// /proc/4242/fd links (symlinks are awkward in a repository) pointing at the
// fixture sockets 1001 and 2001, plus a pipe that must be ignored.
func fixtureProc(t *testing.T) string {
	t.Helper()
	if !littleEndian() {
		t.Skip("fixtures are little-endian /proc text")
	}
	root := t.TempDir()
	for _, f := range []string{"net/tcp", "net/tcp6", "4242/comm"} {
		b, err := os.ReadFile(filepath.Join("testdata/proc", f))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755)
		if err := os.WriteFile(filepath.Join(root, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fd := filepath.Join(root, "4242", "fd")
	os.MkdirAll(fd, 0o755)
	for name, target := range map[string]string{"3": "socket:[1001]", "4": "socket:[2001]", "5": "pipe:[77]", "6": "socket:[1001]"} {
		if err := os.Symlink(target, filepath.Join(fd, name)); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(root, "self"), 0o755) // not a PID: skipped
	return root
}

func TestParseNetTCP(t *testing.T) {
	if !littleEndian() {
		t.Skip("fixtures are little-endian /proc text")
	}
	f, err := os.Open("testdata/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	socks, err := ParseNetTCP(f, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 4 {
		t.Fatalf("got %d sockets, want 4 (garbage line skipped): %+v", len(socks), socks)
	}
	s := socks[0]
	if s.Local != netip.MustParseAddrPort("127.0.0.1:8080") || s.State != stateListen || s.Inode != 1001 || s.UID != 1000 {
		t.Errorf("row 0 = %+v", s)
	}
	if socks[1].Queue != 3 {
		t.Errorf("accept queue of row 1 = %d, want 3", socks[1].Queue)
	}
	if socks[3].Remote != netip.MustParseAddrPort("127.0.0.1:54321") || socks[3].State != 1 {
		t.Errorf("row 3 = %+v", socks[3])
	}
}

func TestReadListenersFixture(t *testing.T) {
	ls, err := ReadListeners(fixtureProc(t))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Listener{}
	for _, l := range ls {
		got[l.Local.String()] = l
	}
	for _, want := range []string{"0.0.0.0:22", "127.0.0.1:8080", "127.0.0.2:9000", "[::]:443", "[::1]:5432", "127.0.0.1:8081"} {
		if _, ok := got[want]; !ok {
			t.Errorf("listener %s missing; have %v", want, ls)
		}
	}
	if len(ls) != 6 {
		t.Errorf("got %d listeners, want 6 (the ESTABLISHED row is not one)", len(ls))
	}
	if p := got["127.0.0.1:8080"].Procs; len(p) != 1 || p[0].PID != 4242 || p[0].Name != "fixture-httpd" {
		t.Errorf("owner of 8080 = %+v, want one fixture-httpd pid 4242", p)
	}
	if p := got["[::]:443"].Procs; len(p) != 1 || p[0].PID != 4242 {
		t.Errorf("owner of [::]:443 = %+v", p)
	}
	if !got["127.0.0.1:8081"].IPv6 {
		t.Errorf("::ffff:127.0.0.1 row should be unmapped and marked as an IPv6 socket")
	}
	if p := got["0.0.0.0:22"].Procs; len(p) != 0 {
		t.Errorf("owner of 22 = %+v, want none", p)
	}
}

func TestNearMissesFixture(t *testing.T) {
	ls, err := ReadListeners(fixtureProc(t))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		target string
		want   NearMissKind // "" = none
		addr   string       // the listener named
	}{
		{"192.168.1.10:8080", LoopbackOnly, "127.0.0.1:8080"},
		{"127.0.0.3:9000", OtherAddress, "127.0.0.2:9000"},
		{"127.0.0.1:443", "", ""}, // [::]:443 is dual-stack by default: an exact match, not a near miss
		{"127.0.0.1:5432", IPv6Only, "[::1]:5432"},
		{"[::1]:8080", IPv4Only, "127.0.0.1:8080"},
		{"127.0.0.1:8085", NearPort, "127.0.0.1:8080"},
		{"127.0.0.1:80", NearPort, "127.0.0.1:8080"}, // the 80/8080 pair
		{"127.0.0.1:30000", "", ""},
	}
	for _, c := range cases {
		nms := NearMisses(netip.MustParseAddrPort(c.target), ls)
		if c.want == "" {
			if len(nms) != 0 {
				t.Errorf("%s: near misses %+v, want none", c.target, nms)
			}
			continue
		}
		found := false
		for _, nm := range nms {
			if nm.Kind == c.want && nm.Listener.Addr.String() == c.addr {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: want %s naming %s, got %+v", c.target, c.want, c.addr, nms)
		}
	}
}

// freePort returns a port on 127.0.0.1 that was just closed: nothing listens.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

func run(t *testing.T, target string) AddrResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := Run(ctx, target, Options{Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 {
		t.Fatalf("want one result, got %+v", rep.Results)
	}
	return rep.Results[0]
}

func TestOpen(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := run(t, l.Addr().String())
	if r.Verdict != Open || r.Cause != "" || !r.Local {
		t.Fatalf("got %+v, want open, local", r)
	}
	if len(r.Listeners) != 1 {
		t.Fatalf("listeners = %+v, want ours", r.Listeners)
	}
	// Our own /proc/PID/fd is always readable, root or not.
	ok := false
	for _, p := range r.Listeners[0].Procs {
		ok = ok || p.PID == os.Getpid()
	}
	if !ok {
		t.Errorf("owner %+v does not name this test (pid %d)", r.Listeners[0].Procs, os.Getpid())
	}
}

func TestRefused(t *testing.T) {
	target := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(freePort(t))).String()
	r := run(t, target)
	if r.Verdict != Refused || r.Cause != "refused" {
		t.Fatalf("got %+v, want refused", r)
	}
	if r.Attempts[0].Elapsed > 400*time.Millisecond {
		t.Errorf("refusal on loopback took %v", r.Attempts[0].Elapsed)
	}
	var buf bytes.Buffer
	WriteText(&buf, &Report{Target: target, Results: []AddrResult{r}})
	if !strings.Contains(buf.String(), "REFUSED") || !strings.Contains(buf.String(), "Nothing on this machine listens") {
		t.Errorf("text output:\n%s", buf.String())
	}
}

// TestNearMissLive listens on 127.0.0.2:P and probes 127.0.0.3:P: refused,
// and the near miss names the 127.0.0.2 listener.
func TestNearMissLive(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2 here: %v", err)
	}
	defer l.Close()
	p := l.Addr().(*net.TCPAddr).Port
	r := run(t, net.JoinHostPort("127.0.0.3", strconv.Itoa(p)))
	if r.Verdict != Refused {
		t.Fatalf("verdict %s, want refused", r.Verdict)
	}
	if len(r.NearMisses) == 0 || r.NearMisses[0].Kind != OtherAddress || r.NearMisses[0].Listener.Addr != netip.MustParseAddrPort(l.Addr().String()) {
		t.Fatalf("near misses = %+v, want other-address naming %s", r.NearMisses, l.Addr())
	}
	var buf bytes.Buffer
	WriteText(&buf, &Report{Target: "x", Results: []AddrResult{r}})
	if !strings.Contains(buf.String(), "near miss (other-address): listens on 127.0.0.2:") {
		t.Errorf("text output does not name the near miss:\n%s", buf.String())
	}
}

// TestIPv6OnlyLive: a service on [::1]:P probed as 127.0.0.1:P.
func TestIPv6OnlyLive(t *testing.T) {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	defer l.Close()
	p := l.Addr().(*net.TCPAddr).Port
	r := run(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if r.Verdict != Refused || len(r.NearMisses) == 0 || r.NearMisses[0].Kind != IPv6Only {
		t.Fatalf("got %+v, want refused with an ipv6-only near miss", r)
	}
}

// TestNoAnswer makes a listener whose accept queue is full: listen(fd, 0)
// and never accept. Linux then drops further SYNs (tcp_abort_on_overflow=0,
// the default), which is exactly what a DROP firewall rule looks like from
// the client: no SYN-ACK, no RST.
func TestNoAnswer(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_abort_on_overflow"); err == nil && strings.TrimSpace(string(b)) != "0" {
		t.Skip("tcp_abort_on_overflow=1: a full queue resets instead of dropping")
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skip(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	target := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(sa.(*syscall.SockaddrInet4).Port))
	// Fill the queue: connections complete until it is full, then one times out.
	filled := false
	for i := 0; i < 8 && !filled; i++ {
		c, err := net.DialTimeout("tcp", target.String(), 300*time.Millisecond)
		if err != nil {
			filled = true
			break
		}
		defer c.Close()
	}
	if !filled {
		t.Skip("accept queue never filled (kernel ignores backlog 0?)")
	}
	r := run(t, target.String())
	if r.Verdict != NoAnswer || r.Cause != "unanswered-syn" {
		t.Fatalf("got %+v, want no-answer", r)
	}
	if d := r.Attempts[0].Elapsed; d < 450*time.Millisecond || d > 2*time.Second {
		t.Errorf("no-answer attempt took %v, want about the 500 ms timeout", d)
	}
	if len(r.Listeners) != 1 || len(r.Hints) == 0 || !strings.Contains(r.Hints[0], "accept queue") {
		t.Errorf("want the listener and an accept-queue hint, got %+v / %q", r.Listeners, r.Hints)
	}
}

func TestBadTarget(t *testing.T) {
	for _, s := range []string{"localhost", "127.0.0.1:99999", "127.0.0.1:"} {
		if _, err := Run(context.Background(), s, Options{Timeout: 100 * time.Millisecond}); err == nil {
			t.Errorf("%q: want an error", s)
		}
	}
}

func TestJSONOneObjectPerAddress(t *testing.T) {
	var buf bytes.Buffer
	rep := &Report{Target: "h:1", Results: []AddrResult{
		{Addr: netip.MustParseAddrPort("127.0.0.1:1"), Verdict: Refused, Attempts: []Attempt{{State: Refused, Ms: 0.1}}},
		{Addr: netip.MustParseAddrPort("[::1]:1"), Verdict: Open, Attempts: []Attempt{{State: Open, Ms: 0.2}}},
	}}
	if err := WriteJSON(&buf, rep); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &m); err != nil || m["addr"] != "[::1]:1" || m["verdict"] != "open" || m["target"] != "h:1" {
		t.Errorf("line 2 = %s (%v)", lines[1], err)
	}
}

func TestCleanProcessName(t *testing.T) {
	var buf bytes.Buffer
	WriteText(&buf, &Report{Target: "t", Results: []AddrResult{{
		Addr: netip.MustParseAddrPort("127.0.0.1:1"), Verdict: Open, Local: true,
		Listeners: []ListenerInfo{{Addr: netip.MustParseAddrPort("127.0.0.1:1"), Procs: []Process{{PID: 1, Name: "evil\x1b]0;pwned\x07"}}}},
	}}})
	if strings.ContainsAny(buf.String(), "\x1b\x07") {
		t.Errorf("escape sequence reached the terminal: %q", buf.String())
	}
}
