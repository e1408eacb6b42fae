package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/pcapio"
	"github.com/rstscope/rstscope/internal/source"
	. "github.com/rstscope/rstscope/internal/testcap"
)

// mixedCapture interleaves many connections of every kind the diagnosis
// knows from one proxy's point of view, so that a sharded run splits
// related connections (a 502 and its refused upstream) between shards.
func mixedCapture(conns int) []byte { return mixed(conns).Pcap() }

// mixed is mixedCapture's capture, frame by frame.
func mixed(conns int) *Capture {
	var segs []Seg
	req := "GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
	ok := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	bad := "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
	rq, rs := uint32(len(req)), uint32(len(ok))
	for i := 0; i < conns; i++ {
		t := float64(i) * 0.0037 // a few hundred connections a second, overlapping
		cli := fmt.Sprintf("10.0.%d.%d:%d", i/250%250, i%250+1, 20000+i%40000)
		proxy := "10.9.0.1:80"
		hs := func(t float64, c, s string) {
			segs = append(segs,
				Seg{At: t, From: c, To: s, Flags: S, Seq: 1000, Win: 65535, TS: true},
				Seg{At: t + 0.001, From: s, To: c, Flags: SA, Seq: 5000, Ack: 1001, Win: 65535, TS: true},
				Seg{At: t + 0.002, From: c, To: s, Flags: A, Seq: 1001, Ack: 5001, Win: 512, TS: true})
		}
		switch i % 5 {
		case 0: // refused
			segs = append(segs, Seg{At: t, From: cli, To: "10.9.0.2:81", Flags: S, Seq: 1000, Win: 65535},
				Seg{At: t + 0.0001, From: "10.9.0.2:81", To: cli, Flags: RA, Ack: 1001})
		case 1: // clean request and close
			hs(t, cli, proxy)
			segs = append(segs,
				Seg{At: t + 0.01, From: cli, To: proxy, Flags: PA, Seq: 1001, Ack: 5001, Win: 512, Payload: req, TS: true},
				Seg{At: t + 0.02, From: proxy, To: cli, Flags: PA, Seq: 5001, Ack: 1001 + rq, Win: 512, Payload: ok, TS: true},
				Seg{At: t + 0.03, From: cli, To: proxy, Flags: FA, Seq: 1001 + rq, Ack: 5001 + rs, Win: 512, TS: true},
				Seg{At: t + 0.04, From: proxy, To: cli, Flags: FA, Seq: 5001 + rs, Ack: 1002 + rq, Win: 512, TS: true},
				Seg{At: t + 0.05, From: cli, To: proxy, Flags: A, Seq: 1002 + rq, Ack: 5002 + rs, Win: 512, TS: true})
		case 2: // 502: the proxy's upstream connection is refused meanwhile
			up := fmt.Sprintf("10.9.0.1:%d", 30000+i%30000)
			hs(t, cli, proxy)
			segs = append(segs,
				Seg{At: t + 0.01, From: cli, To: proxy, Flags: PA, Seq: 1001, Ack: 5001, Win: 512, Payload: req, TS: true},
				Seg{At: t + 0.011, From: up, To: "10.9.1.1:8080", Flags: S, Seq: 7000, Win: 65535},
				Seg{At: t + 0.0111, From: "10.9.1.1:8080", To: up, Flags: RA, Ack: 7001},
				Seg{At: t + 0.012, From: proxy, To: cli, Flags: PA, Seq: 5001, Ack: 1001 + rq, Win: 512, Payload: bad, TS: true})
		case 3: // stale keep-alive: request, idle, server FIN, request, RST
			hs(t, cli, proxy)
			fin := 5001 + rs
			segs = append(segs,
				Seg{At: t + 0.01, From: cli, To: proxy, Flags: PA, Seq: 1001, Ack: 5001, Win: 512, Payload: req, TS: true},
				Seg{At: t + 0.02, From: proxy, To: cli, Flags: PA, Seq: 5001, Ack: 1001 + rq, Win: 512, Payload: ok, TS: true},
				Seg{At: t + 2.02, From: proxy, To: cli, Flags: FA, Seq: fin, Ack: 1001 + rq, Win: 512, TS: true},
				Seg{At: t + 2.021, From: cli, To: proxy, Flags: A, Seq: 1001 + rq, Ack: fin + 1, Win: 512, TS: true},
				Seg{At: t + 3.0, From: cli, To: proxy, Flags: PA, Seq: 1001 + rq, Ack: fin + 1, Win: 512, Payload: req, TS: true},
				Seg{At: t + 3.001, From: proxy, To: cli, Flags: R, Seq: fin + 1})
		case 4: // SYNs nobody answers
			segs = append(segs, Seg{At: t, From: cli, To: "10.9.0.3:443", Flags: S, Seq: 1000, Win: 65535},
				Seg{At: t + 1, From: cli, To: "10.9.0.3:443", Flags: S, Seq: 1000, Win: 65535})
		}
	}
	sort.SliceStable(segs, func(i, j int) bool { return segs[i].At < segs[j].At })
	var c Capture
	for _, s := range segs {
		c.Add(s)
	}
	return &c
}

