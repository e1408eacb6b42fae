package livecap

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	rnetns "github.com/rstscope/rstscope/internal/netns"
)

// netns is a thread in a network namespace of its own (internal/netns).
type netns struct{ *rnetns.Thread }

// newNetns creates the namespace, or skips the test when the process lacks
// CAP_SYS_ADMIN (unshare) or CAP_NET_RAW (checked when capturing).
func newNetns(t testing.TB) *netns {
	t.Helper()
	th, err := rnetns.NewThread()
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("needs root (CAP_SYS_ADMIN and CAP_NET_RAW) to create a network namespace and capture in it: %v", err)
		}
		t.Fatalf("network namespace: %v", err)
	}
	t.Cleanup(th.Close)
	return &netns{th}
}

// do runs f on the namespace's thread and waits for it.
func (ns *netns) do(f func()) { ns.Do(f) }

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
