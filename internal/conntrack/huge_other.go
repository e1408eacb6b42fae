//go:build !linux

package conntrack

import "unsafe"

// adviseHuge does nothing where there is no MADV_HUGEPAGE.
func adviseHuge(unsafe.Pointer, uintptr) {}