type runResult struct {
	incidents string
	stats     Stats
}

// inputs are the ways a capture reaches Run: as a stream read once
// (standard input), as a file read through read calls (a reader fixed to
// the file's size, as pcapio.Open gives for a regular file) and as a file
// mapped into memory and parsed there (pcapio.OpenMapped, what analyze
// uses).
var inputs = []string{"stream", "file", "mapped"}

// openAs opens data as the input kind names.
func openAs(t *testing.T, data []byte, kind string) source.Source {
	t.Helper()
	if kind == "mapped" {
		path := filepath.Join(t.TempDir(), "in.pcap")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		rd, err := pcapio.OpenMapped(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !rd.Mapped() && runtime.GOOS == "linux" {
			t.Fatal("OpenMapped did not map a regular file")
		}
		t.Cleanup(func() { rd.Close() })
		return rd
	}
	if kind == "stream" {
		rd, err := pcapio.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		return rd
	}
	rd, err := pcapio.NewReaderAt(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	return rd
}

func runWith(t *testing.T, data []byte, workers int) runResult {
	return runAs(t, data, workers, "stream")
}

func runAs(t *testing.T, data []byte, workers int, kind string) runResult {
	t.Helper()
	rd := openAs(t, data, kind)
	incs, st, err := Run(rd, Options{Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(incs, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return runResult{string(b), st}
}

// comparable blanks what is documented to differ between a sharded run
// and a run on one goroutine: the peak of live connections.
func comparable(st Stats) Stats {
	st.Track.PeakLive = 0
	return st
}

func sameResults(t *testing.T, name string, seq, par runResult, workers int) {
	t.Helper()
	if !reflect.DeepEqual(comparable(seq.stats), comparable(par.stats)) {
		t.Errorf("%s: %d workers: stats differ:\n one: %+v\nmany: %+v", name, workers, seq.stats, par.stats)
	}
	if seq.incidents != par.incidents {
		a, b := strings.Split(seq.incidents, "\n"), strings.Split(par.incidents, "\n")
		for i := 0; i < len(a) && i < len(b); i++ {
			if a[i] != b[i] {
				t.Errorf("%s: %d workers: incidents differ at line %d:\n one: %s\nmany: %s", name, workers, i+1, a[i], b[i])
				return
			}
		}
		t.Errorf("%s: %d workers: %d lines of incidents, want %d", name, workers, len(b), len(a))
	}
}

// Tracking in shards gives the same connections, incidents (in the same
// order, with the same uids and related connections) and counters as one
// tracker, on a capture where related connections fall in different shards.
func TestShardedSameAsSequential(t *testing.T) {
	data := mixedCapture(6000)
	seq := runWith(t, data, 1)
	if seq.stats.Track.Conns < 6000 || seq.stats.Incidents["upstream-failure"] < 1000 {
		t.Fatalf("capture too tame: %+v", seq.stats)
	}
	// The test is only worth something if 502s and their upstream
	// connections were split between shards.
	var split int
	var incs []*diagnose.Incident
	json.Unmarshal([]byte(seq.incidents), &incs)
	for _, inc := range incs {
		if inc.Cause != "upstream-failure" || len(inc.RelatedConns) == 0 || inc.Conn == nil {
			continue
		}
		if shardOfAddrs(inc.Conn.Client, inc.Conn.Server, 2) != shardOfAddrs(inc.RelatedConns[0].Client, inc.RelatedConns[0].Server, 2) {
			split++
		}
	}
	if split == 0 {
		t.Fatal("no 502 has its upstream connection in another shard")
	}
	t.Logf("%d conns, %d incidents, %d 502s split across shards", seq.stats.Track.Conns, len(incs), split)
	for _, w := range []int{2, 3, 8} {
		for _, kind := range inputs {
			sameResults(t, "mixed "+kind, seq, runAs(t, data, w, kind), w)
		}
	}
}

// rowsWith runs data with Options.Row making one line per connection and
// returns the rows as written.
func rowsWith(t *testing.T, data []byte, workers int) string {
	return rowsAs(t, data, workers, "stream")
}

func rowsAs(t *testing.T, data []byte, workers int, kind string) string {
	t.Helper()
	rd := openAs(t, data, kind)
	var out bytes.Buffer
	row := func(b []byte, c *conntrack.Conn) []byte {
		return fmt.Appendf(b, "%d %s %s %s %s %d/%d\n", c.ID, c.Client(), c.Server(), c.State(), c.History(), c.Ep[0].Pkts, c.Ep[1].Pkts)
	}
	_, st, err := Run(rd, Options{Workers: workers, Row: row, RowsTo: &out})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); uint64(n) != st.Track.Conns {
		t.Fatalf("%d workers: %d rows for %d connections", workers, n, st.Track.Conns)
	}
	return out.String()
}

func sortedLines(s string) string {
	l := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	sort.Strings(l)
	return strings.Join(l, "\n")
}

// Rows made on several goroutines: the same rows as on one, in an order that
// is the same on every run with the same number of workers.
func TestShardedRows(t *testing.T) {
	data := mixedCapture(3000)
	one := rowsWith(t, data, 1)
	for _, w := range []int{2, 3} {
		for _, kind := range inputs {
			many := rowsAs(t, data, w, kind)
			if sortedLines(many) != sortedLines(one) {
				t.Errorf("%d workers, %s: not the same rows as one goroutine", w, kind)
			}
			for i := 0; i < 3; i++ {
				if again := rowsAs(t, data, w, kind); again != many {
					t.Fatalf("%d workers, %s: rows in another order on run %d", w, kind, i+2)
				}
			}
		}
	}
}

// shardOfAddrs is shardOf for a connection given as "ip:port" strings.
func shardOfAddrs(a, b string, n int) int {
	var c Capture
	c.Add(Seg{From: a, To: b, Flags: S})
	var p decode.Parsed
	p.Decode(c.Frames[0].LinkType, c.Frames[0].Data)
	f := p.Flow()
	return shardOf(&f, n)
}

// The same on every capture in ../shared/captures.
func TestShardedSharedCaptures(t *testing.T) {
	var files []string
	filepath.Walk("../../../shared/captures", func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && (strings.HasSuffix(path, ".pcap") || strings.HasSuffix(path, ".pcapng") || strings.HasSuffix(path, ".trace")) {
			files = append(files, path)
		}
		return nil
	})
	if len(files) == 0 {
		t.Skip("no ../shared/captures beside the repository")
	}
	t.Logf("%d captures", len(files))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		seq := runWith(t, data, 1)
		for _, w := range []int{2, 5} {
			for _, kind := range inputs {
				sameResults(t, filepath.Base(f)+" "+kind, seq, runAs(t, data, w, kind), w)
			}
		}
	}
}

// The connection cap is split between shards.
func TestShardedConnCap(t *testing.T) {
	data := mixedCapture(3000)
	for _, w := range []int{3, 4} {
		for _, kind := range inputs {
			_, st, err := Run(openAs(t, data, kind), Options{Workers: w, Track: conntrack.Config{MaxConns: 40}})
			if err != nil {
				t.Fatal(err)
			}
			if st.Track.Evicted == 0 || st.Track.PeakLive > 40 {
				t.Errorf("cap 40 over %d shards, %s: evicted %d, peak %d", w, kind, st.Track.Evicted, st.Track.PeakLive)
			}
		}
	}
}

// Random traffic, including nonsense (flags in any combination, sequence
// numbers anywhere, ports reused, HTTP lines and junk payload), gives the
// same results on one goroutine and on several. The seeds are fixed, so a
// failure is reproducible.
func TestShardedSameAsSequentialRandom(t *testing.T) {
	payloads := []string{"", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", "POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", "\x00\x01junk"}
	flagSets := []decode.Flags{S, SA, A, PA, FA, R, RA, S | decode.FIN, decode.FIN | R | A}
	for seed := int64(1); seed <= 25; seed++ {
		rng := rand.New(rand.NewSource(seed))
		var c Capture
		at := 0.0
		for i := 0; i < 3000; i++ {
			at += rng.Float64() * 0.01
			a := fmt.Sprintf("10.1.%d.%d:%d", rng.Intn(3), rng.Intn(5)+1, 40000+rng.Intn(8))
			b := fmt.Sprintf("10.2.0.%d:%d", rng.Intn(3)+1, 80+rng.Intn(2))
			if rng.Intn(4) == 0 {
				a = fmt.Sprintf("[2001:db8::%x]:%d", rng.Intn(5)+1, 40000+rng.Intn(8))
				b = fmt.Sprintf("[2001:db8:1::%x]:%d", rng.Intn(3)+1, 80+rng.Intn(2))
			}
			if rng.Intn(2) == 0 {
				a, b = b, a
			}
			c.Add(Seg{At: at, From: a, To: b, Flags: flagSets[rng.Intn(len(flagSets))],
				Seq: uint32(rng.Intn(4) * 1000), Ack: uint32(rng.Intn(4) * 1000), Win: uint16(rng.Intn(3) * 512),
				Payload: payloads[rng.Intn(len(payloads))], TS: rng.Intn(2) == 0})
		}
		data := c.Pcap()
		seq := runWith(t, data, 1)
		rows := sortedLines(rowsWith(t, data, 1))
		for _, kind := range inputs {
			sameResults(t, fmt.Sprintf("seed %d %s", seed, kind), seq, runAs(t, data, 2, kind), 2)
			sameResults(t, fmt.Sprintf("seed %d %s", seed, kind), seq, runAs(t, data, 5, kind), 5)
			if sortedLines(rowsAs(t, data, 2, kind)) != rows {
				t.Errorf("seed %d, %s: rows differ between one goroutine and two", seed, kind)
			}
		}
		if t.Failed() {
			return
		}
	}
}

// Packet comments reach the connection of their packet in a sharded run
// as on one goroutine (a batch passes them on only when it holds some).
func TestShardedComments(t *testing.T) {
	// A packet comment on every seventh frame (as rstscope's own captures
	// carry the kernel's reset reasons), numbered so that a note lost or
	// misplaced shows.
	c := mixed(2000)
	for i := range c.Frames {
		if (i+1)%7 == 0 {
			c.Frames[i].Comment = fmt.Sprintf("note %d", i+1)
		}
	}
	data := c.Pcapng()
	rows := func(workers int) (string, Stats) {
		var out bytes.Buffer
		row := func(b []byte, c *conntrack.Conn) []byte {
			b = fmt.Appendf(b, "%d", c.ID)
			for _, n := range c.Notes {
				b = fmt.Appendf(b, " %d:%s", n.Pkt, n.Text)
			}
			return append(b, '\n')
		}
		_, st, err := Run(openAs(t, data, "stream"), Options{Workers: workers, Row: row, RowsTo: &out})
		if err != nil {
			t.Fatal(err)
		}
		return sortedLines(out.String()), st
	}
	one, st := rows(1)
	if st.Comments < 1000 || !strings.Contains(one, ":note ") {
		t.Fatalf("%d comments counted, notes kept: %q...", st.Comments, one[:min(len(one), 200)])
	}
	for _, w := range []int{2, 3} {
		if many, mst := rows(w); many != one || mst.Comments != st.Comments {
			t.Errorf("%d workers: %d comments (want %d), notes differ from one goroutine's", w, mst.Comments, st.Comments)
		}
	}
}
