package probe

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/cli"
)

// meaning says in words what each state means for the user.
var meaning = map[State]string{
	Open:        "something accepted the connection",
	Refused:     "answered with RST: nothing listens there, or a firewall rejects",
	NoAnswer:    "no answer: a firewall drops the SYNs, the host is down, or the listener's queue is full",
	Unreachable: "the network or host is unreachable (ICMP error or no route)",
	Failed:      "the attempt failed before a SYN could be answered",
}

// WriteText writes rep for people. Process names and error strings are
// cleaned: a process can name itself anything, escape sequences included.
func WriteText(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "probe %s\n", cli.Clean(rep.Target))
	for _, r := range rep.Results {
		fmt.Fprintf(w, "\n  %-24s %s %s\n", r.Addr, strings.ToUpper(string(r.Verdict)), timing(r))
		fmt.Fprintf(w, "    %s\n", meaning[r.Verdict])
		if r.Verdict == Failed && len(r.Attempts) > 0 {
			fmt.Fprintf(w, "    error: %s\n", cli.Clean(r.Attempts[len(r.Attempts)-1].Err))
		}
		if n := mixed(r); n != "" {
			fmt.Fprintf(w, "    attempts: %s\n", n)
		}
		for _, l := range r.Listeners {
			fmt.Fprintf(w, "    listening: %s\n", listenerText(l))
		}
		for _, h := range r.Hints {
			fmt.Fprintf(w, "    %s\n", h)
		}
		for _, nm := range r.NearMisses {
			fmt.Fprintf(w, "    near miss (%s): %s%s\n", nm.Kind, nm.Text, owner(nm.Listener))
		}
		if r.Local && r.ProcErr != "" {
			fmt.Fprintf(w, "    (could not read listeners: %s)\n", cli.Clean(r.ProcErr))
		}
		if r.Local && r.ProcErr == "" && r.Verdict != Open && len(r.Listeners) == 0 && len(r.NearMisses) == 0 {
			fmt.Fprintf(w, "    no listener on port %d or a neighbouring port on this machine\n", r.Addr.Port())
		}
		if c := cause.Lookup(r.Cause); c != nil {
			fmt.Fprintf(w, "    cause: %s (%s)\n", c.ID, c.Title)
			if len(c.Advice) > 0 {
				fmt.Fprintf(w, "    advice: %s\n", c.Advice[0])
			}
		}
	}
}

// timing renders "in 0.12 ms" or "after 3s (timeout)".
func timing(r AddrResult) string {
	if len(r.Attempts) == 0 {
		return ""
	}
	last := r.Attempts[len(r.Attempts)-1]
	if last.State == NoAnswer {
		return fmt.Sprintf("after %s (timeout)", round(last.Elapsed))
	}
	if len(r.Attempts) == 1 {
		return "in " + round(last.Elapsed)
	}
	lo, hi, sum := r.Attempts[0].Elapsed, r.Attempts[0].Elapsed, time.Duration(0)
	for _, a := range r.Attempts {
		lo, hi, sum = min(lo, a.Elapsed), max(hi, a.Elapsed), sum+a.Elapsed
	}
	return fmt.Sprintf("min/avg/max %s/%s/%s over %d attempts", round(lo), round(sum/time.Duration(len(r.Attempts))), round(hi), len(r.Attempts))
}

// mixed lists the states when attempts disagreed (a flapping service).
func mixed(r AddrResult) string {
	counts := map[State]int{}
	var order []State
	for _, a := range r.Attempts {
		if counts[a.State] == 0 {
			order = append(order, a.State)
		}
		counts[a.State]++
	}
	if len(order) < 2 {
		return ""
	}
	var parts []string
	for _, s := range order {
		parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
	}
	return strings.Join(parts, ", ")
}

func round(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.3f ms", float64(d.Microseconds())/1000)
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
	return d.Round(time.Millisecond).String()
}

func listenerText(l ListenerInfo) string {
	s := l.Addr.String()
	if l.IPv6 && l.Addr.Addr().IsUnspecified() && l.Addr.Addr().Is6() {
		s += " (IPv6 socket; takes IPv4 too unless IPV6_V6ONLY)"
	}
	if l.Queue > 0 {
		s += fmt.Sprintf(", %d waiting in the accept queue", l.Queue)
	}
	if o := owner(l); o != "" {
		s += o
	} else {
		s += ", owner unknown (run as root to see other users' processes)"
	}
	return s
}

func owner(l ListenerInfo) string {
	if len(l.Procs) == 0 {
		return ""
	}
	var ps []string
	for _, p := range l.Procs {
		ps = append(ps, fmt.Sprintf("%s pid %d", cli.Clean(p.Name), p.PID))
	}
	return " [" + strings.Join(ps, ", ") + "]"
}

// WriteJSON writes one JSON object per probed address.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	for _, r := range rep.Results {
		if err := enc.Encode(struct {
			Target string `json:"target"`
			AddrResult
		}{rep.Target, r}); err != nil {
			return err
		}
	}
	return nil
}

// AnyOpen reports whether at least one address answered.
func (rep *Report) AnyOpen() bool {
	for _, r := range rep.Results {
		if r.Verdict == Open {
			return true
		}
	}
	return false
}
