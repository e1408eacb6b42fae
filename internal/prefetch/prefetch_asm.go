//go:build amd64 || arm64

package prefetch

import "unsafe"

// Lines starts loading the n cache lines from p on, into all cache levels,
// and returns without waiting for them.
//
//go:noescape
func Lines(p unsafe.Pointer, n int)
