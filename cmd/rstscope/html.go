package main

import (
	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/engine"
	"github.com/rstscope/rstscope/internal/report"
)

// writeHTML writes the HTML report (see internal/htmlreport).
func writeHTML(path string, in report.Input, st engine.Stats, t *report.Tally, incs []*diagnose.Incident, counts map[cause.ID]int, notDetailed int) error {
	return errNoHTML
}
