package report

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/cli"
	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/engine"
	"github.com/rstscope/rstscope/internal/human"
)

// TextOptions tune the text report.
type TextOptions struct {
	Color        bool // ANSI colours (only for terminals, never with NO_COLOR)
	MaxIncidents int  // incidents printed in full; the rest are listed by one line. 0 = 50
	MaxLines     int  // timeline lines per connection before folding. 0 = 24
}

// ANSI colours.
const (
	red    = "\x1b[31m"
	yellow = "\x1b[33m"
	cyan   = "\x1b[36m"
	bold   = "\x1b[1m"
	dim    = "\x1b[2m"
	reset  = "\x1b[0m"
)

type painter bool

func (p painter) c(code, s string) string {
	if !p {
		return s
	}
	return code + s + reset
}

// Text writes the human report: capture facts, connections by state, causes
// with counts, then every incident with its timeline, explanation and advice.
func Text(w io.Writer, in Input, st engine.Stats, incs []*diagnose.Incident, counts map[cause.ID]int, notDetailed int, o TextOptions) {
	if o.MaxIncidents == 0 {
		o.MaxIncidents = 50
	}
	if o.MaxLines == 0 {
		o.MaxLines = 24
	}
	p := painter(o.Color)
	s := Summary(in, st, counts, notDetailed)
	fmt.Fprintf(w, "%s %s: %s, %s, %d packets (%d TCP), %s",
		p.c(bold, "rstscope"), cli.Clean(in.Name), s.Format, strings.Join(s.LinkTypes, " + "), s.Packets, s.TCPPackets, human.Bytes(s.Bytes))
	if s.Packets > 0 {
		fmt.Fprintf(w, ", %s, from %s", durS(s.Duration), s.First)
	}
	fmt.Fprintln(w)
	if s.Malformed > 0 {
		fmt.Fprintf(w, "  %d packets skipped: %s\n", s.Malformed, kv(s.Skipped))
	}
	if s.Truncated > 0 {
		fmt.Fprintf(w, "  %d TCP packets cut short by the snaplen (headers used, payload partly missing)\n", s.Truncated)
	}
	if s.ReadError != "" {
		fmt.Fprintf(w, "  %s %s (results below cover what was read)\n", p.c(red, "read error:"), cli.Clean(s.ReadError))
	}
	fmt.Fprintf(w, "connections: %d", s.Connections)
	if len(s.ConnStates) > 0 {
		fmt.Fprintf(w, " (%s)", kv(s.ConnStates))
	}
	fmt.Fprintf(w, ", %d ended with a reset\n", s.Resets)
	if s.Evicted > 0 {
		fmt.Fprintf(w, "  %d connections were released early because more than the live limit were open at once (raise --max-conns)\n", s.Evicted)
	}
	if len(counts) == 0 {
		fmt.Fprintln(w, "\nNo resets, proxy errors or unanswered connections found.")
		return
	}
	fmt.Fprintln(w, "\nBy cause:")
	for _, c := range cause.Catalogue {
		if n := counts[c.ID]; n > 0 {
			fmt.Fprintf(w, "  %5d  %-18s %s\n", n, c.ID, c.Title)
		}
	}
	if notDetailed > 0 {
		fmt.Fprintf(w, "  (%d more incidents were counted but not kept in detail: --max-incidents)\n", notDetailed)
	}
	for i, inc := range incs {
		if i == o.MaxIncidents {
			fmt.Fprintf(w, "\n%d more incidents (use --json for all, or --max-incidents):\n", len(incs)-i)
		}
		if i >= o.MaxIncidents {
			fmt.Fprintf(w, "  %s  %-18s %s %s -> %s\n", RFC3339(inc.Time), inc.Cause, inc.Conn.UID, inc.Conn.Client, inc.Conn.Server)
			continue
		}
		writeIncident(w, i+1, inc, o, p)
	}
}

