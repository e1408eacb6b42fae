package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/cli"
	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/engine"
	"github.com/rstscope/rstscope/internal/gcstart"
	"github.com/rstscope/rstscope/internal/pcapio"
	"github.com/rstscope/rstscope/internal/report"
)

func init() {
	cli.Register(&cli.Command{
		Name:    "analyze",
		Summary: "explain every reset (and proxy error) in a pcap/pcapng capture",
		Usage:   "rstscope analyze [flags] FILE|-",
		Help: `Reads a capture (pcap or pcapng, optionally gzip-compressed; "-" reads standard
input), rebuilds every TCP connection, and explains each reset, each 502/503/504
from a proxy (tied to the upstream connection that failed), and each SYN nobody
answered: what happened, the packets that prove it, why, and what to change.

Examples:
  rstscope analyze capture.pcap
  tcpdump -i any -w - 'tcp port 80' | rstscope analyze -
  rstscope analyze --json capture.pcapng | jq 'select(.type=="incident")'
  rstscope analyze --conns capture.pcap          # one line per connection, like Zeek's conn.log
  rstscope analyze --fail-on stale-keepalive,refused capture.pcap   # for CI

Capture with the packets' headers at least (tcpdump -s 128 is enough for TCP;
-s 0 keeps HTTP lines whole). Capture on the side that sees the error.

Exit status: 0 the analysis ran (whatever it found; a capture cut off in the
middle is reported with a warning and the results for what was read);
1 a cause named by --fail-on was found; 2 usage error or unreadable input.`,
		Flags: analyzeFlags,
	})
}

func analyzeFlags(fs *flag.FlagSet) func(env *cli.Env, args []string) int {
	jsonOut := fs.Bool("json", false, "JSON Lines: incidents, then one conn object per connection, then a summary")
	conns := fs.Bool("conns", false, "print one tab-separated line per connection (Zeek conn.log columns) instead of the report")
	htmlOut := fs.String("html", "", "also write a self-contained HTML report to `FILE`")
	quiet := fs.Bool("q", false, "no progress bar or warnings on stderr")
	failOn := fs.String("fail-on", "", "exit 1 if any of these `CAUSES` (comma-separated ids, or \"any\") is found")
	maxConns := fs.Int("max-conns", 200000, "live connections kept at once; the oldest beyond it are released early (counted)")
	maxInc := fs.Int("max-incidents", 10000, "incidents kept in detail; more are counted only")
	show := fs.Int("show", 50, "incidents printed in full in the text report")
	noColor := fs.Bool("no-color", false, "no colours even on a terminal (NO_COLOR is honoured too)")
	workers := fs.Int("workers", 0, "goroutines tracking connections (0: one per CPU; with 1, --json and --conns rows come in the order connections finish)")
	return func(env *cli.Env, args []string) int {
		if len(args) != 1 {
			fmt.Fprintln(env.Stderr, "rstscope analyze: give one capture file, or - for standard input\nRun 'rstscope analyze --help' for usage.")
			return cli.ExitUsage
		}
		fail, err := parseFailOn(*failOn)
		if err != nil {
			fmt.Fprintf(env.Stderr, "rstscope analyze: %v\n", err)
			return cli.ExitUsage
		}
		if *workers < 0 {
			fmt.Fprintln(env.Stderr, "rstscope analyze: --workers must be 0 (one per CPU) or more")
			return cli.ExitUsage
		}
		return analyze(env, args[0], analyzeOpts{json: *jsonOut, conns: *conns, html: *htmlOut, quiet: *quiet,
			failOn: fail, maxConns: *maxConns, maxInc: *maxInc, show: *show, noColor: *noColor, workers: *workers})
	}
}

type analyzeOpts struct {
	json, conns, quiet, noColor bool
	html                        string
	failOn                      map[cause.ID]bool
	maxConns, maxInc, show      int
	workers                     int
}

func parseFailOn(s string) (map[cause.ID]bool, error) {
	out := map[cause.ID]bool{}
	if s == "" {
		return out, nil
	}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "any" {
			for _, c := range cause.Catalogue {
				out[c.ID] = true
			}
			continue
		}
		if !cause.Valid(cause.ID(f)) {
			var ids []string
			for _, c := range cause.Catalogue {
				ids = append(ids, string(c.ID))
			}
			return nil, fmt.Errorf("--fail-on: unknown cause %q (known: %s, any)", cli.Clean(f), strings.Join(ids, ", "))
		}
		out[cause.ID(f)] = true
	}
	return out, nil
}

