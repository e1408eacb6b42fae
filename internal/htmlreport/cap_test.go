package htmlreport

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/pcapio"
)

func openMany(t *testing.T, n, refusedEvery int) Data {
	t.Helper()
	path := filepath.Join(t.TempDir(), "many.pcap")
	writeMany(t, path, n, refusedEvery)
	rd, err := pcapio.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	return runEngine(t, "many.pcap", rd)
}

// With more incidents than MaxIncidents, only MaxIncidents are drawn, a note
// says how many were left out, and a rare cause is not crowded out by a
// frequent one.
func TestCap(t *testing.T) {
	d := openMany(t, 30, 1) // 30 refused, then one stale keep-alive
	if d.Counts[cause.Refused] != 30 || d.Counts[cause.StaleKeepalive] != 1 {
		t.Fatalf("counts %v", d.Counts)
	}
	d.MaxIncidents = 5
	page := render(t, d)
	doc := parse(t, page)
	secs := find(doc, "section")
	if len(secs) != 5 {
		t.Fatalf("%d incidents drawn, want 5", len(secs))
	}
	if !strings.Contains(text(secs[4]), "stale-keepalive") {
		t.Error("the one stale-keepalive incident was crowded out by refused ones")
	}
	if !strings.Contains(text(doc), "26 of 31 incidents are not drawn") {
		t.Error("no note of the incidents left out")
	}
	// The causes table still counts every incident.
	if !strings.Contains(string(page), `<td class="num">30</td>`) {
		t.Error("causes table does not count all 30 refused")
	}
}

// A capture with 100k connections gives a light page: only incidents are
// rendered, at most DefaultMaxIncidents.
func TestLargeCapture(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the 100k-connection capture")
	}
	d := openMany(t, 100_000, 10)
	if d.Stats.Track.Conns != 100_001 {
		t.Fatalf("%d connections, want 100001", d.Stats.Track.Conns)
	}
	page := render(t, d)
	t.Logf("100k connections, %d incidents: page of %d bytes", len(d.Incidents), len(page))
	if len(page) > 1<<20 {
		t.Errorf("page is %d bytes; want under 1 MiB", len(page))
	}
	doc := parse(t, page)
	if n := len(find(doc, "section")); n != DefaultMaxIncidents {
		t.Errorf("%d incidents drawn, want %d", n, DefaultMaxIncidents)
	}
	if !strings.Contains(text(doc), "incidents are not drawn") {
		t.Error("no note of the incidents left out")
	}
}