func writeIncident(w io.Writer, n int, inc *diagnose.Incident, o TextOptions, p painter) {
	title := string(inc.Cause)
	if c := cause.Lookup(inc.Cause); c != nil {
		title += ": " + c.Title
	}
	fmt.Fprintf(w, "\n%s", p.c(bold, fmt.Sprintf("[%d] %s", n, title)))
	if inc.ResetBy != "" && inc.Kind == diagnose.KindReset {
		fmt.Fprintf(w, " (reset by %s)", inc.ResetBy)
	}
	fmt.Fprintf(w, "\n    %s  %s  %s -> %s\n", RFC3339(inc.Time), inc.Conn.UID, inc.Conn.Client, inc.Conn.Server)
	fmt.Fprintf(w, "    %s\n", wrap(cli.Clean(inc.Summary), 4, 92))
	mark := map[uint64]bool{}
	for _, n := range inc.Packets {
		mark[n] = true
	}
	fmt.Fprintln(w)
	Diagram(w, inc.Conn, mark, o.MaxLines, p, "    ")
	for _, rc := range inc.RelatedConns {
		fmt.Fprintf(w, "\n    related connection %s %s -> %s (%s %s):\n", rc.UID, rc.Client, rc.Server, rc.State, rc.History)
		Diagram(w, rc, mark, o.MaxLines, p, "    ")
	}
	if inc.KernelReason != "" {
		agree := ""
		if a, ok := inc.Facts["kernel_agrees"].(bool); ok {
			if a {
				agree = " (agrees with the verdict)"
			} else {
				agree = p.c(yellow, " (does not match the usual reasons for this cause)")
			}
		}
		fmt.Fprintf(w, "\n    kernel's reason: %s%s\n", cli.Clean(inc.KernelReason), agree)
	}
	if facts := factLine(inc.Facts); facts != "" {
		fmt.Fprintf(w, "\n    facts: %s\n", wrap(facts, 11, 92))
	}
	fmt.Fprintf(w, "\n    why: %s\n", wrap(inc.Explanation, 9, 92))
	for _, a := range inc.Alternatives {
		fmt.Fprintf(w, "    also possible: %s: %s\n", a.Cause, wrap(a.Why, 20, 92))
	}
	if len(inc.Advice) > 0 {
		fmt.Fprintln(w, "    what to do:")
		for _, a := range inc.Advice {
			fmt.Fprintf(w, "      - %s\n", wrap(a, 8, 92))
		}
	}
}

// Diagram draws a connection as two lifelines with an arrow per packet,
// folding long connections to the part around the marked packets and calling
// out idle gaps.
func Diagram(w io.Writer, s *diagnose.Snapshot, mark map[uint64]bool, maxLines int, p painter, indent string) {
	const width = 46
	left := "client " + s.Client
	right := "server " + s.Server
	fmt.Fprintf(w, "%s%-8s %10s  %-*s %s\n", indent, "pkt", "time", width+1, left, right)
	pk := s.Packets
	keep := FoldIndex(pk, mark, maxLines)
	var t0 int64
	if len(pk) > 0 {
		t0 = pk[0].TS
	}
	prevShown := -1
	for i := range pk {
		if !keep[i] {
			continue
		}
		if prevShown >= 0 && i > prevShown+1 {
			fmt.Fprintf(w, "%s%s\n", indent, p.c(dim, fmt.Sprintf("         ... %d packets not shown ...", i-prevShown-1)))
		} else if prevShown == -1 && i > 0 {
			fmt.Fprintf(w, "%s%s\n", indent, p.c(dim, fmt.Sprintf("         ... %d packets not shown ...", i)))
		}
		if i > 0 {
			gap := pk[i].TS - pk[i-1].TS
			if gap >= 1e9 || (gap >= 100e6 && s.Duration > 0 && gap*5 >= s.Duration) {
				fmt.Fprintf(w, "%s%s\n", indent, p.c(yellow, fmt.Sprintf("%20s  ~~~~~~~~~~~~~~ %s idle ~~~~~~~~~~~~~~", "", durS(float64(gap)/1e9))))
			}
		}
		if s.Dropped > 0 && i > 0 && pk[i].Num > pk[i-1].Num+1 && keep[i-1] && prevShown == i-1 {
			fmt.Fprintf(w, "%s%s\n", indent, p.c(dim, "         ... packets not kept by the tracker ..."))
		}
		prevShown = i
		fmt.Fprintf(w, "%s%s\n", indent, arrowLine(s, &pk[i], t0, width, mark[pk[i].Num], p))
	}
	if prevShown >= 0 && prevShown < len(pk)-1 {
		fmt.Fprintf(w, "%s%s\n", indent, p.c(dim, fmt.Sprintf("         ... %d packets not shown ...", len(pk)-1-prevShown)))
	}
	if s.Dropped > 0 {
		fmt.Fprintf(w, "%s%s\n", indent, p.c(dim, fmt.Sprintf("(%d packets of this connection were not kept; the first and last are shown)", s.Dropped)))
	}
}

// FoldIndex picks which packets of a connection to draw: all when few, else
// the first three, the marked ones with two neighbours each side, and the
// last five. The text and HTML diagrams fold the same way.
func FoldIndex(pk []conntrack.Pkt, mark map[uint64]bool, maxLines int) []bool {
	keep := make([]bool, len(pk))
	if len(pk) <= maxLines {
		for i := range keep {
			keep[i] = true
		}
		return keep
	}
	for i := 0; i < 3 && i < len(pk); i++ {
		keep[i] = true
	}
	for i := max(0, len(pk)-5); i < len(pk); i++ {
		keep[i] = true
	}
	for i := range pk {
		if mark[pk[i].Num] {
			for j := max(0, i-2); j <= min(len(pk)-1, i+2); j++ {
				keep[j] = true
			}
		}
	}
	return keep
}

