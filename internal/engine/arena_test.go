package engine

import (
	"runtime"
	"testing"
	"unsafe"

	"github.com/rstscope/rstscope/internal/smaps"
)

// A shard's batches have arenas of their own, side by side in memory the
// kernel was asked to back with huge pages: /proc/self/smaps says
// "THPeligible: 1" for it (and fails without the advice).
func TestShardArenasAdvisedHuge(t *testing.T) {
	sh := newShard(NewPipeline(Options{}), shardBatches)
	if len(sh.free) != shardBatches {
		t.Fatalf("%d batches to fill, want %d", len(sh.free), shardBatches)
	}
	first := uintptr(unsafe.Pointer(unsafe.SliceData(sh.free[0].arena)))
	for i, b := range sh.free {
		p := uintptr(unsafe.Pointer(unsafe.SliceData(b.arena)))
		if len(b.arena) != arenaCap || cap(b.arena) != arenaCap || p != first+uintptr(i*arenaCap) {
			t.Fatalf("batch %d: arena of %d/%d bytes at +%d, want %d at +%d", i, len(b.arena), cap(b.arena), p-first, arenaCap, i*arenaCap)
		}
	}
	ok, skip := smaps.HugeEligible(first, uintptr(shardBatches*arenaCap))
	if skip != "" {
		t.Skip(skip)
	}
	if !ok {
		t.Error("the arenas' mapping is not THPeligible")
	}
	runtime.KeepAlive(sh)
}
