package lab

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/cli"
	"github.com/rstscope/rstscope/internal/htmlreport"
	"github.com/rstscope/rstscope/internal/report"
)

// List writes the scenarios, one a line.
func List(w io.Writer) {
	for _, s := range Scenarios {
		tag := ""
		if s.article {
			tag = " (the article's)"
		}
		if s.Root {
			tag += " [needs root]"
		}
		fmt.Fprintf(w, "  %-18s %s%s\n", s.Name, s.Title, tag)
	}
}

// Text writes a run for people: what was set up, what the client saw, the
// capture explained (timelines), the kernel's reasons, and the checks.
func (r *Result) Text(w io.Writer, color bool) {
	sc := r.Scenario
	fmt.Fprintf(w, "=== lab %s: %s\n", sc.Name, sc.Title)
	fmt.Fprintf(w, "%s\n", sc.Story)
	fmt.Fprintf(w, "%s\n\n", r.Env)
	for _, s := range r.Setup {
		fmt.Fprintf(w, "  setup:  %s\n", s)
	}
	for _, st := range r.Steps {
		out := fmt.Sprintf("HTTP %d", st.Status)
		if st.Status == 0 {
			out = "ok"
		}
		if st.Error != "" {
			out = st.Error
		}
		extra := ""
		if st.Reused {
			extra += " (reused pooled connection)"
		}
		if st.Retried {
			extra += " (retried on a new connection)"
		}
		fmt.Fprintf(w, "  client: %s -> %s%s\n", st.What, cli.Clean(out), extra)
	}
	if r.Err != nil {
		fmt.Fprintf(w, "\n  error: %v\n", r.Err)
	}
	for name, log := range r.PeerLogs {
		for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
			if l != "" {
				fmt.Fprintf(w, "  %s log: %s\n", name, cli.Clean(l))
			}
		}
	}
	fmt.Fprintln(w)
	if r.Stats.Frames > 0 {
		counts := map[cause.ID]int{}
		for _, inc := range r.Incidents {
			counts[inc.Cause]++
		}
		in := report.Input{Name: "lab capture of " + sc.Name, Format: "live"}
		report.Text(w, in, r.Stats, r.Incidents, counts, 0, report.TextOptions{Color: color})
	}
	if r.KernelRSTs > 0 || len(r.Unmatched) > 0 {
		fmt.Fprintf(w, "\nkernel: %d RST(s) sent by this host's TCP stack matched to captured packets (reasons shown above as packet notes)", r.KernelRSTs)
		if len(r.Unmatched) > 0 {
			fmt.Fprintf(w, "; %d not in the capture:", len(r.Unmatched))
			for i, ev := range r.Unmatched {
				if i == 5 {
					fmt.Fprintf(w, " and %d more", len(r.Unmatched)-i)
					break
				}
				fmt.Fprintf(w, " %s->%s %s;", ev.Src, ev.Dst, ev.Reason)
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "\nchecks:")
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  [%s] %s (got: %s)\n", mark, c.What, cli.Clean(c.Got))
	}
	if r.OK() {
		fmt.Fprintf(w, "lab %s: as expected\n\n", sc.Name)
	} else {
		fmt.Fprintf(w, "lab %s: NOT as expected\n\n", sc.Name)
	}
}

// LabJSON is the "lab" object of `rstscope lab --json`.
type LabJSON struct {
	Type      string         `json:"type"`
	Scenario  string         `json:"scenario"`
	Fix       string         `json:"fix,omitempty"`
	OK        bool           `json:"ok"`
	Error     string         `json:"error,omitempty"`
	Expect    map[string]any `json:"expect"`
	Checks    []Check        `json:"checks"`
	Steps     []Step         `json:"steps"`
	Setup     []string       `json:"setup"`
	Env       string         `json:"env"`
	KernelRST int            `json:"kernel_rsts_matched"`
	Unmatched []string       `json:"kernel_rsts_not_captured"`
	Packets   uint64         `json:"packets"`
}

// JSON writes the lab object, then the incidents, then the summary, as
// JSON Lines.
func (r *Result) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	j := LabJSON{Type: "lab", Scenario: r.Scenario.Name, Fix: r.Options.Fix, OK: r.OK(), Checks: r.Checks, Steps: r.Steps,
		Setup: r.Setup, Env: r.Env, KernelRST: r.KernelRSTs, Packets: r.Stats.Frames, Unmatched: []string{},
		Expect: map[string]any{"cause": r.Expect.Cause, "reset_by": r.Expect.ResetBy, "client_sees": r.Expect.ClientSees}}
	if r.Err != nil {
		j.Error = r.Err.Error()
	}
	if j.Checks == nil {
		j.Checks = []Check{}
	}
	if j.Steps == nil {
		j.Steps = []Step{}
	}
	for _, ev := range r.Unmatched {
		j.Unmatched = append(j.Unmatched, fmt.Sprintf("%s->%s %s", ev.Src, ev.Dst, ev.Reason))
	}
	sort.Strings(j.Unmatched)
	if err := enc.Encode(j); err != nil {
		return err
	}
	counts := map[cause.ID]int{}
	for _, inc := range r.Incidents {
		counts[inc.Cause]++
		if err := enc.Encode(report.Incident(inc)); err != nil {
			return err
		}
	}
	in := report.Input{Name: "lab capture of " + r.Scenario.Name, Format: "live"}
	return enc.Encode(report.Summary(in, r.Stats, counts, 0))
}

// HTML writes the run's incidents as the self-contained HTML report.
func (r *Result) HTML(w io.Writer) error {
	in := report.Input{Name: "lab capture of " + r.Scenario.Name, Format: "live"}
	return htmlreport.Write(w, htmlreport.Data{Input: in, Stats: r.Stats,
		Incidents: r.Incidents, Counts: r.Stats.Incidents, NotDetailed: r.Stats.NotDetailed})
}
