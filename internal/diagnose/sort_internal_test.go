package diagnose

import (
	"slices"
	"testing"
)

// Finish orders incidents by time, then connection ID (nil first), then
// first packet, whatever order they were found in.
func TestFinishTotalOrder(t *testing.T) {
	mk := func(name string, ts int64, id uint64, pkt ...uint64) *Incident {
		inc := &Incident{Summary: name, Time: ts, Packets: pkt}
		if id != 0 {
			inc.Conn = &Snapshot{ID: id}
		}
		return inc
	}
	all := []*Incident{
		mk("t2", 2, 1, 1),
		mk("t1-id3", 1, 3, 9),
		mk("t1-id2-p7", 1, 2, 7),
		mk("t1-nil", 1, 0, 1),
		mk("t1-id2-p5", 1, 2, 5),
		mk("t1-id2-none", 1, 2),
		mk("t0", 0, 9, 9),
	}
	want := []string{"t0", "t1-nil", "t1-id2-none", "t1-id2-p5", "t1-id2-p7", "t1-id3", "t2"}
	// Every rotation of the input gives the same order.
	for r := range all {
		d := New(Options{})
		d.incidents = append(slices.Clone(all[r:]), all[:r]...)
		var got []string
		for _, inc := range d.Finish() {
			got = append(got, inc.Summary)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("rotation %d: order %v, want %v", r, got, want)
		}
	}
}
