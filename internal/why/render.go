package why

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/rstscope/rstscope/internal/cli"
)

// MaxShown bounds how many causes the text report lists.
const MaxShown = 4

// WriteText writes r for people. Excerpts of the user's text are cleaned:
// a pasted log line may carry escape sequences.
func WriteText(w io.Writer, r *Report) {
	if len(r.Recognised) == 0 {
		fmt.Fprintln(w, "Not recognised: rstscope knows no error message in this text.")
		fmt.Fprintln(w, "It knows Java, okhttp, Apache HttpClient, Go, Node, Python, curl (7, 28, 52, 56), nginx and Envoy messages.")
		fmt.Fprintln(w, "\nGeneral next steps:")
		fmt.Fprintf(w, "  capture while it happens:  %s\n", r.Capture.Command)
		fmt.Fprintf(w, "  where:                     %s\n", r.Capture.Where)
		for _, s := range r.Next {
			fmt.Fprintf(w, "  %-40s %s\n", s.Command, s.Why)
		}
		return
	}
	fmt.Fprintln(w, "Recognised:")
	for _, g := range r.Recognised {
		fmt.Fprintf(w, "  %s\n    > %s\n", g.Name, cli.Clean(g.Excerpt))
	}
	if t := r.Target; t != nil {
		role := "peer"
		if t.Upstream {
			role = "upstream"
		}
		fmt.Fprintf(w, "  %s: %s\n", role, t.HostPort())
	}
	fmt.Fprintln(w, "\nLikely causes, most likely first:")
	for i, c := range r.Causes {
		if i >= MaxShown {
			fmt.Fprintf(w, "  (%d less likely: see --json)\n", len(r.Causes)-MaxShown)
			break
		}
		fmt.Fprintf(w, "  %d. %s - %s\n", i+1, c.ID, c.Title)
		fmt.Fprintf(w, "     why it fits: %s\n", c.Why)
		if c.Fix != "" && i < 2 {
			fmt.Fprintf(w, "     fix: %s\n", c.Fix)
		}
	}
	fmt.Fprintln(w, "\nConfirm with a capture:")
	fmt.Fprintf(w, "  %s\n", r.Capture.Command)
	fmt.Fprintf(w, "  %s\n", r.Capture.Where)
	fmt.Fprintln(w, "\nNext:")
	for _, s := range r.Next {
		fmt.Fprintf(w, "  %-40s %s\n", s.Command, s.Why)
	}
}

// WriteJSON writes r as one JSON object on one line.
func WriteJSON(w io.Writer, r *Report) error {
	return json.NewEncoder(w).Encode(r)
}
