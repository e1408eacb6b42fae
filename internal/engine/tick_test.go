package engine_test

import (
	"testing"

	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/engine"
	. "github.com/rstscope/rstscope/internal/testcap"
)

// A refused connection that ended is diagnosed when the clock moves past
// its linger, with no further packet: what live capture relies on in quiet
// moments.
func TestTickFinishesWithoutPackets(t *testing.T) {
	var c Capture
	c.Add(Seg{At: 0, From: "10.0.0.1:40000", To: "10.0.0.2:80", Flags: S, Seq: 1000})
	c.Add(Seg{At: 0.001, From: "10.0.0.2:80", To: "10.0.0.1:40000", Flags: RA, Ack: 1001})
	var got []*diagnose.Incident
	pl := engine.NewPipeline(engine.Options{
		Track:      conntrack.Config{Linger: 1e9},
		OnIncident: func(inc *diagnose.Incident) { got = append(got, inc) },
	})
	for i := range c.Frames {
		pl.Feed(&c.Frames[i], uint64(i+1))
	}
	pl.Tick(T0 + 0.5e9) // still lingering
	if len(got) != 0 || pl.Tracked().Live != 1 {
		t.Fatalf("diagnosed before the linger passed: %v, %d live", got, pl.Tracked().Live)
	}
	pl.Tick(T0 + 2.1e9)
	if len(got) != 1 || got[0].Cause != "refused" || pl.Tracked().Live != 0 {
		t.Fatalf("after the linger: %d incidents, %d live", len(got), pl.Tracked().Live)
	}
	if _, st := pl.Close(); st.Frames != 2 {
		t.Errorf("Tick must not count as a packet: %d frames", st.Frames)
	}
}
