package gcstart

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func percent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// Relax raises GOGC until the next collection, which puts it back.
func TestRelaxUntilFirstCollection(t *testing.T) {
	t.Setenv("GOGC", "")
	before := percent()
	if before < 0 || before >= FirstPercent {
		t.Skipf("GOGC is %d here", before)
	}
	back := make(chan struct{})
	Relax(func() { close(back) })
	if p := percent(); p != FirstPercent {
		t.Fatalf("after Relax GOGC is %d, want %d", p, FirstPercent)
	}
	runtime.GC()
	select {
	case <-back:
	case <-time.After(10 * time.Second):
		t.Fatal("the setting was not restored after a collection")
	}
	if p := percent(); p != before {
		t.Fatalf("after the collection GOGC is %d, want %d again", p, before)
	}
}

// A GOGC the user set is left alone.
func TestRelaxLeavesUsersSetting(t *testing.T) {
	t.Setenv("GOGC", "100")
	before := percent()
	Relax(nil)
	if p := percent(); p != before {
		t.Fatalf("GOGC set by the user: %d became %d", before, p)
	}
}
