package lab_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRealPeers runs the article's three scenarios with the real programs
// (`rstscope lab SCENARIO --peers real`): curl, nginx with a Node.js page,
// and the okhttp 3 client. Each must show the article's symptom (curl's
// "Connection refused", nginx's 502, okhttp's "unexpected end of stream"),
// pass the lab's own checks, and `rstscope analyze` on the written capture
// must name the expected cause. Where a program is missing the test skips,
// naming the Debian package to install (the lab's own message).
func TestRealPeers(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		cause   string
		symptom func(steps []stepJSON) string // "" if the article's symptom is there
	}{
		{"refused", nil, "refused", func(s []stepJSON) string {
			if last(s).Kind != "connection refused" || !strings.Contains(last(s).Error, "Connection refused") || !strings.HasPrefix(last(s).Error, "curl: (7)") {
				return "want curl: (7) ... Connection refused"
			}
			return ""
		}},
		{"upstream-down", nil, "upstream-failure", func(s []stepJSON) string {
			if len(s) != 2 || s[0].Status != 200 || s[1].Status != 502 {
				return "want curl to get 200, then 502 after the Node.js backend is killed"
			}
			return ""
		}},
		// The article's timings are 5 s and 6 s; 2 s and 3 s keep the test short.
		{"stale-keepalive", []string{"--server-idle", "2s", "--wait", "3s"}, "stale-keepalive", func(s []stepJSON) string {
			if len(s) != 2 || s[0].Status != 200 || !s[1].Reused ||
				!strings.HasPrefix(s[1].Error, "java.io.IOException: unexpected end of stream on Connection{127.0.0.5:80") ||
				!strings.Contains(s[1].Error, "java.io.EOFException: \\n not found: limit=0") {
				return "want okhttp: 200, then java.io.IOException: unexpected end of stream (caused by java.io.EOFException: \\n not found: limit=0) on the reused connection"
			}
			return ""
		}},
		// The article's fix 2: okhttp retries on a new connection, unseen by the caller.
		{"stale-keepalive", []string{"--server-idle", "1s", "--wait", "1500ms", "--fix", "retry"}, "stale-keepalive", func(s []stepJSON) string {
			if len(s) != 2 || s[1].Status != 200 || !s[1].Retried || s[1].Error != "" {
				return "want the second GET retried on a new connection and 200"
			}
			return ""
		}},
	}
	for _, c := range cases {
		t.Run(c.name+strings.Join(c.args, "_"), func(t *testing.T) {
			pcap := filepath.Join(t.TempDir(), c.name+".pcapng")
			lines, stderr := runLab(t, append([]string{c.name, "--peers", "real", "--json", "--write", pcap}, c.args...)...)
			if len(lines) == 0 || lines[0].Type != "lab" {
				t.Fatalf("no lab object; stderr: %s", stderr)
			}
			l := lines[0]
			if strings.Contains(l.Error, "real peers not installed") {
				t.Skip(l.Error)
			}
			if l.Error != "" {
				t.Fatalf("lab error: %s", l.Error)
			}
			for _, ch := range l.Checks {
				if !ch.OK {
					t.Errorf("check failed: %s (got %s)", ch.What, ch.Got)
				}
			}
			if !l.OK || len(l.Checks) < 2 {
				t.Errorf("lab says not as expected: %+v", l.Checks)
			}
			var got []stepJSON
			for _, s := range l.Steps {
				got = append(got, stepJSON{Status: s.Status, Error: s.Error, Kind: s.Kind, Reused: s.Reused, Retried: s.Retried})
			}
			if msg := c.symptom(got); msg != "" {
				t.Errorf("%s; steps: %+v", msg, l.Steps)
			}
			if causes := analyzeCauses(t, pcap); !contains(causes, c.cause) {
				t.Errorf("rstscope analyze on the capture: causes %v, want %s", causes, c.cause)
			}
		})
	}
}

// TestRealPeersFixCheck: okhttp has no "check before reuse" for a GET, so
// the real-peer lab refuses --fix check with a reason rather than faking it.
func TestRealPeersFixCheck(t *testing.T) {
	lines, stderr := runLab(t, "stale-keepalive", "--peers", "real", "--json", "--fix", "check")
	if len(lines) == 0 {
		t.Fatalf("no output: %s", stderr)
	}
	if e := lines[0].Error; strings.Contains(e, "real peers not installed") {
		t.Skip(e)
	} else if !strings.Contains(e, "no real-peer version") {
		t.Errorf("error %q, want no real-peer version", e)
	}
}

type stepJSON struct {
	Status  int
	Error   string
	Kind    string
	Reused  bool
	Retried bool
}

func last(s []stepJSON) stepJSON {
	if len(s) == 0 {
		return stepJSON{}
	}
	return s[len(s)-1]
}

// analyzeCauses runs `rstscope analyze FILE --json` and returns the
// incidents' causes.
func analyzeCauses(t *testing.T, path string) []string {
	t.Helper()
	out, err := exec.Command(bin, "analyze", path, "--json").Output()
	if err != nil {
		t.Fatalf("rstscope analyze %s: %v", path, err)
	}
	var causes []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var v struct {
			Type  string `json:"type"`
			Cause string `json:"cause"`
		}
		if json.Unmarshal(sc.Bytes(), &v) == nil && v.Type == "incident" {
			causes = append(causes, v.Cause)
		}
	}
	return causes
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
