package engine_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/engine"
	"github.com/rstscope/rstscope/internal/pcapio"
)

// zeekDir holds captures from Zeek's test suite with the conn.log Zeek's own
// tests expect (see ../shared/captures/INDEX.md).
const zeekDir = "../../../shared/captures/zeek"

type zrow struct {
	tuple, state, history string
	origPkts, respPkts    uint64
	origBytes, respBytes  uint64
	duration              float64
}

func readConnLog(t *testing.T, path string) []zrow {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var fields []string
	var rows []zrow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#fields") {
			fields = strings.Split(line, "\t")[1:]
			continue
		}
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		v := strings.Split(line, "\t")
		get := func(name string) string {
			for i, f := range fields {
				if f == name && i < len(v) {
					return v[i]
				}
			}
			return ""
		}
		if get("proto") != "tcp" {
			continue
		}
		u := func(s string) uint64 { n, _ := strconv.ParseUint(s, 10, 64); return n }
		d, _ := strconv.ParseFloat(get("duration"), 64)
		rows = append(rows, zrow{
			tuple: fmt.Sprintf("%s:%s>%s:%s", get("id.orig_h"), get("id.orig_p"), get("id.resp_h"), get("id.resp_p")),
			state: get("conn_state"), history: get("history"),
			origPkts: u(get("orig_pkts")), respPkts: u(get("resp_pkts")),
			origBytes: u(get("orig_bytes")), respBytes: u(get("resp_bytes")), duration: d,
		})
	}
	return rows
}

func ourRows(t *testing.T, path string) []zrow {
	rd, err := pcapio.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var rows []zrow
	_, _, err = engine.Run(rd, engine.Options{OnConn: func(c *conntrack.Conn) {
		cl, sv := c.Client(), c.Server()
		rows = append(rows, zrow{
			tuple: fmt.Sprintf("%s:%d>%s:%d", cl.Addr(), cl.Port(), sv.Addr(), sv.Port()),
			state: c.State(), history: c.History(),
			origPkts: c.Ep[0].Pkts, respPkts: c.Ep[1].Pkts,
			origBytes: c.Ep[0].Size(), respBytes: c.Ep[1].Size(), duration: float64(c.Duration()) / 1e9,
		})
	}})
	if err != nil {
		t.Logf("read error: %v", err)
	}
	return rows
}

// TestZeekConnLog compares conn_state, history, packet and byte counts with
// the conn.log Zeek's own test suite expects for the same capture.
func TestZeekConnLog(t *testing.T) {
	logs, _ := filepath.Glob(filepath.Join(zeekDir, "*.conn.log"))
	if len(logs) == 0 {
		t.Skipf("no Zeek captures at %s (../shared/captures beside the repo)", zeekDir)
	}
	var total, stateOK, histOK, pktsOK, bytesOK int
	for _, lg := range logs {
		base := strings.TrimSuffix(lg, ".conn.log")
		capPath := base + ".pcap"
		if _, err := os.Stat(capPath); err != nil {
			capPath = base + ".pcapng"
		}
		name := filepath.Base(base)
		t.Run(name, func(t *testing.T) {
			want := readConnLog(t, lg)
			got := ourRows(t, capPath)
			byTuple := map[string][]zrow{}
			for _, r := range got {
				byTuple[r.tuple] = append(byTuple[r.tuple], r)
			}
			sort.SliceStable(want, func(i, j int) bool { return false })
			for _, w := range want {
				total++
				cands := byTuple[w.tuple]
				if len(cands) == 0 {
					t.Errorf("%s: Zeek has %s %s, rstscope has no such connection", w.tuple, w.state, w.history)
					continue
				}
				g := cands[0]
				byTuple[w.tuple] = cands[1:]
				if g.state == w.state {
					stateOK++
				} else {
					t.Errorf("%s: conn_state %s, Zeek %s (history %s vs %s)", w.tuple, g.state, w.state, g.history, w.history)
				}
				if g.history == w.history {
					histOK++
				} else {
					t.Errorf("%s: history %s, Zeek %s", w.tuple, g.history, w.history)
				}
				if g.origPkts == w.origPkts && g.respPkts == w.respPkts {
					pktsOK++
				} else {
					t.Errorf("%s: pkts %d/%d, Zeek %d/%d", w.tuple, g.origPkts, g.respPkts, w.origPkts, w.respPkts)
				}
				if g.origBytes == w.origBytes && g.respBytes == w.respBytes {
					bytesOK++
				} else {
					t.Errorf("%s: bytes %d/%d, Zeek %d/%d", w.tuple, g.origBytes, g.respBytes, w.origBytes, w.respBytes)
				}
			}
			for tuple, rest := range byTuple {
				for _, r := range rest {
					t.Errorf("%s: rstscope has %s %s, Zeek has no such connection", tuple, r.state, r.history)
				}
			}
		})
	}
	t.Logf("Zeek conn.log agreement over %d TCP connections: conn_state %d, history %d, packets %d, bytes %d",
		total, stateOK, histOK, pktsOK, bytesOK)
}
