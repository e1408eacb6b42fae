package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rstscope/rstscope/internal/cli"
	. "github.com/rstscope/rstscope/internal/testcap"
)

func runCmd(t *testing.T, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(&cli.Env{Stdin: bytes.NewReader(stdin), Stdout: &out, Stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestAnalyzeJSONContract(t *testing.T) {
	path := writeTemp(t, "s3.pcapng", Scenario3().Pcapng())
	code, out, errs := runCmd(t, nil, "analyze", path, "--json") // flag after the file
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := jsonLines(t, out)
	if len(lines) != 3 {
		t.Fatalf("want incident, conn, summary; got %d lines:\n%s", len(lines), out)
	}
	inc, conn, sum := lines[0], lines[1], lines[2]
	if inc["type"] != "incident" || conn["type"] != "conn" || sum["type"] != "summary" {
		t.Fatalf("order: %v %v %v", inc["type"], conn["type"], sum["type"])
	}
	for _, k := range []string{"kind", "cause", "time", "conn", "reset_by", "packets", "summary", "explanation", "advice", "related", "facts"} {
		if _, ok := inc[k]; !ok {
			t.Errorf("incident lacks %q", k)
		}
	}
	if inc["cause"] != "stale-keepalive" || inc["reset_by"] != "server" || inc["kind"] != "reset" {
		t.Errorf("incident %v %v %v", inc["cause"], inc["reset_by"], inc["kind"])
	}
	if f := inc["facts"].(map[string]any); f["server_idle_timeout_s"] == nil {
		t.Errorf("facts lack server_idle_timeout_s: %v", f)
	}
	ref := inc["conn"].(map[string]any)
	if ref["uid"] != conn["uid"] || ref["client"] != "10.211.55.10:52000" || ref["server"] != "10.211.55.5:80" {
		t.Errorf("conn ref %v vs conn %v", ref, conn["uid"])
	}
	for _, k := range []string{"uid", "start", "duration_s", "client", "server", "conn_state", "history", "client_pkts", "server_pkts", "client_bytes", "server_bytes", "http"} {
		if _, ok := conn[k]; !ok {
			t.Errorf("conn lacks %q", k)
		}
	}
	if conn["conn_state"] != "RSTR" || conn["history"] != "ShADdfr" {
		t.Errorf("conn_state %v history %v", conn["conn_state"], conn["history"])
	}
	// Bytes are TCP payload bytes (Zeek counts them from sequence numbers):
	// the client sent the request twice, at different offsets.
	req := "GET /test HTTP/1.1\r\nHost: test.foo.com\r\nConnection: Keep-Alive\r\n\r\n"
	if got := conn["client_bytes"].(float64); got != float64(2*len(req)) {
		t.Errorf("client_bytes %v, want %d", got, 2*len(req))
	}
	if start := conn["start"].(string); !strings.HasPrefix(start, "2023-11-14T22:13:20") {
		t.Errorf("start %s", start)
	}
	http := conn["http"].([]any)
	if len(http) != 3 || http[0].(map[string]any)["method"] != "GET" || http[1].(map[string]any)["status"] != float64(200) {
		t.Errorf("http %v", http)
	}
	if sum["connections"] != float64(1) || sum["packets"] != float64(10) {
		t.Errorf("summary %v", sum)
	}
}

func TestAnalyzeIPv6Addresses(t *testing.T) {
	var c Capture
	c.Add(Seg{At: 0, From: "[::1]:40000", To: "[::1]:80", Flags: S, Seq: 1})
	c.Add(Seg{At: 0.001, From: "[::1]:80", To: "[::1]:40000", Flags: RA, Ack: 2})
	path := writeTemp(t, "v6.pcap", c.Pcap())
	code, out, _ := runCmd(t, nil, "analyze", "--json", path)
	lines := jsonLines(t, out)
	if code != 0 || len(lines) < 2 || lines[1]["client"] != "[::1]:40000" || lines[1]["server"] != "[::1]:80" {
		t.Fatalf("exit %d, lines %v", code, lines)
	}
}

func TestAnalyzeStdinAndGzip(t *testing.T) {
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(Scenario3().Pcap())
	w.Close()
	code, out, errs := runCmd(t, gz.Bytes(), "analyze", "-")
	if code != 0 || !strings.Contains(out, "stale-keepalive") || !strings.Contains(out, "gzip+pcap") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
}

func TestAnalyzeBadInput(t *testing.T) {
	full := Scenario3().Pcap()
	cases := []struct {
		name     string
		data     []byte
		code     int
		stderr   string
		stdoutOK string
	}{
		{"not a capture", []byte("hello, this is a text file\n"), 2, "not a capture file", ""},
		{"empty", nil, 2, "", ""},
		{"cut in the middle", full[:len(full)-30], 0, "offset", "connections: 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, "in.pcap", c.data)
			code, out, errs := runCmd(t, nil, "analyze", path)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, c.code, out, errs)
			}
			if !strings.Contains(errs, c.stderr) {
				t.Errorf("stderr %q lacks %q", errs, c.stderr)
			}
			if c.code == 2 && errs == "" {
				t.Error("exit 2 without a message")
			}
			if !strings.Contains(out, c.stdoutOK) {
				t.Errorf("stdout lacks %q:\n%s", c.stdoutOK, out)
			}
		})
	}
	if code, _, errs := runCmd(t, nil, "analyze", "/nonexistent/x.pcap"); code != 2 || !strings.Contains(errs, "no such file") {
		t.Errorf("missing file: exit %d %q", code, errs)
	}
}

