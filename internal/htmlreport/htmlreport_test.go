package htmlreport

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/pcapio"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// zeekDir holds captures from Zeek's test suite (../shared/captures/INDEX.md).
const zeekDir = "../../../shared/captures/zeek"

// xssTarget is an HTTP path that would run script if it reached the page
// unescaped: a script element and an image whose error handler runs.
const xssTarget = `/<script>document.title='pwned'</script><img/src='x'/onerror=document.title='pwned2'>`

func render(t testing.TB, d Data) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, d); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s differs at line %d:\n got: %s\nwant: %s\n(run go test -update if the change is intended)", path, i+1, g, w)
			}
		}
	}
}

// parse parses a page as a browser would and returns its root.
func parse(t testing.TB, page []byte) *html.Node {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// find returns every element named tag (in any namespace) under n.
func find(n *html.Node, tag string) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == tag {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// pktGroups returns the diagram's packet rows (<g class="pkt ...">).
func pktGroups(doc *html.Node) []*html.Node {
	var out []*html.Node
	for _, g := range find(doc, "g") {
		if strings.HasPrefix(attr(g, "class"), "pkt") {
			out = append(out, g)
		}
	}
	return out
}

func scenario3Data(t testing.TB) Data {
	return analyze(t, "scenario3.pcapng", scenario3("/test", "200 OK", "").bytes(t))
}

// The article's scenario 3 must come out as a stale keep-alive, drawn with
// the idle gap, the FIN, the second GET and the RST highlighted.
func TestScenario3(t *testing.T) {
	d := scenario3Data(t)
	if len(d.Incidents) != 1 || d.Incidents[0].Cause != cause.StaleKeepalive {
		for _, inc := range d.Incidents {
			t.Logf("incident %s: %s", inc.Cause, inc.Summary)
		}
		t.Fatalf("engine gave %d incidents, want one stale-keepalive", len(d.Incidents))
	}
	page := render(t, d)
	golden(t, "scenario3.html", page)
	doc := parse(t, page)
	svgs := find(doc, "svg")
	if len(svgs) != 1 {
		t.Fatalf("%d svg elements, want 1", len(svgs))
	}
	rows := pktGroups(doc)
	if len(rows) != 11 {
		t.Errorf("%d packet arrows, want 11 (every packet of the connection)", len(rows))
	}
	var marked, rst []string
	for _, g := range rows {
		cls := attr(g, "class")
		if strings.Contains(cls, "mark") {
			marked = append(marked, text(g))
		}
		if strings.Contains(cls, "rst") {
			rst = append(rst, text(g))
		}
	}
	if len(rst) != 1 || !strings.Contains(rst[0], "[R] seq") || !strings.Contains(rst[0], "win 0") {
		t.Errorf("RST arrow: %q", rst)
	}
	if len(marked) < 2 || !strings.Contains(strings.Join(marked, "|"), "GET /test") {
		t.Errorf("highlighted packets %q: want the second GET and the RST", marked)
	}
	s := string(page)
	for _, want := range []string{"~ 5.0 s idle ~", "~ 1.0 s idle ~", "[F.] seq 83 ack 93", "HTTP 200 OK", "client", "10.211.55.5:80",
		"stale-keepalive", "ConnectionPool(5, 30, TimeUnit.SECONDS)"} {
		if !strings.Contains(s, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Self-contained: nothing is fetched from anywhere.
	for _, bad := range []string{"http-equiv=\"refresh\"", "<link", "src=", "@import", "url("} {
		if strings.Contains(s, bad) {
			t.Errorf("page contains %q: it must not load anything", bad)
		}
	}
	if len(find(doc, "script")) != 0 {
		t.Error("page contains a script element")
	}
}

// A 502 is drawn with the upstream connection beside the client's: three
// lifelines (client, proxy, upstream) on one time axis, so the upstream's
// RST lies just above the 502.
func TestProxy502(t *testing.T) {
	testProxy502(t, proxy502(), "client,proxy,upstream", true)
}

// A proxy that reaches its upstream from another address: the upstream leg's
// first lifeline is the proxy's, not a client's.
func TestProxy502OtherAddress(t *testing.T) {
	testProxy502(t, proxy502From("10.0.1.2:41766"), "client,proxy,proxy,upstream", false)
}

func testProxy502(t *testing.T, c *capture, wantRoles string, checkGolden bool) {
	d := analyze(t, "proxy502.pcapng", c.bytes(t))
	var up int = -1
	for i, inc := range d.Incidents {
		if inc.Cause == cause.UpstreamFailure {
			up = i
		}
	}
	if up < 0 || len(d.Incidents[up].RelatedConns) != 1 {
		t.Fatalf("engine gave no upstream-failure with its related connection: %v", d.Counts)
	}
	page := render(t, d)
	if checkGolden {
		golden(t, "proxy502.html", page)
	}
	doc := parse(t, page)
	sec := sectionOf(t, doc, fmt.Sprintf("inc-%d", up+1))
	var roles []string
	for _, tx := range find(sec, "text") {
		if attr(tx, "class") == "lane-role" {
			roles = append(roles, text(tx))
		}
	}
	if strings.Join(roles, ",") != wantRoles {
		t.Errorf("lifelines %v, want %s", roles, wantRoles)
	}
	// In time order: the upstream's RST comes right before the 502.
	var order []string
	for _, g := range pktGroups(sec) {
		order = append(order, text(g))
	}
	all := strings.Join(order, "\n")
	iR, i502 := strings.Index(all, "[R.]"), strings.Index(all, "HTTP 502 Bad Gateway")
	if iR < 0 || i502 < 0 || iR > i502 {
		t.Errorf("want the upstream RST drawn before the 502:\n%s", all)
	}
}

func sectionOf(t *testing.T, doc *html.Node, id string) *html.Node {
	t.Helper()
	for _, s := range find(doc, "section") {
		if attr(s, "id") == id {
			return s
		}
	}
	t.Fatalf("no section %s", id)
	return nil
}

// xssData is scenario 3 with attacker-chosen strings everywhere the capture
// supplies text: the request path, the response's reason phrase, and the
// RST's packet comment (the kernel's reason, as `watch` writes it).
func xssData(t testing.TB) Data {
	c := scenario3(xssTarget, `200 <script>document.title='pwned3'</script>`,
		`reason=<script>document.title='pwned4'</script> <img src=x onerror="document.title='pwned5'">`)
	d := analyze(t, `<script>document.title='pwned6'</script>.pcapng`, c.bytes(t))
	if len(d.Incidents) == 0 {
		t.Fatal("no incident")
	}
	return d
}

// Capture text is escaped: the page holds the payloads as text, never as
// elements or attributes. (TestBrowserXSS checks the same in Chromium.)
func TestXSSEscaped(t *testing.T) {
	d := xssData(t)
	if !strings.Contains(d.Incidents[0].KernelReason, "<script>") {
		t.Fatalf("the test capture did not carry the payload into the kernel reason: %q", d.Incidents[0].KernelReason)
	}
	page := render(t, d)
	low := strings.ToLower(string(page))
	for _, bad := range []string{"<script", "<img", "onerror=\"", "<title>rstscope report: <"} {
		if strings.Contains(low, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	doc := parse(t, page)
	if n := len(find(doc, "script")) + len(find(doc, "img")); n != 0 {
		t.Errorf("parsed page has %d script/img elements", n)
	}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			for _, a := range n.Attr {
				if strings.HasPrefix(strings.ToLower(a.Key), "on") {
					t.Errorf("element %s has event handler %s=%q", n.Data, a.Key, a.Val)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	// The payload is there, as text the reader can see.
	all := text(doc)
	for _, want := range []string{"<script>document.title='pwned'</script>", "pwned3", "pwned4"} {
		if !strings.Contains(all, want) {
			t.Errorf("page text lacks %q", want)
		}
	}
}

// The same capture always gives the same page (maps are never iterated
// unsorted into the output).
func TestDeterministic(t *testing.T) {
	d := xssData(t)
	a := render(t, d)
	for i := 0; i < 20; i++ {
		if b := render(t, d); !bytes.Equal(a, b) {
			t.Fatal("two renderings of the same data differ")
		}
	}
}

// Long connections fold: a connection with more packets than MaxLines is
// drawn with its start, the packets around the reset and its end, and a
// marker saying how many were left out.
func TestFold(t *testing.T) {
	rd, err := pcapio.Open(filepath.Join(zeekDir, "scripts.base.protocols.ftp.ftp-auth-tls.pcap"), nil)
	if err != nil {
		t.Skipf("shared capture missing: %v", err)
	}
	defer rd.Close()
	d := runEngine(t, "ftp-auth-tls.pcap", rd)
	if len(d.Incidents) != 1 {
		t.Fatalf("%d incidents, want 1", len(d.Incidents))
	}
	kept := len(d.Incidents[0].Conn.Packets)
	if kept <= DefaultMaxLines {
		t.Fatalf("connection has only %d kept packets; the test needs more than %d", kept, DefaultMaxLines)
	}
	doc := parse(t, render(t, d))
	rows := pktGroups(doc)
	if len(rows) >= kept || len(rows) < 8 {
		t.Errorf("%d arrows drawn of %d kept packets: want a fold", len(rows), kept)
	}
	var folds []string
	for _, g := range find(doc, "g") {
		if attr(g, "class") == "fold" {
			folds = append(folds, text(g))
		}
	}
	if len(folds) != 1 || !strings.Contains(folds[0], fmt.Sprintf("%d packets not shown", kept-len(rows))) {
		t.Errorf("fold markers %q, want one for %d packets", folds, kept-len(rows))
	}
	last := text(rows[len(rows)-1])
	if !strings.Contains(last, "[R]") {
		t.Errorf("last arrow %q: want the RST", last)
	}
}

// Refused connections from Zeek's POP3 trace: one incident each, all drawn.
func TestZeekRefused(t *testing.T) {
	rd, err := pcapio.Open(filepath.Join(zeekDir, "scripts.base.protocols.pop3.basic.pcap"), nil)
	if err != nil {
		t.Skipf("shared capture missing: %v", err)
	}
	defer rd.Close()
	d := runEngine(t, "pop3.basic.pcap", rd)
	if d.Counts[cause.Refused] == 0 {
		t.Fatalf("no refused incidents: %v", d.Counts)
	}
	doc := parse(t, render(t, d))
	if got, want := len(find(doc, "svg")), len(d.Incidents); got != want {
		t.Errorf("%d diagrams, want %d", got, want)
	}
}
