package livecap

import (
	"errors"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// netns runs functions on a thread that lives in a network namespace of its
// own, with only lo, brought up. Sockets created by those functions stay in
// the namespace and can be used from any goroutine afterwards. The thread is
// never unlocked, so it exits (and leaves the namespace) when the test ends;
// the namespace disappears with its last socket.
type netns struct {
	calls chan func()
}

// newNetns creates the namespace, or skips the test when the process lacks
// CAP_SYS_ADMIN (unshare) or CAP_NET_RAW (checked when capturing).
func newNetns(t testing.TB) *netns {
	t.Helper()
	ns := &netns{calls: make(chan func())}
	errc := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: see netns
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		if err := linkUp("lo"); err != nil {
			errc <- err
			return
		}
		errc <- nil
		for f := range ns.calls {
			f()
		}
	}()
	if err := <-errc; err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("needs root (CAP_SYS_ADMIN and CAP_NET_RAW) to create a network namespace and capture in it: %v", err)
		}
		t.Fatalf("network namespace: %v", err)
	}
	t.Cleanup(func() { close(ns.calls) })
	return ns
}

// do runs f on the namespace's thread and waits for it.
func (ns *netns) do(f func()) {
	done := make(chan struct{})
	ns.calls <- func() { defer close(done); f() }
	<-done
}

// linkUp sets IFF_UP on the named interface of the calling thread's
// namespace.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// openIn opens a capture inside ns, skipping the test without CAP_NET_RAW.
func openIn(t testing.TB, ns *netns, cfg Config) *Handle {
	t.Helper()
	var h *Handle
	var err error
	ns.do(func() { h, err = Open(cfg) })
	if errors.Is(err, ErrNotPermitted) {
		t.Skipf("needs CAP_NET_RAW: %v", err)
	}
	if err != nil {
		t.Fatalf("Open(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}
