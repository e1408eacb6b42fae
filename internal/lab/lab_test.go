package lab_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rstscope/rstscope/internal/engine"
	"github.com/rstscope/rstscope/internal/lab"
	"github.com/rstscope/rstscope/internal/pcapio"
)

// The lab runs real processes, so its tests drive the real binary: built
// once here, then `rstscope lab NAME --json` for every scenario.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rstscope-labtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "rstscope")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/rstscope").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building rstscope: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type line struct {
	Type     string          `json:"type"`
	Scenario string          `json:"scenario"`
	OK       bool            `json:"ok"`
	Error    string          `json:"error"`
	Checks   []lab.Check     `json:"checks"`
	Steps    []lab.Step      `json:"steps"`
	Env      string          `json:"env"`
	Cause    string          `json:"cause"`
	ResetBy  string          `json:"reset_by"`
	Kernel   string          `json:"kernel_reason"`
	Raw      json.RawMessage `json:"-"`
}

func runLab(t *testing.T, args ...string) ([]line, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"lab"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("lab %v did not finish in 90 s", args)
	}
	if strings.Contains(stderr.String(), "cannot make a network namespace") {
		t.Skipf("no network namespace here: %s", stderr.String())
	}
	var lines []line
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines, stderr.String()
}

// TestScenarios runs every scenario and checks what the lab itself checks:
// the client's error, rstscope's cause and who reset, and (as root on
// 6.10+) that the kernel's reason agrees with the documented table.
func TestScenarios(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"refused", nil},
		{"upstream-down", nil},
		{"stale-keepalive", []string{"--server-idle", "700ms", "--wait", "1s"}},
		{"stale-keepalive", []string{"--server-idle", "700ms", "--wait", "1s", "--fix", "pool-idle"}},
		{"stale-keepalive", []string{"--server-idle", "700ms", "--wait", "1s", "--fix", "retry"}},
		{"stale-keepalive", []string{"--server-idle", "700ms", "--wait", "1s", "--fix", "check"}},
		{"keepalive-race", nil},
		{"unread-data-close", nil},
		{"abortive-close", nil},
		{"data-after-close", nil},
		{"listen-overflow", nil},
	}
	for _, c := range cases {
		name := c.name + strings.Join(c.args, "_")
		t.Run(name, func(t *testing.T) {
			if sc := lab.Lookup(c.name); sc.Root && os.Geteuid() != 0 {
				t.Skip("needs root: sets net.ipv4.tcp_abort_on_overflow in the lab's namespace")
			}
			lines, stderr := runLab(t, append([]string{c.name, "--json"}, c.args...)...)
			if len(lines) == 0 || lines[0].Type != "lab" {
				t.Fatalf("no lab object; stderr: %s", stderr)
			}
			l := lines[0]
			if l.Error != "" {
				t.Fatalf("lab error: %s", l.Error)
			}
			if len(l.Checks) < 2 {
				t.Fatalf("too few checks: %+v", l.Checks)
			}
			kernelChecked := false
			for _, ch := range l.Checks {
				if !ch.OK {
					t.Errorf("check failed: %s (got %s)", ch.What, ch.Got)
				}
				if strings.HasPrefix(ch.What, "the kernel's reason") {
					kernelChecked = true
				}
			}
			if os.Geteuid() == 0 && !kernelChecked && !strings.Contains(strings.Join(c.args, " "), "pool-idle") && !strings.Contains(strings.Join(c.args, " "), "check") {
				t.Errorf("running as root but no kernel reason was checked (%s)", l.Env)
			}
			if !l.OK {
				t.Errorf("lab says not as expected: %+v", l.Checks)
			}
		})
	}
}

// TestWriteAndAnalyze: the pcapng the lab writes, read back by the engine,
// gives the same cause, and carries the kernel's reason as a comment.
func TestWriteAndAnalyze(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stale.pcapng")
	lines, stderr := runLab(t, "stale-keepalive", "--server-idle", "700ms", "--wait", "1s", "--json", "--write", path)
	if len(lines) == 0 {
		t.Fatalf("no output: %s", stderr)
	}
	rd, err := pcapio.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	incs, st, err := engine.Run(rd, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(incs) != 1 || incs[0].Cause != "stale-keepalive" {
		var got []string
		for _, inc := range incs {
			got = append(got, string(inc.Cause))
		}
		t.Fatalf("analyze on the lab's capture: %v, want [stale-keepalive]", got)
	}
	if os.Geteuid() == 0 {
		if st.Comments == 0 || incs[0].KernelReason == "" {
			t.Errorf("no kernel reason in the written capture (comments %d)", st.Comments)
		}
	}
}
