package ktrace

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rstscope/rstscope/internal/netns"
)

// needKernel skips tests that need root and a kernel with reset reasons.
func needKernel(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("kernel tracepoints unavailable: %v", err)
	}
}

func TestReasonNames(t *testing.T) {
	needKernel(t)
	m, err := ReasonNames()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, name := range m {
		seen[name] = true
	}
	for _, name := range []string{"NO_SOCKET", "TCP_ABORT_ON_CLOSE", "TCP_STATE", "TCP_TIMEWAIT_SOCKET"} {
		if !seen[name] {
			t.Errorf("reason %s missing from %v", name, m)
		}
	}
}

// want is an event a scenario must produce.
type want struct {
	kind     Kind
	src, dst netip.AddrPort
	reason   string
}

func (w want) matches(ev Event) bool {
	return ev.Kind == w.kind && ev.Src == w.src && ev.Dst == w.dst && (w.kind != Send || ev.Reason == w.reason)
}

// TestResets provokes three kinds of reset in a private network namespace
// and expects the kernel's events with the right reasons and addresses.
// Other namespaces' resets may show up too: events are matched by 4-tuple.
func TestResets(t *testing.T) {
	needKernel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()

	var wants []want
	start := time.Now()
	err = netns.Do(func() error {
		var err error
		wants, err = provokeResets()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	got := make([]Event, len(wants))
	found := 0
	deadline := time.After(10 * time.Second)
	for found < len(wants) {
		select {
		case ev, ok := <-tr.Events():
			if !ok {
				t.Fatalf("events closed early: %v", tr.Err())
			}
			for i, w := range wants {
				if got[i].Kind == 0 && w.matches(ev) {
					got[i] = ev
					found++
					t.Logf("%-7s %s -> %s state=%s reason=%s cookie=%#x pid=%d comm=%q dt=%v",
						ev.Kind, ev.Src, ev.Dst, ev.State, ev.Reason, ev.Cookie, ev.PID, ev.Comm,
						time.Duration(ev.Time-start.UnixNano()))
				}
			}
		case <-deadline:
			for i, w := range wants {
				if got[i].Kind == 0 {
					t.Errorf("no %s event %s -> %s reason %q", w.kind, w.src, w.dst, w.reason)
				}
			}
			t.FailNow()
		}
	}
	for _, ev := range got {
		// The time conversion must put events where they happened: after
		// the test started and not in the future, within a second.
		now := time.Now()
		if d := now.Sub(time.Unix(0, ev.Time)); d < 0 || d > time.Second || ev.Time < start.UnixNano()-int64(10*time.Millisecond) {
			t.Errorf("event time %v is %v before now (test started %v)", time.Unix(0, ev.Time), d, start)
		}
		if ev.Kind == Receive && ev.Cookie == 0 {
			t.Errorf("receive event without socket cookie: %+v", ev)
		}
	}
	if tr.Lost() != 0 {
		t.Logf("kernel lost %d events", tr.Lost())
	}
}

// provokeResets runs inside a fresh namespace: a connect to a closed port
// (NO_SOCKET, plus the client's receive event), close() with unread data
// (TCP_ABORT_ON_CLOSE) and SO_LINGER 0 (TCP_STATE).
func provokeResets() ([]want, error) {
	lo := netip.MustParseAddr("127.0.0.1")
	var wants []want

	// 1. Closed port. Ports are random so other namespaces' traffic is
	// unlikely to match.
	cport := uint16(20000 + rand.IntN(20000))
	sport := cport + 1
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(cport)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", netip.AddrPortFrom(lo, sport).String())
	if err == nil {
		c.Close()
		return nil, errors.New("connect to a closed port succeeded")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("connect to closed port: %v", err)
	}
	client, server := netip.AddrPortFrom(lo, cport), netip.AddrPortFrom(lo, sport)
	wants = append(wants,
		want{Send, server, client, "NO_SOCKET"},
		want{Receive, client, server, ""})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	pair := func() (c, s *net.TCPConn, err error) {
		cc, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return nil, nil, err
		}
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
		sc, err := ln.Accept()
		if err != nil {
			cc.Close()
			return nil, nil, err
		}
		return cc.(*net.TCPConn), sc.(*net.TCPConn), nil
	}
	ap := func(a net.Addr) netip.AddrPort { return a.(*net.TCPAddr).AddrPort() }

	// 2. The server closes with unread data in its receive buffer.
	c1, s1, err := pair()
	if err != nil {
		return nil, err
	}
	defer c1.Close()
	if _, err := c1.Write([]byte("request body the server never reads")); err != nil {
		return nil, err
	}
	s1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s1.Read(make([]byte, 1)); err != nil { // the rest is now queued, unread
		return nil, err
	}
	wants = append(wants, want{Send, ap(s1.LocalAddr()), ap(s1.RemoteAddr()), "TCP_ABORT_ON_CLOSE"})
	s1.Close()

	// 3. The client closes with SO_LINGER {1, 0}.
	c2, s2, err := pair()
	if err != nil {
		return nil, err
	}
	defer s2.Close()
	if err := c2.SetLinger(0); err != nil {
		return nil, err
	}
	wants = append(wants, want{Send, ap(c2.LocalAddr()), ap(c2.RemoteAddr()), "TCP_STATE"})
	c2.Close()
	return wants, nil
}

// TestCloseRemovesInstance checks Close removes the instance, closes the
// channel and is idempotent.
func TestCloseRemovesInstance(t *testing.T) {
	needKernel(t)
	tr, err := Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tr.dir); err != nil {
		t.Fatalf("instance not created: %v", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tr.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("instance %s still there after Close (%v)", tr.dir, err)
	}
	if _, ok := <-tr.Events(); ok {
		t.Error("Events not closed after Close")
	}
	if err := tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestContextDone checks that cancelling Open's context ends the tracer as
// Close would.
func TestContextDone(t *testing.T) {
	needKernel(t)
	ctx, cancel := context.WithCancel(context.Background())
	tr, err := Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	cancel()
	select {
	case <-waitClosed(tr.Events()):
	case <-time.After(5 * time.Second):
		t.Fatal("Events not closed after the context was cancelled")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(tr.dir); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s not removed after the context was cancelled", tr.dir)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("Close after cancel: %v", err)
	}
}

func waitClosed(ch <-chan Event) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		for range ch {
		}
		close(done)
	}()
	return done
}

// TestStaleInstanceRemoved leaves an instance named after a dead process and
// expects Open to remove it.
func TestStaleInstanceRemoved(t *testing.T) {
	needKernel(t)
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	root, err := tracefs()
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(root, "instances", instancePrefix+strconv.Itoa(cmd.Process.Pid)+"-0")
	if err := os.Mkdir(stale, 0o750); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeInstance(stale) })
	tr, err := Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale instance %s not removed (%v)", stale, err)
	}
}
