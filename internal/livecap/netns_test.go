package livecap

import (
	"errors"
	"testing"

	rnetns "github.com/rstscope/rstscope/internal/netns"
	"github.com/rstscope/rstscope/internal/netns/netnstest"
)

// netns is a thread in a network namespace of the test's own.
type netns = rnetns.Thread

func newNetns(t testing.TB) *netns { return netnstest.Thread(t) }

// openIn opens a capture inside ns, skipping the test without CAP_NET_RAW.
func openIn(t testing.TB, ns *netns, cfg Config) *Handle {
	t.Helper()
	var h *Handle
	var err error
	ns.Do(func() { h, err = Open(cfg) })
	if errors.Is(err, ErrNotPermitted) {
		t.Skipf("needs CAP_NET_RAW: %v", err)
	}
	if err != nil {
		t.Fatalf("Open(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}