func TestAnalyzeFailOnAndUsage(t *testing.T) {
	path := writeTemp(t, "s3.pcap", Scenario3().Pcap())
	if code, _, _ := runCmd(t, nil, "analyze", "--fail-on", "stale-keepalive", path); code != 1 {
		t.Errorf("--fail-on found: exit %d, want 1", code)
	}
	if code, _, _ := runCmd(t, nil, "analyze", "--fail-on", "refused", path); code != 0 {
		t.Errorf("--fail-on not found: exit %d, want 0", code)
	}
	if code, _, errs := runCmd(t, nil, "analyze", "--fail-on", "bogus", path); code != 2 || !strings.Contains(errs, "unknown cause") {
		t.Errorf("--fail-on bogus: exit %d %q", code, errs)
	}
	if code, _, _ := runCmd(t, nil, "analyze"); code != 2 {
		t.Errorf("no file: exit %d", code)
	}
	if code, _, _ := runCmd(t, nil, "nosuchcommand"); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
	code, out, errs := runCmd(t, nil, "help", "analyze")
	if code != 0 || !strings.Contains(out, "Usage: rstscope analyze") || strings.Count(out+errs, "Usage:") != 1 {
		t.Errorf("help: exit %d, printed %d times", code, strings.Count(out+errs, "Usage:"))
	}
}

func TestAnalyzeConns(t *testing.T) {
	path := writeTemp(t, "s3.pcap", Scenario3().Pcap())
	code, out, _ := runCmd(t, nil, "analyze", "--conns", path)
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(rows) != 2 || !strings.HasPrefix(rows[0], "#ts\tuid") {
		t.Fatalf("exit %d rows %q", code, rows)
	}
	f := strings.Split(rows[1], "\t")
	if len(f) != 11 || f[7] != "RSTR" || f[8] != "ShADdfr" {
		t.Errorf("row %q", f)
	}
}

// Captured payload may hold terminal escape sequences: the text report must
// not pass them through.
func TestAnalyzeEscapesTerminal(t *testing.T) {
	var c Capture
	evil := "GET /\x1b[2J\x1b]0;pwned\x07 HTTP/1.1\r\n\r\n"
	c.Add(Seg{At: 0, From: cli4, To: srv4, Flags: S, Seq: 1000})
	c.Add(Seg{At: 0.001, From: srv4, To: cli4, Flags: SA, Seq: 5000, Ack: 1001})
	c.Add(Seg{At: 0.002, From: cli4, To: srv4, Flags: PA, Seq: 1001, Ack: 5001, Payload: evil})
	c.Add(Seg{At: 0.003, From: srv4, To: cli4, Flags: RA, Seq: 5001, Ack: 1001 + uint32(len(evil)), Win: 100})
	path := writeTemp(t, "evil.pcap", c.Pcap())
	code, out, _ := runCmd(t, nil, "analyze", path)
	if code != 0 {
		t.Fatal(code)
	}
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Errorf("raw control characters reached the terminal:\n%q", out)
	}
	if !strings.Contains(out, `\x1b[2J`) {
		t.Errorf("the escaped form should be shown:\n%s", out)
	}
}

const cli4, srv4 = "10.0.0.1:40000", "10.0.0.2:80"

// --workers changes how the work is spread, not what is reported: the text
// report is the same on one goroutine and on several.
func TestAnalyzeWorkers(t *testing.T) {
	path := writeTemp(t, "s3.pcap", Scenario3().Pcap())
	_, one, _ := runCmd(t, nil, "analyze", "--no-color", "--workers", "1", path)
	for _, w := range []string{"0", "3"} {
		code, out, errs := runCmd(t, nil, "analyze", "--no-color", "--workers", w, path)
		if code != 0 || out != one {
			t.Errorf("--workers %s: exit %d %s\n%s\nwant\n%s", w, code, errs, out, one)
		}
	}
	if !strings.Contains(one, "stale-keepalive") {
		t.Errorf("report without the stale keep-alive:\n%s", one)
	}
	if code, _, errs := runCmd(t, nil, "analyze", "--workers", "-1", path); code != 2 || !strings.Contains(errs, "--workers") {
		t.Errorf("--workers -1: exit %d %q", code, errs)
	}
}
