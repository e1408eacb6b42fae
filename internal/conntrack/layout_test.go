package conntrack

import (
	"testing"
	"unsafe"
)

// The layout the hot path relies on (see Endpoint and Conn): both
// endpoints start on a cache line, their per-packet fields and the Conn's
// own fit in the lines before the cold ones; packet records do not
// straddle lines.
func TestLayout(t *testing.T) {
	var c Conn
	var e Endpoint
	if n := unsafe.Sizeof(e); n%64 != 0 {
		t.Errorf("Endpoint is %d bytes, not whole cache lines (endpointPad)", n)
	}
	if off := unsafe.Offsetof(c.Ep); off%64 != 0 {
		t.Errorf("Conn.Ep at offset %d, not on a cache line (connPad)", off)
	}
	if off := unsafe.Offsetof(e.Addr); off > 128 {
		t.Errorf("Endpoint's per-packet fields end at %d: more than two lines", off)
	}
	if n := unsafe.Sizeof(c); n > 1408 || n%64 != 0 {
		t.Errorf("Conn is %d bytes: want whole lines within the 1408-byte size class", n)
	}
	if off := unsafe.Offsetof(c.recs); off%64 != 0 {
		t.Errorf("Conn.recs at offset %d, not on a cache line", off)
	}
	var r record
	if n := unsafe.Sizeof(r); 64%n != 0 {
		t.Errorf("a packet record is %d bytes: records straddle cache lines", n)
	}
}
