package report_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rstscope/rstscope/internal/engine"
	"github.com/rstscope/rstscope/internal/pcapio"
	"github.com/rstscope/rstscope/internal/report"
	"github.com/rstscope/rstscope/internal/testcap"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func render(t *testing.T, name string, data []byte, color bool) []byte {
	t.Helper()
	rd, err := pcapio.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	incs, st, err := engine.Run(rd, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	report.Text(&b, report.Input{Name: name, Format: rd.Format()}, st, incs, st.Incidents, st.NotDetailed, report.TextOptions{Color: color})
	return b.Bytes()
}

func golden(t *testing.T, file string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", file)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/report -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (review, then go test ./internal/report -update):\n%s", file, got)
	}
}

// The article's scenario 3, as the text report shows it.
func TestTextScenario3(t *testing.T) {
	out := render(t, "scenario3.pcapng", testcap.Scenario3().Pcapng(), false)
	golden(t, "scenario3.txt", out)
	for _, want := range []string{"stale-keepalive", "5.0 s idle", "[F.]", "[R] seq", "GET /test", "ConnectionPool"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("report lacks %q", want)
		}
	}
	if bytes.Contains(out, []byte("\x1b[")) {
		t.Error("colour codes without Color")
	}
}

func TestTextColor(t *testing.T) {
	out := render(t, "scenario3.pcapng", testcap.Scenario3().Pcapng(), true)
	if !bytes.Contains(out, []byte("\x1b[31m")) {
		t.Error("the RST should be red with Color")
	}
}

// Refused connections in a capture made by others (Zeek's pop3 trace).
func TestTextPop3(t *testing.T) {
	data, err := os.ReadFile("../../../shared/captures/zeek/scripts.base.protocols.pop3.basic.pcap")
	if err != nil {
		t.Skipf("shared captures missing: %v", err)
	}
	out := render(t, "pop3.basic.pcap", data, false)
	golden(t, "pop3.txt", out)
	if n := strings.Count(string(out), "refused: connection refused"); n != 6 {
		t.Errorf("%d refused incidents, want 6 (Zeek: 6 REJ)", n)
	}
}
