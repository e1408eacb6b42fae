package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/engine"
	"github.com/rstscope/rstscope/internal/pcapio"
	. "github.com/rstscope/rstscope/internal/testcap"
)

// checkAppendConn runs a capture through the engine and holds AppendConn
// to what encoding/json writes for Conn, for every connection. It returns
// how many connections and HTTP lines it compared.
func checkAppendConn(t *testing.T, name string, data []byte) (conns, lines int) {
	t.Helper()
	rd, err := pcapio.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetEscapeHTML(false)
	var got []byte
	_, _, err = engine.Run(rd, engine.Options{OnConn: func(c *conntrack.Conn) {
		want.Reset()
		j := refConn(c)
		if err := enc.Encode(j); err != nil {
			t.Fatal(err)
		}
		got = AppendConn(got[:0], c)
		if !bytes.Equal(got, want.Bytes()) && !t.Failed() {
			t.Errorf("%s: connection %d:\n got %s\nwant %s", name, c.ID, got, want.Bytes())
		}
		// The --conns row, against the fmt format it replaced.
		row := fmt.Sprintf("%s\t%s\t%s\t%s\t%.6f\t%d\t%d\t%s\t%s\t%d\t%d\n",
			RFC3339(c.Start), j.UID, c.Client(), c.Server(), float64(c.Duration())/1e9,
			c.Ep[0].Size(), c.Ep[1].Size(), c.State(), c.History(), c.Ep[0].Pkts, c.Ep[1].Pkts)
		if line := AppendConnLine(nil, c); string(line) != row && !t.Failed() {
			t.Errorf("%s: connection %d row:\n got %q\nwant %q", name, c.ID, line, row)
		}
		conns++
		lines += len(j.HTTP)
	}})
	if err != nil {
		t.Fatal(err)
	}
	return conns, lines
}

// AppendConn writes exactly what encoding/json writes, and AppendConnLine
// what fmt wrote before it: on every capture in
// ../shared/captures, and on random traffic whose HTTP lines hold what
// JSON must escape (quotes, backslashes, control characters, invalid
// UTF-8, U+2028, HTML characters, which --json leaves unescaped).
func TestAppendConnSameAsEncodingJSON(t *testing.T) {
	var total, lines int
	files, _ := filepath.Glob("../../../shared/captures/*/*.pcap*")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n, l := checkAppendConn(t, filepath.Base(f), data)
		total, lines = total+n, lines+l
	}
	odd := []string{`/a"b\c`, "/tab\there", "/nul\x00bel\x07", "/bad\xff\xfeutf8", "/line\u2028sep", "/<script>&amp;",
		"/é/日本", "/\x1b[31mred", strings.Repeat("/long", 60)}
	rng := rand.New(rand.NewSource(7))
	var c Capture
	for i := 0; i < 400; i++ {
		at := float64(i) * 0.013
		cli := fmt.Sprintf("10.3.%d.%d:%d", i%7, i%11+1, 30000+i)
		srv := "10.4.0.1:80"
		if i%3 == 0 {
			cli, srv = fmt.Sprintf("[2001:db8::%x]:%d", i%9+1, 30000+i), "[2001:db8:1::1]:8080"
		}
		c.Handshake(at, cli, srv)
		req := "GET " + odd[rng.Intn(len(odd))] + " HTTP/1.1\r\nHost: x\r\n\r\n"
		resp := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Length: 0\r\nKeep-Alive: timeout=%d\r\nConnection: close\r\n\r\n",
			200+rng.Intn(400), strings.TrimPrefix(odd[rng.Intn(len(odd))], "/"), rng.Intn(3)*5)
		c.Add(Seg{At: at + 0.003, From: cli, To: srv, Flags: PA, Seq: 1001, Ack: 5001, Win: 512, Payload: req})
		c.Add(Seg{At: at + 0.004 + rng.Float64()*1e-7, From: srv, To: cli, Flags: PA, Seq: 5001, Ack: 1001 + uint32(len(req)), Win: 512, Payload: resp})
		fl := []decode.Flags{FA, RA, R, A}[rng.Intn(4)]
		c.Add(Seg{At: at + 0.005 + float64(rng.Intn(3)), From: cli, To: srv, Flags: fl, Seq: 1001 + uint32(len(req)), Ack: 5001 + uint32(len(resp)), Win: 512})
	}
	n, l := checkAppendConn(t, "odd HTTP lines", c.Pcap())
	total, lines = total+n, lines+l
	// The generated traffic alone gives 400 connections; the shared
	// captures, where they are beside the repository (CI), at least 100 more.
	want := 500
	if len(files) == 0 {
		t.Log("no ../shared/captures beside the repository: generated traffic only")
		want = 400
	}
	if total < want || lines < 800 {
		t.Fatalf("compared only %d connections and %d HTTP lines", total, lines)
	}
	t.Logf("%d connections, %d HTTP lines, %d captures", total, lines, len(files)+1)
}