func arrowLine(s *diagnose.Snapshot, pk *conntrack.Pkt, t0 int64, width int, marked bool, p painter) string {
	seq, ack := s.RelSeq(pk)
	label := pk.Flags.String() + fmt.Sprintf(" seq %d", seq)
	if pk.Flags&decode.ACK != 0 {
		label += fmt.Sprintf(" ack %d", ack)
	}
	if pk.Len > 0 {
		label += fmt.Sprintf(" len %d", pk.Len)
	}
	if pk.Flags&decode.RST != 0 || pk.Flags&decode.SYN != 0 {
		label += fmt.Sprintf(" win %d", pk.Win)
	}
	body := strings.Repeat("-", 2) + " " + label + " "
	pad := width - utf8.RuneCountInString(body) - 1
	if pad < 1 {
		pad = 1
	}
	var arrow string
	if pk.Dir == conntrack.FromClient {
		arrow = "|" + body + strings.Repeat("-", pad) + ">|"
	} else {
		arrow = "|<" + strings.Repeat("-", pad) + body + "|"
	}
	code := ""
	switch {
	case pk.Flags&decode.RST != 0:
		code = red
	case pk.Flags&decode.FIN != 0:
		code = yellow
	}
	if code != "" {
		arrow = p.c(code, arrow)
	}
	extra := ""
	if pk.HTTP >= 0 && int(pk.HTTP) < len(s.HTTP) {
		m := s.HTTP[pk.HTTP]
		if m.Method != "" {
			extra = " " + p.c(cyan, cli.Clean(m.Method+" "+m.Target))
		} else {
			extra = " " + p.c(cyan, cli.Clean(fmt.Sprintf("HTTP %d %s", m.Status, m.Reason)))
		}
	}
	if pk.Note >= 0 && int(pk.Note) < len(s.Notes) {
		extra += " " + p.c(dim, "["+cli.Clean(s.Notes[pk.Note].Text)+"]")
	}
	num := fmt.Sprintf("#%d", pk.Num)
	if marked {
		num = "*" + num
		num = p.c(bold, fmt.Sprintf("%-8s", num))
	} else {
		num = fmt.Sprintf("%-8s", " "+num)
	}
	return fmt.Sprintf("%s %10.6f  %s%s", num, float64(pk.TS-t0)/1e9, arrow, extra)
}

func factLine(f map[string]any) string {
	skip := map[string]bool{"rst_packet": true, "rst_flags": true, "kernel_reason": true, "kernel_agrees": true}
	var keys []string
	for k := range f {
		if !skip[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, cli.Clean(fmt.Sprint(f[k]))))
	}
	return strings.Join(parts, ", ")
}

func kv[V int | uint64](m map[string]V) string {
	var parts []string
	for _, k := range SortCounts(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// SortCounts returns the keys of a count map, largest count first, then by
// name: the order every report lists states and causes in.
func SortCounts[V int | uint64](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}

func durS(s float64) string { return human.Seconds(s) }

// wrap folds text at width, indenting continuation lines.
func wrap(s string, indent, width int) string {
	words := strings.Fields(s)
	var b strings.Builder
	col := indent
	for i, wd := range words {
		l := utf8.RuneCountInString(wd)
		if i > 0 {
			if col+1+l > width {
				b.WriteString("\n" + strings.Repeat(" ", indent))
				col = indent
			} else {
				b.WriteByte(' ')
				col++
			}
		}
		b.WriteString(wd)
		col += l
	}
	return b.String()
}

// AppendConnLine appends one connection in the manner of Zeek's conn.log (tab
// separated): ts uid client server duration client_bytes server_bytes
// conn_state history client_pkts server_pkts.
func AppendConnLine(b []byte, c *conntrack.Conn) []byte {
	b = appendTime(b, c.Start)
	b = append(b, '\t')
	b = append(b, diagnose.UID(c.ID)...)
	b = append(b, '\t')
	b = c.Client().AppendTo(b)
	b = append(b, '\t')
	b = c.Server().AppendTo(b)
	b = append(b, '\t')
	b = strconv.AppendFloat(b, float64(c.Duration())/1e9, 'f', 6, 64)
	b = append(b, '\t')
	b = strconv.AppendUint(b, c.Ep[0].Size(), 10)
	b = append(b, '\t')
	b = strconv.AppendUint(b, c.Ep[1].Size(), 10)
	b = append(b, '\t')
	b = append(b, c.State()...)
	b = append(b, '\t')
	b = append(b, c.History()...)
	b = append(b, '\t')
	b = strconv.AppendUint(b, c.Ep[0].Pkts, 10)
	b = append(b, '\t')
	b = strconv.AppendUint(b, c.Ep[1].Pkts, 10)
	return append(b, '\n')
}

// ConnHeader is the header line for AppendConnLine rows.
const ConnHeader = "#ts\tuid\tclient\tserver\tduration\tclient_bytes\tserver_bytes\tconn_state\thistory\tclient_pkts\tserver_pkts\n"