func analyze(env *cli.Env, path string, o analyzeOpts) int {
	rd, err := pcapio.OpenMapped(path, env.Stdin)
	if err != nil {
		fmt.Fprintf(env.Stderr, "rstscope analyze: %s\n", cli.Clean(err.Error()))
		return cli.ExitUsage
	}
	defer rd.Close()

	out := bufio.NewWriterSize(env.Stdout, 256<<10)
	defer out.Flush()
	var spool report.Spool
	defer spool.Close()
	if o.conns {
		out.WriteString(report.ConnHeader)
	}
	// Connection rows are made by the engine, on as many goroutines as it
	// tracks on (see engine.Options.Row).
	var row func(b []byte, c *conntrack.Conn) []byte
	var rowsTo io.Writer
	switch {
	case o.conns:
		row, rowsTo = report.AppendConnLine, out
	case o.json:
		row, rowsTo = report.AppendConn, &spool
	}
	prog := newProgress(env.Stderr, path, rd, !o.quiet && !o.json && !o.conns)
	gcstart.Relax(nil) // one collection while the engine builds up, not four
	incs, st, rerr := engine.Run(rd, engine.Options{
		Track:    conntrack.Config{MaxConns: o.maxConns},
		Diagnose: diagnose.Options{MaxIncidents: o.maxInc},
		Row:      row,
		RowsTo:   rowsTo,
		Progress: prog.update,
		Workers:  o.workers,
	})
	prog.done()
	in := report.Input{Name: path, Format: rd.Format()}
	if path == "-" {
		in.Name = "standard input"
	}
	if rerr != nil {
		in.ReadError = rerr.Error()
		if !o.quiet {
			fmt.Fprintf(env.Stderr, "rstscope analyze: warning: %s; results cover what was read\n", cli.Clean(rerr.Error()))
		}
	}
	// Counts come from the diagnoser: they include incidents beyond
	// --max-incidents, which are counted but not kept in detail.
	counts, notDetailed := st.Incidents, st.NotDetailed
	switch {
	case o.conns:
	case o.json:
		jenc := json.NewEncoder(out)
		jenc.SetEscapeHTML(false)
		for _, inc := range incs {
			jenc.Encode(report.Incident(inc))
		}
		out.Flush()
		if _, err := spool.WriteTo(out); err != nil {
			fmt.Fprintf(env.Stderr, "rstscope analyze: spooling connections: %v\n", err)
		}
		jenc.Encode(report.Summary(in, st, counts, notDetailed))
	default:
		color := !o.noColor && cli.UseColor(env.Stdout)
		report.Text(out, in, st, incs, counts, notDetailed, report.TextOptions{Color: color, MaxIncidents: o.show})
	}
	if o.html != "" {
		if err := writeHTML(o.html, in, st, incs, counts, notDetailed); err != nil {
			fmt.Fprintf(env.Stderr, "rstscope analyze: --html: %v\n", err)
			return cli.ExitUsage
		}
		if !o.quiet {
			fmt.Fprintf(env.Stderr, "rstscope analyze: wrote %s\n", o.html)
		}
	}
	for id := range counts {
		if o.failOn[id] {
			return cli.ExitFindings
		}
	}
	return cli.ExitOK
}

// progress draws a one-line bar on a terminal for large files.
type progress struct {
	w     io.Writer
	rd    *pcapio.Reader
	size  int64
	on    bool
	last  time.Time
	start time.Time
}

func newProgress(w io.Writer, path string, rd *pcapio.Reader, want bool) *progress {
	p := &progress{w: w, rd: rd, start: time.Now()}
	if !want || path == "-" || !cli.IsTerminal(w) {
		return p
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() > 32<<20 {
		p.size, p.on = fi.Size(), true
	}
	return p
}

func (p *progress) update(packets uint64) {
	if !p.on || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	frac := float64(p.rd.BytesRead()) / float64(p.size)
	if frac > 1 {
		frac = 1
	}
	const width = 30
	n := int(frac * width)
	fmt.Fprintf(p.w, "\r[%s%s] %3.0f%%  %d packets  %.1fs", strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100, packets, time.Since(p.start).Seconds())
}

func (p *progress) done() {
	if p.on && !p.last.IsZero() {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", 70))
	}
}
