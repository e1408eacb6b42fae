package watch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rstscope/rstscope/internal/bpfilter"
	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/engine"
	"github.com/rstscope/rstscope/internal/kjoin"
	"github.com/rstscope/rstscope/internal/ktrace"
	"github.com/rstscope/rstscope/internal/livecap"
	"github.com/rstscope/rstscope/internal/metrics"
	rnetns "github.com/rstscope/rstscope/internal/netns"
	"github.com/rstscope/rstscope/internal/netns/netnstest"
	"github.com/rstscope/rstscope/internal/pcapio"
)

// netns is a thread in a network namespace of the test's own.
type netns = rnetns.Thread

func newNetns(t testing.TB) *netns { return netnstest.Thread(t) }

// openIn makes Config.Open open the capture inside ns.
func openIn(ns *netns) func(livecap.Config) (*livecap.Handle, error) {
	return func(c livecap.Config) (h *livecap.Handle, err error) {
		ns.Do(func() { h, err = livecap.Open(c) })
		return
	}
}

// running is a Run in a goroutine, with what it reported.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	light  bool // keep only cause, kind and delay of incidents (soak)
	stats  Stats
	err    error
	info   Info

	mu        sync.Mutex
	incidents []*Incident
	kernel    []KernelReset
	statsLog  []Stats
}

