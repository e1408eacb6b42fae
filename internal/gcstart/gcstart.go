// Package gcstart lets a batch run's heap grow further than usual before
// its first garbage collection, and then restores the collector's setting.
//
// `rstscope analyze` builds its long-lived structures (connection slabs,
// the shards' batch arenas, tables) in the first fraction of a second and
// makes little garbage afterwards. Under the default setting (GOGC=100)
// the collector runs each time the heap doubles on the way up: four
// collections on the bench capture, at 7, 13, 28 and 57 MB, each scanning
// the connections built so far, cold, for garbage that is not there. With
// the first collection at 9 times the initial heap (GOGC=800) there is one,
// at about 36 MB; after it the usual setting applies, so the heap stays
// within twice what is live as before. The first collection's wait is
// bounded (a few tens of MB, whatever the input).
package gcstart

import (
	"os"
	"runtime"
	"runtime/debug"
)

// FirstPercent is the GOGC value until the first collection.
const FirstPercent = 800

// Relax sets the collector's GOGC to FirstPercent until the next
// collection has run, then back to what it was. It does nothing if the
// GOGC environment variable is set (the user chose) or the collector is
// off. done, if not nil, is called once the setting is back.
func Relax(done func()) {
	if os.Getenv("GOGC") != "" {
		return
	}
	old := debug.SetGCPercent(FirstPercent)
	if old < 0 || old >= FirstPercent {
		debug.SetGCPercent(old)
		return
	}
	// The sentinel is unreachable from here on: the next collection
	// finds it and runs its finalizer. (Not a tiny object: those share a
	// block, and their finalizers may never run.)
	s := &sentinel{}
	runtime.SetFinalizer(s, func(*sentinel) {
		debug.SetGCPercent(old)
		if done != nil {
			done()
		}
	})
}

type sentinel struct {
	_ [4]*byte
}
