// Package htmlreport writes rstscope's HTML report: one self-contained file
// (inline CSS and SVG, no scripts, fonts or network) with the capture's
// summary, the causes with their counts, a table of incidents, and for each
// incident a sequence diagram of its connection drawn as the article draws
// tcpdump traces (client and server as lifelines, one arrow per packet),
// followed by the explanation and advice.
//
// Every string taken from a capture (HTTP targets and reasons, packet
// comments, addresses) is attacker-controlled. The page is produced by
// html/template alone, never from template.HTML built from capture data, and
// carries a Content-Security-Policy that forbids scripts as a second line of
// defence.
//
// The page stays light whatever the capture's size: only incidents are
// rendered (never the full connection list), at most Data.MaxIncidents of
// them, and each diagram is folded to the packets around the ones that prove
// the incident.
package htmlreport

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/engine"
	"github.com/rstscope/rstscope/internal/human"
	"github.com/rstscope/rstscope/internal/report"
)

// DefaultMaxIncidents is how many incidents are drawn when Data.MaxIncidents
// is 0: enough to show every cause several times, few enough that the page
// stays a few megabytes at most.
const DefaultMaxIncidents = 200

// DefaultMaxLines is how many packets a connection's diagram shows before it
// folds (the text report's default too).
const DefaultMaxLines = 24

// Data is what the report shows: the same inputs as report.Text.
type Data struct {
	Input       report.Input
	Stats       engine.Stats
	Incidents   []*diagnose.Incident
	Counts      map[cause.ID]int // incidents per cause, including those not kept in detail
	NotDetailed int              // incidents counted by the diagnoser but not kept
	// MaxIncidents bounds the incidents drawn; 0 means DefaultMaxIncidents.
	// When there are more, every cause still gets its share (see pick).
	MaxIncidents int
	// MaxLines is the packets per connection drawn before folding; 0 means
	// DefaultMaxLines.
	MaxLines int
}

//go:embed report.html.tmpl
var pageText string

var pageTmpl = template.Must(template.New("page").Parse(pageText))

// Write renders the report to w. Its output depends only on d: the same
// capture always gives the same bytes (no clock, no map order).
func Write(w io.Writer, d Data) error {
	return pageTmpl.Execute(w, build(d))
}

// page is the template's view of Data.
type page struct {
	Title        string
	Summary      report.SummaryJSON
	Bytes        string
	Duration     string
	LinkTypes    string
	States       []kv
	Skipped      string
	Causes       []causeRow
	Total        int // incidents counted, all causes
	Kept         int // incidents kept in detail
	Incidents    []incView
	LeftOut      int // kept incidents not drawn because of MaxIncidents
	MaxIncidents int
	NotDetailed  int
}

type kv struct {
	K string
	V string
}

type causeRow struct {
	ID     string
	Title  string
	Count  int
	First  string // anchor of the first drawn incident of this cause, "" if none drawn
	Drawn  int
	Signal string
}

type incView struct {
	N            int
	Anchor       string
	Kind         string
	Cause        string
	Title        string
	Time         string
	ResetBy      string
	UID          string
	Client       string
	Server       string
	State        string
	History      string
	Summary      string
	Diagram      diagram
	Related      []relView
	KernelReason string
	KernelAgrees string // "yes", "no" or ""
	Facts        []kv
	Explanation  string
	Alternatives []diagnose.Alternative
	Advice       []string
	SameAs       int // >0: explanation and advice are those of incident SameAs
	SameAsAnchor string
}

type relView struct {
	UID, Client, Server, State, History string
}

// build turns Data into the page's view.
func build(d Data) page {
	if d.MaxIncidents <= 0 {
		d.MaxIncidents = DefaultMaxIncidents
	}
	if d.MaxLines <= 0 {
		d.MaxLines = DefaultMaxLines
	}
	s := report.Summary(d.Input, d.Stats, d.Counts, d.NotDetailed)
	p := page{
		Title:   "rstscope report: " + d.Input.Name,
		Summary: s, Bytes: human.Bytes(s.Bytes), Duration: durText(int64(s.Duration * 1e9)),
		LinkTypes: strings.Join(s.LinkTypes, ", "), Skipped: joinKV(sortKV(s.Skipped)),
		States: sortKV(s.ConnStates), Kept: len(d.Incidents), MaxIncidents: d.MaxIncidents,
		NotDetailed: d.NotDetailed,
	}
	for _, n := range d.Counts {
		p.Total += n
	}

	chosen := pick(d.Incidents, d.MaxIncidents)
	p.LeftOut = len(d.Incidents) - len(chosen)
	firstOf := map[cause.ID]int{} // cause -> number of its first drawn incident
	drawnOf := map[cause.ID]int{} // cause -> incidents drawn
	textOf := map[string]int{}    // explanation+advice -> first incident showing it
	for _, i := range chosen {
		inc := d.Incidents[i]
		v := incidentView(inc, i+1, d.MaxLines)
		if _, ok := firstOf[inc.Cause]; !ok {
			firstOf[inc.Cause] = v.N
		}
		drawnOf[inc.Cause]++
		key := inc.Explanation + "\x00" + strings.Join(inc.Advice, "\x00")
		if n, ok := textOf[key]; ok {
			v.SameAs, v.SameAsAnchor = n, anchor(n)
		} else {
			textOf[key] = v.N
		}
		p.Incidents = append(p.Incidents, v)
	}
	for _, c := range cause.Catalogue {
		n := d.Counts[c.ID]
		if n == 0 {
			continue
		}
		r := causeRow{ID: string(c.ID), Title: c.Title, Count: n, Drawn: drawnOf[c.ID], Signal: c.Signature}
		if f, ok := firstOf[c.ID]; ok {
			r.First = anchor(f)
		}
		p.Causes = append(p.Causes, r)
	}
	// Causes unknown to the catalogue (a newer engine): listed last, by id.
	var extra []string
	for id := range d.Counts {
		if cause.Lookup(id) == nil && d.Counts[id] > 0 {
			extra = append(extra, string(id))
		}
	}
	sort.Strings(extra)
	for _, id := range extra {
		r := causeRow{ID: id, Count: d.Counts[cause.ID(id)], Drawn: drawnOf[cause.ID(id)]}
		if f, ok := firstOf[cause.ID(id)]; ok {
			r.First = anchor(f)
		}
		p.Causes = append(p.Causes, r)
	}
	return p
}

