package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/engine"
	"github.com/rstscope/rstscope/internal/ktrace"
	"github.com/rstscope/rstscope/internal/pcapio"
	"github.com/rstscope/rstscope/internal/source"
)

// Result is everything one scenario run produced.
type Result struct {
	Scenario   *Scenario
	Options    Options
	Setup      []string
	Steps      []Step
	Expect     Expect
	Env        string // capture and kernel-reason availability
	Incidents  []*diagnose.Incident
	Stats      engine.Stats
	Frames     []source.Frame
	KernelRSTs int            // kernel send events joined to captured RSTs
	Unmatched  []ktrace.Event // kernel resets with no captured packet
	Checks     []Check
	PeerLogs   map[string]string
	Err        error
	// Unavailable is set when the scenario could not run here at all
	// (missing programs, no root): exit status 2, not a failed check.
	Unavailable bool
}

// Check is one expectation and whether it held.
type Check struct {
	What string `json:"what"`
	OK   bool   `json:"ok"`
	Got  string `json:"got"`
}

// OK reports whether every check passed.
func (r *Result) OK() bool {
	if r.Err != nil {
		return false
	}
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return true
}

// Run runs one scenario. It must be called inside the lab's network
// namespace (see cmd/rstscope lab), with lo up.
func Run(ctx context.Context, sc *Scenario, o Options) *Result {
	o.defaults()
	res := &Result{Scenario: sc, Options: o, PeerLogs: map[string]string{}}
	if sc.Root && os.Geteuid() != 0 {
		res.Err = fmt.Errorf("scenario %s needs real root (it sets a sysctl in the lab's namespace)", sc.Name)
		res.Unavailable = true
		return res
	}
	runFn := sc.run
	switch o.Peers {
	case "", "go":
	case "real":
		runFn = realScenarios[sc.Name]
		if runFn == nil {
			res.Err = fmt.Errorf("scenario %s has no real-peer version (real peers: %s)", sc.Name, realNames())
			return res
		}
		if err := realPeersMissing(sc.Name); err != nil {
			res.Err = err
			res.Unavailable = true
			return res
		}
	default:
		res.Err = fmt.Errorf("unknown --peers %q (want go or real)", o.Peers)
		return res
	}
	sess := startSession(ctx)
	res.Env = sess.describe()
	r := &run{}
	exp, err := runFn(ctx, o, r)
	r.cleanup()
	sess.stop()
	for _, p := range r.peers {
		if s := p.log.String(); s != "" {
			res.PeerLogs[p.name] = s
		}
	}
	res.Setup, res.Steps, res.Expect, res.Err = r.setup, r.steps, exp, err
	if sess.capErr != nil {
		if res.Err == nil {
			res.Err = fmt.Errorf("no capture: %w", sess.capErr)
		}
		return res
	}
	res.KernelRSTs, res.Unmatched = sess.annotate()
	res.Frames = sess.frames
	pl := engine.NewPipeline(engine.Options{})
	for i := range sess.frames {
		pl.Feed(&sess.frames[i], uint64(i+1))
	}
	res.Incidents, res.Stats = pl.Close()
	if res.Err == nil {
		res.Checks = check(res, sess.traceErr == nil)
	}
	return res
}

// check compares the run with the scenario's expectations.
func check(res *Result, kernel bool) []Check {
	exp := res.Expect
	var out []Check
	last := Step{}
	if n := len(res.Steps); n > 0 {
		last = res.Steps[n-1]
	}
	switch {
	case exp.Status != 0:
		out = append(out, Check{What: fmt.Sprintf("the client gets HTTP %d", exp.Status), OK: last.Status == exp.Status,
			Got: fmt.Sprintf("status %d %s", last.Status, last.Error)})
	case exp.Retried:
		out = append(out, Check{What: "the request is retried on a new connection and succeeds", OK: last.Retried && last.Error == "" && last.Status == 200,
			Got: fmt.Sprintf("status %d, retried %v %s", last.Status, last.Retried, last.Error)})
	case exp.ClientSees != "":
		out = append(out, Check{What: "the client sees: " + exp.ClientSees, OK: last.Kind == exp.ClientSees, Got: orNone(last.Error)})
	case exp.Cause == "":
		out = append(out, Check{What: "the client's requests succeed", OK: last.Error == "" && last.Status == 200, Got: orNone(last.Error)})
	default:
		out = append(out, Check{What: "the client's request fails", OK: last.Error != "" || last.Status >= 400, Got: orNone(last.Error)})
	}
	var found *diagnose.Incident
	var resets []string
	for _, inc := range res.Incidents {
		if inc.Kind == diagnose.KindReset || inc.Kind == diagnose.KindHTTPError {
			resets = append(resets, string(inc.Cause))
		}
		if found == nil && inc.Cause == exp.Cause {
			found = inc
		}
	}
	if exp.Cause == "" {
		out = append(out, Check{What: "no reset happens", OK: len(resets) == 0, Got: fmt.Sprint(resets)})
		return out
	}
	got := fmt.Sprint(resets)
	out = append(out, Check{What: "rstscope explains it as " + string(exp.Cause), OK: found != nil, Got: got})
	if found == nil {
		return out
	}
	if found.Kind == diagnose.KindReset {
		out = append(out, Check{What: "reset by the " + exp.ResetBy, OK: found.ResetBy == exp.ResetBy, Got: found.ResetBy})
	}
	// The kernel's reason, where available, must fit the verdict (the
	// table cause.KernelReasonCauses). For a 502 the reset is on the
	// upstream connection: check that one.
	if kernel {
		reason := found.KernelReason
		verdict := found.Cause
		if found.Kind == diagnose.KindHTTPError {
			verdict = cause.Refused
			for _, inc := range res.Incidents {
				if inc.Kind == diagnose.KindReset && len(found.Related) > 0 && inc.Conn.UID == found.Related[0] {
					reason, verdict = inc.KernelReason, inc.Cause
				}
			}
		}
		out = append(out, Check{What: "the kernel's reason agrees (" + string(verdict) + ")", OK: reason != "" && cause.Agrees(reason, verdict), Got: orNone(reason)})
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// WritePcapng writes the run's capture, kernel reasons as packet comments.
func (r *Result) WritePcapng(w io.Writer) error {
	nw, err := pcapio.NewNgWriter(w)
	if err != nil {
		return err
	}
	ifaces := map[uint32]int{}
	for i := range r.Frames {
		f := &r.Frames[i]
		idx, ok := ifaces[f.LinkType]
		if !ok {
			if idx, err = nw.AddInterface(f.LinkType, 262144, "lo"); err != nil {
				return err
			}
			ifaces[f.LinkType] = idx
		}
		if err := nw.WritePacket(idx, f); err != nil {
			return err
		}
	}
	return nw.Flush()
}

// Elapsed is how long the captured part took.
func (r *Result) Elapsed() time.Duration {
	if r.Stats.Frames == 0 {
		return 0
	}
	return time.Duration(r.Stats.Last - r.Stats.First)
}
