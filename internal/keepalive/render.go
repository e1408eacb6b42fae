package keepalive

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/cli"
)

// WriteText writes r for people. Everything the server sent (status,
// headers, unsolicited bytes) is cleaned before it reaches the terminal.
func WriteText(w io.Writer, r *Result) {
	fmt.Fprintf(w, "keepalive %s (%s)\n", cli.Clean(r.URL), cli.Clean(r.Remote))
	server := ""
	if r.Server != "" {
		server = ", Server: " + cli.Clean(r.Server)
	}
	fmt.Fprintf(w, "  response:     %s %s%s\n", cli.Clean(r.Proto), cli.Clean(r.Status), server)
	switch r.How {
	case NoReuse:
		fmt.Fprintln(w, "  idle timeout: none - the server answered `Connection: close`: it does not keep connections alive,")
		fmt.Fprintln(w, "                so clients cannot reuse a stale one. Nothing to tune.")
		return
	case FIN, RST:
		how := "closed it cleanly (FIN)"
		if r.How == RST {
			how = "reset it (RST)"
		}
		fmt.Fprintf(w, "  idle timeout: %s - after that long idle, the server (or a proxy in front of it) %s\n", secs(r.Idle), how)
		if r.Unsolicited != "" {
			fmt.Fprintf(w, "                it sent %d bytes first: %q\n", len(r.Unsolicited), cli.Clean(firstLine(r.Unsolicited)))
		}
	case StillUp:
		fmt.Fprintf(w, "  idle timeout: longer than %s - nothing closed the connection, and a second request on it worked.\n", r.Max)
		fmt.Fprintln(w, "                Run again with a larger --max to measure it.")
	case Silently:
		fmt.Fprintf(w, "  idle timeout: under %s, silent - no FIN or RST arrived, yet a request after %s failed (%s):\n", r.Max, r.Max, cli.Clean(r.SecondErr))
		fmt.Fprintln(w, "                a NAT, firewall or load balancer in the path dropped the idle connection without telling either end.")
		fmt.Fprintln(w, "                Enable TCP keepalive more often than that, or keep pool idle timeouts well below it; see `rstscope why` for no-connection.")
	default:
		fmt.Fprintf(w, "  idle timeout: undecided - nothing within %s, and the second request failed oddly: %s\n", r.Max, cli.Clean(r.SecondErr))
	}
	switch {
	case r.KeepAliveHeader == "":
		fmt.Fprintln(w, "  announced:    no (no `Keep-Alive: timeout=` header); clients must be configured by hand")
	case r.Announced == 0:
		fmt.Fprintf(w, "  announced:    Keep-Alive: %s (no timeout=)\n", cli.Clean(r.KeepAliveHeader))
	default:
		agree := ""
		if r.How == FIN || r.How == RST {
			if math.Abs(r.Announced-r.Idle.Seconds()) <= max(1, 0.05*r.Announced) {
				agree = " - agrees with the measurement"
			} else {
				agree = fmt.Sprintf(" - but it closed after %s: trust the measurement (a proxy in front may close first)", secs(r.Idle))
			}
		}
		fmt.Fprintf(w, "  announced:    Keep-Alive: %s%s\n", cli.Clean(r.KeepAliveHeader), agree)
	}
	if r.How != FIN && r.How != RST {
		return
	}
	if r.Known != nil {
		fmt.Fprintf(w, "  looks like:   %g s, %s\n", r.Known.Seconds, r.Known.Who)
	}
	fmt.Fprintf(w, "\nKeep client pools' idle timeouts below %s - e.g. %s - so the client closes idle connections first.\n", secs(r.Idle), short(r.Safe))
	if c := cause.Lookup(cause.StaleKeepalive); c != nil {
		fmt.Fprintf(w, "Otherwise: %s (%s). Settings:\n", c.Title, c.ID)
	}
	for _, c := range r.Clients {
		risk := ""
		if c.AtRisk {
			risk = "  <- default too long for this server"
		}
		fmt.Fprintf(w, "  %-24s default %s%s\n", c.Stack, c.Default, risk)
		if c.Set != "" {
			fmt.Fprintf(w, "  %-24s %s\n", "", c.Set)
		} else {
			fmt.Fprintf(w, "  %-24s %s: %s\n", "", c.Setting, c.Advice)
		}
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimRight(s, "\r")
}

// secs renders a measured duration with millisecond precision.
func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

func short(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%d s", d/time.Second)
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
}

// WriteJSON writes r as one JSON object on one line.
func WriteJSON(w io.Writer, r *Result) error {
	return json.NewEncoder(w).Encode(r)
}