// start runs watch with cfg until the returned running is stopped; it skips
// the test when capture is not permitted.
func start(t *testing.T, cfg Config, light bool) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{}), light: light}
	ready := make(chan struct{})
	cfg.Ready = func(i Info) { r.info = i; close(ready) }
	cfg.OnIncident = func(inc *Incident) {
		if r.light { // the engine's snapshots are not kept: memory is measured
			inc = &Incident{Incident: &diagnose.Incident{Kind: inc.Kind, Cause: inc.Cause, Related: inc.Related}, N: inc.N, Delay: inc.Delay}
		}
		r.mu.Lock()
		r.incidents = append(r.incidents, inc)
		r.mu.Unlock()
	}
	cfg.OnKernelReset = func(k KernelReset) { r.mu.Lock(); r.kernel = append(r.kernel, k); r.mu.Unlock() }
	cfg.OnStats = func(s Stats) { r.mu.Lock(); r.statsLog = append(r.statsLog, s); r.mu.Unlock() }
	go func() {
		defer close(r.done)
		r.stats, r.err = Run(ctx, cfg)
	}()
	select {
	case <-ready:
	case <-r.done:
		if errors.Is(r.err, livecap.ErrNotPermitted) {
			t.Skipf("needs CAP_NET_RAW: %v", r.err)
		}
		t.Fatalf("watch ended before it was ready: %v", r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("watch not ready after 10s")
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop ends the run and waits (bounded) for it.
func (r *running) stop(t *testing.T) {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(15 * time.Second):
		t.Fatal("watch did not stop within 15s of cancel")
	}
}

// waitFor polls cond until it holds or the deadline passes.
func (r *running) waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scenario is one reset made in the namespace and what watch must say.
type scenario struct {
	name   string
	client string // "" when unknown (refused: matched on server only)
	server string
	cause  cause.ID
	kernel string // expected kernel reason ("" = any non-empty)
}

func (s scenario) matches(inc *Incident) bool {
	return inc.Kind == diagnose.KindReset && inc.Conn != nil && inc.Conn.Server == s.server &&
		(s.client == "" || inc.Conn.Client == s.client)
}

func listenIn(t *testing.T, ns *netns) net.Listener {
	var ln net.Listener
	var err error
	ns.Do(func() { ln, err = net.Listen("tcp", "127.0.0.1:0") })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func portOf(a net.Addr) uint16 { return uint16(a.(*net.TCPAddr).Port) }

// TestScenarios makes four kinds of reset on the namespace's loopback with
// plain sockets (the lab's scenarios: refused connect, SO_LINGER 0, close
// with unread data, a stale keep-alive against a Go server with a 300 ms
// IdleTimeout), watches them live, and checks that: each incident has the
// expected cause (and kernel reason when the tracepoints can be read); the
// pcapng saved for it gives the same cause when analysed again, with the
// kernel's comment; a reset outside the capture filter is reported from the
// kernel's events; the metrics endpoint shows it all; and stopping leaves no
// tracefs instance behind.
func TestScenarios(t *testing.T) {
	ns := newNetns(t)
	kernelErr := ktrace.Available()
	if kernelErr != nil {
		t.Logf("kernel tracepoints unavailable, checking packets only: %v", kernelErr)
	}
	lnU, lnL, lnH := listenIn(t, ns), listenIn(t, ns), listenIn(t, ns)
	const closedPort, outsidePort = 7, 8
	reg := metrics.NewRegistry()
	dir := t.TempDir()
	r := start(t, Config{
		Filter:  bpfilter.Options{Ports: []uint16{closedPort, portOf(lnU.Addr()), portOf(lnL.Addr()), portOf(lnH.Addr())}},
		Kernel:  true,
		SaveDir: dir,
		Metrics: NewMetrics(reg),
		Open:    openIn(ns),
	}, false)
	if r.info.Kernel != (kernelErr == nil) {
		t.Fatalf("Info.Kernel %v but ktrace.Available() = %v (%v)", r.info.Kernel, kernelErr, r.info.KernelErr)
	}

	// The HTTP server whose idle timeout makes the stale keep-alive.
	srv := &http.Server{IdleTimeout: 300 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})}
	go srv.Serve(lnH)
	defer srv.Close()

	var scs []scenario
	var cleanup []io.Closer
	defer func() {
		for _, c := range cleanup {
			c.Close()
		}
	}()
	ns.Do(func() {
		dial := func(ln net.Listener) *net.TCPConn {
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			cleanup = append(cleanup, c)
			return c.(*net.TCPConn)
		}
		accept := func(ln net.Listener) *net.TCPConn {
			ln.(*net.TCPListener).SetDeadline(time.Now().Add(2 * time.Second))
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			cleanup = append(cleanup, c)
			return c.(*net.TCPConn)
		}
		// 1. Refused: nothing listens on port 7. And one outside the filter.
		for _, p := range []int{closedPort, outsidePort} {
			_, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(p), 2*time.Second)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("dial closed port %d: %v", p, err)
			}
		}
		scs = append(scs, scenario{"refused", "", "127.0.0.1:" + strconv.Itoa(closedPort), cause.Refused, "NO_SOCKET"})

		// 2. Close with unread data: the server reads 1 byte of 1000.
		c := dial(lnU)
		s := accept(lnU)
		c.Write(make([]byte, 1000))
		s.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(s, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		s.Close()
		scs = append(scs, scenario{"unread", c.LocalAddr().String(), c.RemoteAddr().String(), cause.UnreadDataClose, "TCP_ABORT_ON_CLOSE"})

		// 3. SO_LINGER 0: the client aborts after the server read all.
		c = dial(lnL)
		s = accept(lnL)
		c.Write([]byte("hello"))
		s.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(s, make([]byte, 5)); err != nil {
			t.Fatal(err)
		}
		c.SetLinger(0)
		c.Close()
		scs = append(scs, scenario{"linger0", c.LocalAddr().String(), c.RemoteAddr().String(), cause.AbortiveClose, "TCP_STATE"})

		// 4. Stale keep-alive: a request, the server's idle close (FIN,
		// which the client's kernel acknowledges), then a second request
		// on the same connection.
		c = dial(lnH)
		req := "GET / HTTP/1.1\r\nHost: watch.test\r\n\r\n"
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, req)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if _, err := br.ReadByte(); err != io.EOF { // the server's FIN
			t.Fatalf("waiting for the server's idle close: %v", err)
		}
		io.WriteString(c, req)
		scs = append(scs, scenario{"stale", c.LocalAddr().String(), c.RemoteAddr().String(), cause.StaleKeepalive, ""})
	})
	if t.Failed() {
		return
	}

	found := make([]*Incident, len(scs))
	r.waitFor(t, 15*time.Second, "the four incidents", func() bool {
		n := 0
		for i, sc := range scs {
			for _, inc := range r.incidents {
				if found[i] == nil && sc.matches(inc) {
					found[i] = inc
				}
			}
			if found[i] != nil {
				n++
			}
		}
		return n == len(scs)
	})
	outside := "127.0.0.1:" + strconv.Itoa(outsidePort)
	if kernelErr == nil {
		r.waitFor(t, 5*time.Second, "the kernel's report of the reset outside the filter", func() bool {
			for _, k := range r.kernel {
				if k.Local.String() == outside {
					return true
				}
			}
			return false
		})
	}
	for i, sc := range scs {
		inc := found[i]
		t.Logf("%-8s -> %-18s kernel=%-20s delay=%v capture=%s", sc.name, inc.Cause, inc.KernelReason, inc.Delay.Round(time.Millisecond), filepath.Base(inc.Capture))
		if inc.Cause != sc.cause {
			t.Errorf("%s: cause %s, want %s (%s)", sc.name, inc.Cause, sc.cause, inc.Summary)
		}
		if kernelErr == nil && (inc.KernelReason == "" || sc.kernel != "" && inc.KernelReason != sc.kernel) {
			t.Errorf("%s: kernel reason %q, want %q", sc.name, inc.KernelReason, sc.kernel)
		}
		checkSaved(t, sc, inc, kernelErr == nil)
	}
	r.mu.Lock()
	for _, k := range r.kernel {
		if k.Local.String() == outside {
			t.Logf("kernel-only: %+v", k)
			if !k.Sent || !k.Received || k.Reason != "NO_SOCKET" || k.InFilter {
				t.Errorf("reset outside the filter reported as %+v", k)
			}
		}
		for _, sc := range scs {
			if k.Local.String() == sc.server || k.Remote.String() == sc.server {
				t.Errorf("a captured reset was also reported as kernel-only: %+v", k)
			}
		}
	}
	r.mu.Unlock()

	checkMetrics(t, reg, scs, found, kernelErr == nil)

	r.stop(t)
	if r.err != nil {
		t.Fatalf("Run: %v", r.err)
	}
	t.Logf("final stats: %+v", r.stats)
	if kernelErr == nil {
		if r.stats.KernelMatched < 4 {
			t.Errorf("%d RSTs joined to kernel events, want at least 4", r.stats.KernelMatched)
		}
		left, _ := filepath.Glob(fmt.Sprintf("/sys/kernel/tracing/instances/rstscope-%d-*", os.Getpid()))
		if len(left) > 0 {
			t.Errorf("tracefs instances left after stop: %v", left)
		}
	}
}

