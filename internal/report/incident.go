package report

import (
	"io"

	"github.com/rstscope/rstscope/internal/diagnose"
)

// WriteIncident writes one incident exactly as the text report (Text) does,
// numbered n: its title, timeline, kernel reason, facts, explanation and
// advice. `rstscope watch` uses it to print incidents one by one as they are
// diagnosed, in the same form as `rstscope analyze`. Zero fields of o get
// Text's defaults.
func WriteIncident(w io.Writer, n int, inc *diagnose.Incident, o TextOptions) {
	if o.MaxLines == 0 {
		o.MaxLines = 24
	}
	writeIncident(w, n, inc, o, painter(o.Color))
}
