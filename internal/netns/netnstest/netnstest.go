// Package netnstest gives tests a thread in a network namespace of their own
// (netns.Thread), skipping the test with a clear message where the process
// may not create one (it needs CAP_SYS_ADMIN; capture inside also needs
// CAP_NET_RAW). The namespace goes away when the test ends.
package netnstest

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rstscope/rstscope/internal/netns"
)

// Thread creates the namespace for t, or skips t.
func Thread(t testing.TB) *netns.Thread {
	t.Helper()
	th, err := netns.NewThread()
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("needs root (CAP_SYS_ADMIN and CAP_NET_RAW) to create a network namespace and capture in it: %v", err)
		}
		t.Fatalf("network namespace: %v", err)
	}
	t.Cleanup(th.Close)
	return th
}
