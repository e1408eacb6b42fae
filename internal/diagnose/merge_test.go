package diagnose_test

import (
	"testing"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/diagnose"
	. "github.com/rstscope/rstscope/internal/testcap"
)

// shards feeds a capture to n batch diagnosers, each behind its own
// tracker, choosing the shard of each packet with pick (by connection, as a
// sharded engine would); packet numbers are the capture's.
func shards(t *testing.T, c *Capture, opts []diagnose.Options, pick func(p *decode.Parsed) int) []*diagnose.Diagnoser {
	t.Helper()
	ds := make([]*diagnose.Diagnoser, len(opts))
	trs := make([]*conntrack.Tracker, len(opts))
	var now int64
	for i := range opts {
		d := diagnose.New(opts[i])
		ds[i] = d
		trs[i] = conntrack.New(conntrack.Config{}, func(c *conntrack.Conn) { d.Conn(c, now) })
	}
	var p decode.Parsed
	for i := range c.Frames {
		f := &c.Frames[i]
		now = max(now, f.Timestamp)
		p.Decode(f.LinkType, f.Data)
		if p.Status != decode.OK {
			t.Fatalf("frame %d: %v", i+1, p.Status)
		}
		trs[pick(&p)].Add(&p, uint64(i+1), f.Timestamp)
	}
	for _, tr := range trs {
		tr.Flush()
	}
	return ds
}

// byUpstream puts the proxy's upstream connections in shard 1, the rest in 0.
func byUpstream(p *decode.Parsed) int {
	if p.SrcPort == 8080 || p.DstPort == 8080 {
		return 1
	}
	return 0
}

// A 502 in one shard is tied to its upstream failure found in another once
// the shards' diagnosers are merged.
func TestMergeTiesAcrossShards(t *testing.T) {
	var c Capture
	proxyClient(&c, client, 0, 0.02)
	refusedAt(&c, proxyOut, upstream, 0)
	c.Add(Seg{At: 1, From: cli, To: srv, Flags: S, Seq: 1000, Win: 65535}) // refused too, in shard 0
	c.Add(Seg{At: 1.0001, From: srv, To: cli, Flags: RA, Ack: 1001})

	// Without Merge, the shard holding the 502 cannot tie it.
	ds := shards(t, &c, []diagnose.Options{{}, {}}, byUpstream)
	for _, inc := range ds[0].Finish() {
		if inc.Cause == cause.UpstreamFailure && inc.Facts["upstream"] != "not captured" {
			t.Fatalf("shard 0 alone tied its 502: %s", inc.Summary)
		}
	}

	ds = shards(t, &c, []diagnose.Options{{}, {}}, byUpstream)
	ds[0].Merge(ds[1])
	incs := ds[0].Finish()
	var he, up, other *diagnose.Incident
	for _, inc := range incs {
		switch {
		case inc.Cause == cause.UpstreamFailure:
			he = inc
		case inc.Cause == cause.Refused && inc.Conn.Server == upstream:
			up = inc
		case inc.Cause == cause.Refused:
			other = inc
		}
	}
	if he == nil || up == nil || other == nil || len(incs) != 3 {
		t.Fatalf("after Merge: %d incidents, want the 502 and two refused", len(incs))
	}
	if len(he.RelatedConns) != 1 || he.RelatedConns[0] != up.Conn || he.Facts["upstream_failure"] != "was refused" {
		t.Errorf("502 not tied to the upstream refused in the other shard: %s", he.Summary)
	}
	if len(up.Related) != 1 || up.Related[0] != he.Conn.UID {
		t.Errorf("the upstream's incident does not name the client's connection: %v", up.Related)
	}
	for i := 1; i < len(incs); i++ {
		if incs[i].Time < incs[i-1].Time {
			t.Errorf("incidents out of time order at %d", i)
		}
	}
	if n := ds[0].Counts(); n[cause.Refused] != 2 || n[cause.UpstreamFailure] != 1 || ds[0].Dropped() != 0 {
		t.Errorf("counts %v, dropped %d", n, ds[0].Dropped())
	}
	if n, f, p := ds[1].Held(); n != 0 || f != 0 || p != 0 || len(ds[1].Counts()) != 0 {
		t.Errorf("the merged diagnoser still holds %d incidents, %d failures, %d pending, counts %v", n, f, p, ds[1].Counts())
	}
}

// Merge respects MaxIncidents: what goes beyond is counted as dropped.
func TestMergeMaxIncidents(t *testing.T) {
	var c Capture
	for i, pair := range [][2]string{{"10.0.0.1:1000", "10.0.0.2:80"}, {"10.0.0.3:1000", "10.0.0.4:8080"}, {"10.0.0.5:1000", "10.0.0.6:8080"}} {
		at := float64(i)
		c.Add(Seg{At: at, From: pair[0], To: pair[1], Flags: S, Seq: 1000, Win: 65535})
		c.Add(Seg{At: at + 0.0001, From: pair[1], To: pair[0], Flags: RA, Ack: 1001})
	}
	ds := shards(t, &c, []diagnose.Options{{MaxIncidents: 2}, {}}, byUpstream)
	if n, _, _ := ds[1].Held(); n != 2 {
		t.Fatalf("shard 1 holds %d incidents, want 2", n)
	}
	ds[0].Merge(ds[1])
	incs := ds[0].Finish()
	if len(incs) != 2 || ds[0].Dropped() != 1 || ds[0].Counts()[cause.Refused] != 3 {
		t.Errorf("%d incidents kept, %d dropped, counts %v; want 2 kept, 1 dropped, 3 counted", len(incs), ds[0].Dropped(), ds[0].Counts())
	}
}