// checkSaved analyses the pcapng saved for inc as `rstscope analyze` does and
// expects the same cause (and the kernel's comment).
func checkSaved(t *testing.T, sc scenario, inc *Incident, kernel bool) {
	t.Helper()
	if inc.Capture == "" {
		t.Errorf("%s: not saved: %v", sc.name, inc.SaveErr)
		return
	}
	rd, err := pcapio.Open(inc.Capture, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	incs, st, err := engine.Run(rd, engine.Options{})
	if err != nil {
		t.Fatalf("%s: reading %s: %v", sc.name, inc.Capture, err)
	}
	var again *diagnose.Incident
	for _, x := range incs {
		if x.Conn != nil && x.Conn.Client == inc.Conn.Client && x.Conn.Server == inc.Conn.Server {
			again = x
		}
	}
	if again == nil {
		t.Errorf("%s: the saved capture %s (%d packets) has no incident on %s -> %s", sc.name, inc.Capture, st.Frames, inc.Conn.Client, inc.Conn.Server)
		return
	}
	if again.Cause != inc.Cause || again.KernelReason != inc.KernelReason {
		t.Errorf("%s: saved capture says %s/%q, watch said %s/%q", sc.name, again.Cause, again.KernelReason, inc.Cause, inc.KernelReason)
	}
	if kernel {
		ok := false
		for _, n := range again.Conn.Notes {
			ok = ok || strings.HasPrefix(n.Text, kjoin.CommentPrefix)
		}
		if !ok {
			t.Errorf("%s: no kernel comment in the saved capture (notes %v)", sc.name, again.Conn.Notes)
		}
	}
}

// checkMetrics scrapes the metrics over HTTP and checks the series the
// scenarios must have produced.
func checkMetrics(t *testing.T, reg *metrics.Registry, scs []scenario, found []*Incident, kernel bool) {
	t.Helper()
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	want := []string{}
	for i, sc := range scs {
		want = append(want, fmt.Sprintf(`rstscope_resets_total{cause=%q,reset_by=%q,server=%q} 1`, sc.cause, found[i].ResetBy, sc.server))
	}
	want = append(want, `rstscope_incidents_total{kind="reset",cause="refused"} 1`, `rstscope_captures_total{result="saved"} 4`)
	if kernel {
		want = append(want, `rstscope_kernel_tracing 1`,
			`rstscope_kernel_resets_total{direction="sent",reason="NO_SOCKET",captured="true"} 1`,
			`rstscope_kernel_resets_total{direction="sent",reason="NO_SOCKET",captured="false"}`,
			`rstscope_kernel_resets_total{direction="sent",reason="TCP_ABORT_ON_CLOSE",captured="true"} 1`)
	}
	var body string
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		// Counters kept by the capture are copied once a second.
		if !strings.Contains(body, "\nrstscope_packets_total 0\n") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("metrics lack %s", w)
		}
	}
	for _, name := range []string{"rstscope_packets_total", "rstscope_capture_drops_total", "rstscope_connections_tracked", "rstscope_incident_delay_seconds_count"} {
		v, ok := sample(body, name)
		if !ok {
			t.Errorf("metrics lack %s", name)
		}
		if name == "rstscope_packets_total" && v == 0 {
			t.Errorf("%s is 0", name)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
}

// sample returns the value of an unlabelled series in a scrape.
func sample(body, name string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}
