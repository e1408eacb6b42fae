//go:build !linux

package pcapio

import "os"

// mapFile never maps: files are read through a buffer.
func mapFile(f *os.File, minSize int64) []byte { return nil }

func munmap(m []byte) error   { return nil }
func adviseDone(m []byte)     {}
func populate(m []byte) error { return nil }
