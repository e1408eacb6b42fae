// Package lab reproduces each kind of TCP reset for real, on loopback
// addresses inside a network namespace of its own: real processes (a
// backend, an nginx-like proxy) and an okhttp-like client from
// internal/labpeer, its own AF_PACKET capture, the kernel's reset reasons
// from tracepoints, and the same engine as `rstscope analyze` to explain
// what happened. Each scenario states what it expects (the client's error,
// the cause, who reset), so the lab is also rstscope's ground truth: the
// tests run every scenario and compare.
package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/labpeer"
)

// Addresses mirror the seed article: server B 10.211.55.5, upstream
// 10.211.55.10; here on loopback inside the lab's own namespace.
const (
	ServerIP   = "127.0.0.5"
	UpstreamIP = "127.0.0.10"
	ClientIP   = "127.0.0.2"
)

// Options tune a run. Zero values take the article's timings.
type Options struct {
	ServerIdle time.Duration // stale-keepalive: server keepalive_timeout (5 s)
	Wait       time.Duration // stale-keepalive: idle before the second request (6 s)
	PoolIdle   time.Duration // client pool keep-alive (okhttp default 5 min)
	Fix        string        // stale-keepalive: "", "pool-idle", "retry", "check"
	// Peers chooses the programs: "" or "go" for rstscope's own peers
	// (internal/labpeer), "real" for nginx, Node.js, okhttp and curl
	// (see real.go), where the scenario has a real-peer version.
	Peers string
}

func (o *Options) defaults() {
	if o.ServerIdle == 0 {
		o.ServerIdle = 5 * time.Second
	}
	if o.Wait == 0 {
		o.Wait = o.ServerIdle + o.ServerIdle/5
		if o.Wait < o.ServerIdle+200*time.Millisecond {
			o.Wait = o.ServerIdle + 200*time.Millisecond
		}
	}
	if o.PoolIdle == 0 {
		o.PoolIdle = labpeer.DefaultKeepAlive
	}
}

// Expect is what a scenario should produce.
type Expect struct {
	Cause      cause.ID // the incident's cause; "" when no reset must happen
	ResetBy    string   // "client" or "server"
	ClientSees string   // the client's failure kind (labpeer.ErrKind string), "" for success
	Status     int      // an HTTP status the client must get (502), 0 if none
	Retried    bool     // the failed request was retried and succeeded
}

