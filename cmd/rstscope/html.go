package main

import (
	"bufio"
	"os"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/engine"
	"github.com/rstscope/rstscope/internal/htmlreport"
	"github.com/rstscope/rstscope/internal/report"
)

// writeHTML writes the HTML report (see internal/htmlreport) to path. The
// file is written whole or reported as failed: a write or close error is
// returned, so a half-written report is never mistaken for a complete one.
func writeHTML(path string, in report.Input, st engine.Stats, incs []*diagnose.Incident, counts map[cause.ID]int, notDetailed int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	err = htmlreport.Write(bw, htmlreport.Data{Input: in, Stats: st, Incidents: incs,
		Counts: counts, NotDetailed: notDetailed})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