// pick chooses which incidents to draw when there are more than max: it
// takes them cause by cause in turns (each cause's in time order), so that
// one cause with thousands of incidents cannot hide a rarer one, and returns
// their indexes in time order.
func pick(incs []*diagnose.Incident, max int) []int {
	if len(incs) <= max {
		out := make([]int, len(incs))
		for i := range out {
			out[i] = i
		}
		return out
	}
	byCause := map[cause.ID][]int{}
	var order []cause.ID
	for i, inc := range incs {
		if _, ok := byCause[inc.Cause]; !ok {
			order = append(order, inc.Cause)
		}
		byCause[inc.Cause] = append(byCause[inc.Cause], i)
	}
	var out []int
	for round := 0; len(out) < max; round++ {
		for _, id := range order {
			if l := byCause[id]; round < len(l) && len(out) < max {
				out = append(out, l[round])
			}
		}
	}
	sort.Ints(out)
	return out
}

func anchor(n int) string { return "inc-" + strconv.Itoa(n) }

// incidentView prepares one incident: its texts and its diagram.
func incidentView(inc *diagnose.Incident, n, maxLines int) incView {
	v := incView{N: n, Anchor: anchor(n), Kind: inc.Kind, Cause: string(inc.Cause), Time: report.RFC3339(inc.Time),
		Summary: inc.Summary, Explanation: inc.Explanation, Advice: inc.Advice, Alternatives: inc.Alternatives,
		KernelReason: inc.KernelReason}
	if c := cause.Lookup(inc.Cause); c != nil {
		v.Title = c.Title
	}
	if inc.Kind == diagnose.KindReset {
		v.ResetBy = inc.ResetBy
	}
	if a, ok := inc.Facts["kernel_agrees"].(bool); ok {
		v.KernelAgrees = "no"
		if a {
			v.KernelAgrees = "yes"
		}
	}
	if inc.Conn != nil {
		v.UID, v.Client, v.Server, v.State, v.History = inc.Conn.UID, inc.Conn.Client, inc.Conn.Server, inc.Conn.State, inc.Conn.History
		mark := map[uint64]bool{}
		for _, p := range inc.Packets {
			mark[p] = true
		}
		v.Diagram = buildDiagram(inc, mark, maxLines)
	}
	for _, rc := range inc.RelatedConns {
		v.Related = append(v.Related, relView{rc.UID, rc.Client, rc.Server, rc.State, rc.History})
	}
	v.Facts = facts(inc.Facts)
	return v
}

// facts lists an incident's facts by name, leaving out those shown
// elsewhere on the page.
func facts(f map[string]any) []kv {
	skip := map[string]bool{"kernel_reason": true, "kernel_agrees": true}
	var out []kv
	for k, v := range f {
		if skip[k] {
			continue
		}
		var s string
		switch x := v.(type) {
		case float64:
			s = strconv.FormatFloat(x, 'f', -1, 64)
		case string:
			s = x
		default:
			s = fmt.Sprint(x)
		}
		out = append(out, kv{k, s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].K < out[j].K })
	return out
}

// sortKV lists a count map largest first, then by name.
func sortKV[V int | uint64](m map[string]V) []kv {
	keys := report.SortCounts(m)
	out := make([]kv, len(keys))
	for i, k := range keys {
		out[i] = kv{k, fmt.Sprint(m[k])}
	}
	return out
}

func joinKV(l []kv) string {
	parts := make([]string, len(l))
	for i, x := range l {
		parts[i] = x.K + " " + x.V
	}
	return strings.Join(parts, ", ")
}