// Step is one thing the client did and what it got.
type Step struct {
	What    string `json:"what"`
	Status  int    `json:"status,omitempty"`
	Error   string `json:"error,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Reused  bool   `json:"reused,omitempty"`
	Retried bool   `json:"retried,omitempty"`
	Local   string `json:"local,omitempty"`
}

// Scenario is one lab experiment.
type Scenario struct {
	Name    string
	Title   string
	Story   string // what it does, in a sentence or two
	Cause   cause.ID
	Root    bool // needs real root (it writes a sysctl)
	run     func(ctx context.Context, o Options, r *run) (Expect, error)
	article bool
}

// run collects what the client saw.
type run struct {
	steps []Step
	setup []string
	peers []*peer
}

func (r *run) note(format string, args ...any) {
	r.setup = append(r.setup, fmt.Sprintf(format, args...))
}

func (r *run) record(what string, res *labpeer.Result) Step {
	st := Step{What: what, Status: res.Status, Reused: res.Reused, Retried: res.Retried, Local: res.LocalAddr}
	if res.Err != nil {
		st.Error, st.Kind = res.ErrText(), res.Kind.String()
	}
	r.steps = append(r.steps, st)
	return st
}

func (r *run) start(ctx context.Context, name string, args ...string) (*peer, error) {
	p, err := startPeer(ctx, name, args...)
	if err == nil {
		r.peers = append(r.peers, p)
	}
	return p, err
}

func (r *run) cleanup() {
	for _, p := range r.peers {
		p.stop()
	}
}

// Scenarios lists every scenario: the article's three first.
var Scenarios = []*Scenario{
	{Name: "refused", Title: "connect to a port nobody listens on", article: true, Cause: cause.Refused,
		Story: "The client connects to " + ServerIP + ":80 where nothing listens (the article's `nc 10.211.55.5 80`): SYN, then RST.",
		run:   runRefused},
	{Name: "upstream-down", Title: "nginx-like proxy whose upstream was killed: 502", article: true, Cause: cause.UpstreamFailure,
		Story: "A proxy on " + ServerIP + ":80 with an upstream keep-alive pool (keepalive 16, HTTP/1.1) forwards to a backend process on " + UpstreamIP + ":8080. A request works; the backend is killed with SIGKILL; the next request gets 502.",
		run:   runUpstreamDown},
	{Name: "stale-keepalive", Title: "pooled keep-alive connection the server closed: unexpected end of stream", article: true, Cause: cause.StaleKeepalive,
		Story: "An okhttp-like client (pool keep-alive 5 min, retryOnConnectionFailure false) sends GET, waits longer than the server's keepalive_timeout, and sends GET on the same pooled connection.",
		run:   runStaleKeepalive},
	{Name: "keepalive-race", Title: "request arriving as the server closes its idle connection", Cause: cause.KeepaliveRace,
		Story: "The server's idle timeout fires and it closes the connection a moment later; the client's request arrives in between, so the server's close() finds it unread and resets.",
		run:   runKeepaliveRace},
	{Name: "unread-data-close", Title: "server answers early and closes with the request body unread", Cause: cause.UnreadDataClose,
		Story: "The client uploads a large body; the server reads only the headers, answers 413 and closes: the unread body turns its FIN into an RST.",
		run:   runBackendMode(labpeer.ModeUnreadDataClose)},
	{Name: "abortive-close", Title: "server closes with SO_LINGER 0", Cause: cause.AbortiveClose,
		Story: "The server answers and closes with SO_LINGER {1,0}: an RST instead of FIN; the client's next request on the connection fails.",
		run:   runBackendMode(labpeer.ModeAbortiveClose)},
	{Name: "data-after-close", Title: "client writes to a connection the server had just closed", Cause: cause.DataAfterClose,
		Story: "The server answers without saying Connection: close and closes at once; the client reuses the connection right away and its request draws an RST.",
		run:   runBackendMode(labpeer.ModeDataAfterClose)},
	{Name: "listen-overflow", Title: "accept queue full with tcp_abort_on_overflow=1", Cause: cause.ListenOverflow, Root: true,
		Story: "A server with a listen backlog of 1 never accepts; with net.ipv4.tcp_abort_on_overflow=1 (set inside the lab's namespace only) a handshake that completes on a full queue is reset.",
		run:   runListenOverflow},
}

// Lookup returns the scenario named name, or nil.
func Lookup(name string) *Scenario {
	for _, s := range Scenarios {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func url(addr, path string) string { return "http://" + addr + path }

func runRefused(ctx context.Context, o Options, r *run) (Expect, error) {
	addr := ServerIP + ":80"
	r.note("nothing listens on %s", addr)
	d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ClientIP)}}
	c, err := d.DialContext(ctx, "tcp", addr)
	st := Step{What: "connect " + addr}
	if err == nil {
		c.Close()
	} else {
		st.Error = err.Error()
		if errors.Is(err, syscall.ECONNREFUSED) {
			st.Kind = labpeer.KindRefused.String()
			st.Error = "connect: connection refused (nc: connect to " + addr + " failed: Connection refused)"
		}
	}
	r.steps = append(r.steps, st)
	return Expect{Cause: cause.Refused, ResetBy: "server", ClientSees: labpeer.KindRefused.String()}, nil
}

func runUpstreamDown(ctx context.Context, o Options, r *run) (Expect, error) {
	up := UpstreamIP + ":8080"
	front := ServerIP + ":80"
	backend, err := r.start(ctx, "backend", "backend", "--listen", up, "--idle", "60s")
	if err != nil {
		return Expect{}, err
	}
	if _, err := r.start(ctx, "proxy", "proxy", "--listen", front, "--upstream", up, "--keepalive", "16", "--idle", "65s"); err != nil {
		return Expect{}, err
	}
	r.note("backend process on %s (pid %d); proxy on %s with upstream keepalive 16, HTTP/1.1", up, backend.cmd.Process.Pid, front)
	pool := labpeer.NewPool(labpeer.Options{LocalIP: ClientIP})
	defer pool.Close()
	r.record("GET "+url(front, "/test"), pool.Get(ctx, url(front, "/test")))
	backend.kill()
	r.note("backend killed with SIGKILL")
	// kill waited for the process to be reaped, so its sockets are closed;
	// give the proxy a moment to see the FIN on its idle upstream connection.
	time.Sleep(100 * time.Millisecond)
	r.record("GET "+url(front, "/test"), pool.Get(ctx, url(front, "/test")))
	return Expect{Cause: cause.UpstreamFailure, ResetBy: "server", Status: 502}, nil
}

// staleFixExpect is what stale-keepalive must produce with each --fix,
// whichever programs play the parts: the reset and the client's error
// without a fix, no reset with a shorter pool idle time or a check before
// reuse, and the reset followed by a successful retry with retries on.
func staleFixExpect(fix string) (Expect, error) {
	exp := Expect{Cause: cause.StaleKeepalive, ResetBy: "server", ClientSees: labpeer.KindEndOfStream.String()}
	switch fix {
	case "":
	case "pool-idle", "check":
		exp = Expect{}
	case "retry":
		exp.ClientSees, exp.Retried = "", true
	default:
		return Expect{}, fmt.Errorf("unknown --fix %q (want pool-idle, retry or check)", fix)
	}
	return exp, nil
}

// staleFixPoolIdle is the article's fix 1: the pool's keep-alive below the
// server's.
func staleFixPoolIdle(o Options) time.Duration { return o.ServerIdle * 4 / 5 }

func runStaleKeepalive(ctx context.Context, o Options, r *run) (Expect, error) {
	addr := ServerIP + ":80"
	if _, err := r.start(ctx, "server", "backend", "--listen", addr, "--idle", o.ServerIdle.String()); err != nil {
		return Expect{}, err
	}
	exp, err := staleFixExpect(o.Fix)
	if err != nil {
		return Expect{}, err
	}
	opt := labpeer.Options{KeepAlive: o.PoolIdle, LocalIP: ClientIP}
	switch o.Fix {
	case "pool-idle":
		opt.KeepAlive = staleFixPoolIdle(o)
	case "retry":
		opt.RetryOnConnectionFailure = true
	case "check":
		opt.CheckBeforeReuse = true
	}
	r.note("server on %s with keepalive_timeout %s; client pool keep-alive %s, retryOnConnectionFailure %v, check before reuse %v",
		addr, o.ServerIdle, opt.KeepAlive, opt.RetryOnConnectionFailure, opt.CheckBeforeReuse)
	pool := labpeer.NewPool(opt)
	defer pool.Close()
	r.record("GET "+url(addr, "/test"), pool.Get(ctx, url(addr, "/test")))
	r.note("client sleeps %s", o.Wait)
	select {
	case <-time.After(o.Wait):
	case <-ctx.Done():
		return Expect{}, ctx.Err()
	}
	r.record("GET "+url(addr, "/test")+" after "+o.Wait.String(), pool.Get(ctx, url(addr, "/test")))
	return exp, nil
}

func runKeepaliveRace(ctx context.Context, o Options, r *run) (Expect, error) {
	addr := ServerIP + ":80"
	idle := 600 * time.Millisecond
	delay := 400 * time.Millisecond
	if _, err := r.start(ctx, "server", "backend", "--listen", addr, "--idle", idle.String(), "--idle-close-delay", delay.String()); err != nil {
		return Expect{}, err
	}
	r.note("server on %s: idle timeout %s, then close() %s later (a busy server)", addr, idle, delay)
	pool := labpeer.NewPool(labpeer.Options{LocalIP: ClientIP})
	defer pool.Close()
	r.record("GET "+url(addr, "/"), pool.Get(ctx, url(addr, "/")))
	wait := idle + delay/2
	time.Sleep(wait)
	r.record("GET "+url(addr, "/")+" after "+wait.String(), pool.Get(ctx, url(addr, "/")))
	return Expect{Cause: cause.KeepaliveRace, ResetBy: "server", ClientSees: labpeer.KindReset.String()}, nil
}

func runBackendMode(mode labpeer.Mode) func(ctx context.Context, o Options, r *run) (Expect, error) {
	return func(ctx context.Context, o Options, r *run) (Expect, error) {
		addr := ServerIP + ":80"
		if _, err := r.start(ctx, "server", "backend", "--listen", addr, "--mode", string(mode), "--idle", "30s"); err != nil {
			return Expect{}, err
		}
		r.note("server on %s in mode %s", addr, mode)
		pool := labpeer.NewPool(labpeer.Options{LocalIP: ClientIP})
		defer pool.Close()
		exp := Expect{ResetBy: "server", ClientSees: labpeer.KindReset.String()}
		switch mode {
		case labpeer.ModeUnreadDataClose:
			exp.Cause = cause.UnreadDataClose
			exp.ClientSees = "" // reset or 413, depending on timing
			body := make([]byte, 4<<20)
			r.record("POST "+url(addr, "/upload")+" with a 4 MiB body", pool.Do(ctx, labpeer.Request{Method: "POST", URL: url(addr, "/upload"), Body: body}))
		case labpeer.ModeAbortiveClose:
			exp.Cause = cause.AbortiveClose
			r.record("GET "+url(addr, "/"), pool.Get(ctx, url(addr, "/")))
			time.Sleep(50 * time.Millisecond)
			r.record("GET "+url(addr, "/")+" on the same connection", pool.Get(ctx, url(addr, "/")))
		case labpeer.ModeDataAfterClose:
			exp.Cause = cause.DataAfterClose
			exp.ClientSees = "" // reset or end of stream, depending on timing
			r.record("GET "+url(addr, "/"), pool.Get(ctx, url(addr, "/")))
			time.Sleep(20 * time.Millisecond)
			r.record("GET "+url(addr, "/")+" on the same connection", pool.Get(ctx, url(addr, "/")))
		}
		return exp, nil
	}
}

func runListenOverflow(ctx context.Context, o Options, r *run) (Expect, error) {
	addr := ServerIP + ":80"
	if _, err := r.start(ctx, "server", "backend", "--listen", addr, "--mode", "listen-overflow", "--backlog", "1", "--abort-on-overflow"); err != nil {
		return Expect{}, err
	}
	r.note("server on %s: backlog 1, never accepts; net.ipv4.tcp_abort_on_overflow=1 in this namespace", addr)
	res, err := labpeer.ProvokeListenOverflow(ctx, addr, 1, 2*time.Second)
	if err != nil {
		return Expect{}, err
	}
	st := Step{What: fmt.Sprintf("fill the accept queue (%d connections), then complete one more handshake", len(res.Queued)), Local: res.LocalAddr}
	if res.Err != nil {
		st.Error = res.Err.Error()
		var le *labpeer.Error
		if errors.As(res.Err, &le) {
			st.Kind = le.Kind.String()
		}
	}
	r.steps = append(r.steps, st)
	return Expect{Cause: cause.ListenOverflow, ResetBy: "server", ClientSees: labpeer.KindReset.String()}, nil
}
