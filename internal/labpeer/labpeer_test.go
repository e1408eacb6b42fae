package labpeer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rstscope/rstscope/internal/netns"
)

// peerEnv makes the test binary act as a peer process (see TestMain): its
// value is a JSON PeerConfig.
const peerEnv = "RSTSCOPE_LABPEER_TEST_PEER"

func TestMain(m *testing.M) {
	if js := os.Getenv(peerEnv); js != "" {
		var cfg PeerConfig
		if err := json.Unmarshal([]byte(js), &cfg); err != nil {
			fmt.Fprintln(os.Stderr, "peer config:", err)
			os.Exit(2)
		}
		if err := RunPeer(context.Background(), cfg, os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "peer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		// Every peer, pool and watcher must be gone once the tests' cleanups
		// have run.
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "leaked goroutines: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
			code = 1
		}
	}
	os.Exit(code)
}

// syncBuffer is a bytes.Buffer safe for a logger and a polling test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startBackend(t *testing.T, cfg BackendConfig) *Backend {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Log == nil {
		cfg.Log = &syncBuffer{}
	}
	b, err := StartBackend(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func newPool(t *testing.T, opt Options) *Pool {
	t.Helper()
	opt.ConnectTimeout, opt.ReadTimeout, opt.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
	p := NewPool(opt)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// mustOK fails unless r is a 200 with the backend's page.
func mustOK(t *testing.T, r *Result) {
	t.Helper()
	if r.Err != nil || r.Status != 200 || string(r.Body) != BackendBody {
		t.Fatalf("want 200 %q, got status %d body %q err %v", BackendBody, r.Status, r.Body, r.Err)
	}
}

// peerProcess is a peer running as a child process (the test binary).
type peerProcess struct {
	cmd    *exec.Cmd
	addr   string
	stdin  io.WriteCloser
	stderr *syncBuffer
	done   chan error
}

// startPeerProcess runs cfg in a child process and waits for "ready ADDR".
func startPeerProcess(t *testing.T, cfg PeerConfig) *peerProcess {
	t.Helper()
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), peerEnv+"="+string(js))
	pp := &peerProcess{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = pp.stderr
	if pp.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { pp.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-pp.done
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case s := <-line:
		addr, ok := strings.CutPrefix(strings.TrimSpace(s), "ready ")
		if !ok {
			t.Fatalf("peer said %q, stderr %q", s, pp.stderr.String())
		}
		pp.addr = addr
	case <-time.After(5 * time.Second):
		t.Fatalf("peer not ready; stderr %q", pp.stderr.String())
	}
	return pp
}

// staleSetup does the first GET of the stale keep-alive scenario and waits
// until the backend has closed the idle connection.
func staleSetup(t *testing.T, opt Options) (*Backend, *Pool, *Result) {
	t.Helper()
	b := startBackend(t, BackendConfig{IdleTimeout: 300 * time.Millisecond})
	p := newPool(t, opt)
	first := p.Get(testCtx(t), "http://"+b.Addr()+"/")
	mustOK(t, first)
	if first.Reused {
		t.Fatal("first request reused a connection")
	}
	return b, p, first
}

func TestStaleKeepAlive(t *testing.T) {
	t.Parallel()
	t.Run("okhttp", func(t *testing.T) {
		t.Parallel()
		b, p, first := staleSetup(t, Options{KeepAlive: 5 * time.Minute})
		waitFor(t, "backend idle close", func() bool { return b.Stats().IdleClosed == 1 })
		r := p.Get(testCtx(t), "http://"+b.Addr()+"/")
		if r.Err == nil {
			t.Fatalf("second GET succeeded (status %d); want a stale-connection error", r.Status)
		}
		if r.Kind != KindEndOfStream && r.Kind != KindReset {
			t.Fatalf("kind %v (%v); want end of stream or reset", r.Kind, r.Err)
		}
		if !r.Reused || r.LocalAddr != first.LocalAddr || r.Retried {
			t.Fatalf("reused %v local %s (first %s) retried %v", r.Reused, r.LocalAddr, first.LocalAddr, r.Retried)
		}
		if r.Kind == KindEndOfStream && !strings.Contains(r.ErrText(), "unexpected end of stream on Connection{"+b.Addr()) {
			t.Fatalf("error text %q", r.ErrText())
		}
		t.Logf("stale reuse: %s", r.ErrText())
	})
	t.Run("short-keepalive", func(t *testing.T) {
		t.Parallel()
		b, p, first := staleSetup(t, Options{KeepAlive: 100 * time.Millisecond})
		// The client's keep-alive runs out first: the pool closes the
		// connection itself (client FIN), the backend sees a client close.
		waitFor(t, "pool eviction", func() bool { return p.IdleConns() == 0 && b.Stats().Open == 0 })
		r := p.Get(testCtx(t), "http://"+b.Addr()+"/")
		mustOK(t, r)
		if r.Reused || r.LocalAddr == first.LocalAddr {
			t.Fatalf("reused %v local %s (first %s)", r.Reused, r.LocalAddr, first.LocalAddr)
		}
		if got := b.Stats().IdleClosed; got != 0 {
			t.Fatalf("backend closed %d idle connections; the client should have closed first", got)
		}
	})
	t.Run("retry", func(t *testing.T) {
		t.Parallel()
		b, p, first := staleSetup(t, Options{RetryOnConnectionFailure: true})
		waitFor(t, "backend idle close", func() bool { return b.Stats().IdleClosed == 1 })
		r := p.Get(testCtx(t), "http://"+b.Addr()+"/")
		mustOK(t, r)
		if !r.Retried || len(r.Attempts) != 2 || r.Reused {
			t.Fatalf("retried %v attempts %d reused %v", r.Retried, len(r.Attempts), r.Reused)
		}
		a := r.Attempts[0]
		if !a.Reused || a.LocalAddr != first.LocalAddr || a.Err == nil {
			t.Fatalf("first attempt %+v", a)
		}
		t.Logf("retried after: %v", a.Err)
	})
	t.Run("retry-not-for-post", func(t *testing.T) {
		t.Parallel()
		b, p, _ := staleSetup(t, Options{RetryOnConnectionFailure: true})
		waitFor(t, "backend idle close", func() bool { return b.Stats().IdleClosed == 1 })
		r := p.Do(testCtx(t), Request{Method: "POST", URL: "http://" + b.Addr() + "/", Body: []byte("x=1")})
		if r.Err == nil || r.Retried {
			t.Fatalf("POST on a stale connection: err %v retried %v", r.Err, r.Retried)
		}
	})
	t.Run("check-before-reuse", func(t *testing.T) {
		t.Parallel()
		b, p, first := staleSetup(t, Options{CheckBeforeReuse: true})
		waitFor(t, "backend idle close", func() bool { return b.Stats().IdleClosed == 1 })
		r := p.Get(testCtx(t), "http://"+b.Addr()+"/")
		mustOK(t, r)
		if r.Retried || r.Reused || len(r.Discarded) != 1 || r.Discarded[0] != first.LocalAddr {
			t.Fatalf("retried %v reused %v discarded %v (first %s)", r.Retried, r.Reused, r.Discarded, first.LocalAddr)
		}
	})
	t.Run("fresh-reuse", func(t *testing.T) {
		t.Parallel()
		b, p, first := staleSetup(t, Options{})
		r := p.Get(testCtx(t), "http://"+b.Addr()+"/")
		mustOK(t, r)
		if !r.Reused || r.LocalAddr != first.LocalAddr {
			t.Fatalf("a connection idle for less than the backend's timeout was not reused")
		}
	})
}

func TestBackendModes(t *testing.T) {
	t.Parallel()
	t.Run("unread-data-close", func(t *testing.T) {
		t.Parallel()
		log := &syncBuffer{}
		b := startBackend(t, BackendConfig{Mode: ModeUnreadDataClose, Log: log})
		// Generous deadlines: a loaded machine (-race, parallel packages)
		// must not turn a late RST into a timeout.
		p := NewPool(Options{ConnectTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
		t.Cleanup(func() { _ = p.Close() })
		mustOK(t, p.Get(testCtx(t), "http://"+b.Addr()+"/")) // no body: served
		// A body larger than loopback's socket buffers: the client is still
		// writing when the backend's close() turns into an RST.
		body := bytes.Repeat([]byte("x"), 16<<20)
		r := p.Do(testCtx(t), Request{Method: "POST", URL: "http://" + b.Addr() + "/upload", Body: body})
		t.Logf("status %d kind %v: %s", r.Status, r.Kind, r.ErrText())
		if r.Kind != KindReset && r.Kind != KindBrokenPipe {
			t.Fatalf("kind %v (%v %#v); want connection reset; backend log:\n%s", r.Kind, r.Err, r.Attempts, log.String())
		}
	})
	t.Run("abortive-close", func(t *testing.T) {
		t.Parallel()
		b := startBackend(t, BackendConfig{Mode: ModeAbortiveClose})
		p := newPool(t, Options{})
		first := p.Get(testCtx(t), "http://"+b.Addr()+"/")
		mustOK(t, first)
		waitFor(t, "backend close", func() bool { return b.Stats().Open == 0 })
		r := p.Get(testCtx(t), "http://"+b.Addr()+"/")
		t.Logf("status %d kind %v: %s", r.Status, r.Kind, r.ErrText())
		if r.Kind != KindReset || !r.Reused || r.LocalAddr != first.LocalAddr {
			t.Fatalf("kind %v reused %v; want connection reset on the reused connection", r.Kind, r.Reused)
		}
	})
	t.Run("data-after-close", func(t *testing.T) {
		t.Parallel()
		b := startBackend(t, BackendConfig{Mode: ModeDataAfterClose})
		p := newPool(t, Options{})
		first := p.Get(testCtx(t), "http://"+b.Addr()+"/")
		mustOK(t, first)
		waitFor(t, "backend close", func() bool { return b.Stats().Open == 0 })
		r := p.Get(testCtx(t), "http://"+b.Addr()+"/")
		t.Logf("status %d kind %v: %s", r.Status, r.Kind, r.ErrText())
		if (r.Kind != KindEndOfStream && r.Kind != KindReset) || !r.Reused || r.LocalAddr != first.LocalAddr {
			t.Fatalf("kind %v reused %v; want end of stream or reset on the reused connection", r.Kind, r.Reused)
		}
	})
	t.Run("reset-before-response", func(t *testing.T) {
		t.Parallel()
		b := startBackend(t, BackendConfig{Mode: ModeResetBeforeResponse})
		r := newPool(t, Options{}).Get(testCtx(t), "http://"+b.Addr()+"/")
		if r.Kind != KindReset || r.Reused {
			t.Fatalf("kind %v reused %v (%v)", r.Kind, r.Reused, r.Err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		b := startBackend(t, BackendConfig{})
		addr := b.Addr()
		_ = b.Close()
		r := newPool(t, Options{}).Get(testCtx(t), "http://"+addr+"/")
		if r.Kind != KindRefused || !strings.Contains(r.ErrText(), "Connection refused") {
			t.Fatalf("kind %v: %v", r.Kind, r.Err)
		}
	})
}

func TestProxyUpstreamKilled(t *testing.T) {
	t.Parallel()
	be := startPeerProcess(t, PeerConfig{Role: "backend", Listen: "127.0.0.1:0", Idle: time.Minute})
	log := &syncBuffer{}
	px, err := StartProxy(ProxyConfig{Listen: "127.0.0.1:0", Upstream: be.addr, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = px.Close() })
	p := newPool(t, Options{})
	url := "http://" + px.Addr() + "/test"
	mustOK(t, p.Get(testCtx(t), url))
	mustOK(t, p.Get(testCtx(t), url))
	if n := px.IdleUpstream(); n != 1 {
		t.Fatalf("%d idle upstream connections; want 1 (reused)", n)
	}
	if err := be.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-be.done
	be.done <- nil // for the cleanup
	// The kernel closed the dead backend's sockets (FIN); the proxy notices
	// on its idle upstream connection and drops it, as nginx does.
	waitFor(t, "proxy to drop the dead upstream connection", func() bool { return px.IdleUpstream() == 0 })
	r := p.Get(testCtx(t), url)
	if r.Err != nil || r.Status != 502 || !strings.Contains(string(r.Body), "<title>502 Bad Gateway</title>") {
		t.Fatalf("status %d body %q err %v", r.Status, r.Body, r.Err)
	}
	if !r.Reused {
		t.Fatalf("the client's keep-alive connection to the proxy was not reused")
	}
	if !strings.Contains(log.String(), "connect() failed (111: Connection refused) while connecting to upstream") {
		t.Fatalf("log lacks the connect() failed line:\n%s", log.String())
	}
	t.Logf("proxy log:\n%s", log.String())
}

func TestProxyUpstreamBreaks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode Mode
		log  string
	}{
		{ModeCloseBeforeResponse, "upstream prematurely closed connection while reading response header from upstream"},
		{ModeResetBeforeResponse, "recv() failed (104: Connection reset by peer) while reading response header from upstream"},
		{ModeResetMidResponse, "recv() failed (104: Connection reset by peer) while reading upstream"},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			t.Parallel()
			b := startBackend(t, BackendConfig{Mode: tc.mode})
			log := &syncBuffer{}
			px, err := StartProxy(ProxyConfig{Listen: "127.0.0.1:0", Upstream: b.Addr(), Log: log})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = px.Close() })
			r := newPool(t, Options{}).Get(testCtx(t), "http://"+px.Addr()+"/")
			if r.Status != 502 {
				t.Fatalf("status %d err %v", r.Status, r.Err)
			}
			if !strings.Contains(log.String(), tc.log) {
				t.Fatalf("log lacks %q:\n%s", tc.log, log.String())
			}
		})
	}
}

// TestProxyStaleUpstream: the upstream's idle timeout is shorter than
// the proxy's; the proxy notices the upstream's FIN on its cached connection
// and opens a new one, so the client never sees the race.
func TestProxyStaleUpstream(t *testing.T) {
	t.Parallel()
	b := startBackend(t, BackendConfig{IdleTimeout: 200 * time.Millisecond})
	px, err := StartProxy(ProxyConfig{Listen: "127.0.0.1:0", Upstream: b.Addr(), Log: &syncBuffer{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = px.Close() })
	p := newPool(t, Options{})
	url := "http://" + px.Addr() + "/"
	mustOK(t, p.Get(testCtx(t), url))
	waitFor(t, "backend idle close", func() bool { return b.Stats().IdleClosed == 1 })
	waitFor(t, "proxy to drop it", func() bool { return px.IdleUpstream() == 0 })
	mustOK(t, p.Get(testCtx(t), url))
	if got := b.Stats().Accepted; got != 2 {
		t.Fatalf("backend accepted %d connections; want 2", got)
	}
}

// TestPeerProcessStdinEOF: a peer exits when its stdin closes, so it never
// outlives its parent.
func TestPeerProcessStdinEOF(t *testing.T) {
	t.Parallel()
	pp := startPeerProcess(t, PeerConfig{Role: "proxy", Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1"})
	_ = pp.stdin.Close()
	select {
	case err := <-pp.done:
		pp.done <- err
		if err != nil {
			t.Fatalf("peer exited with %v; stderr %q", err, pp.stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("peer still running after stdin closed")
	}
}

// TestListenOverflow reproduces an accept-queue overflow reset inside a
// private network namespace (root only), where tcp_abort_on_overflow can be
// set without touching the host.
func TestListenOverflow(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	for _, abort := range []bool{true, false} {
		t.Run(fmt.Sprintf("abort_on_overflow=%v", abort), func(t *testing.T) {
			err := netns.Do(func() error {
				if _, err := SetAbortOnOverflow(abort); err != nil {
					return err
				}
				b, err := StartBackend(BackendConfig{Listen: "127.0.0.1:0", Mode: ModeListenOverflow, Backlog: 1})
				if err != nil {
					return err
				}
				defer b.Close()
				res, err := ProvokeListenOverflow(testCtx(t), b.Addr(), 1, 300*time.Millisecond)
				if err != nil {
					return err
				}
				var e *Error
				if !errors.As(res.Err, &e) {
					return fmt.Errorf("no error on the overflowing connection: %v", res.Err)
				}
				t.Logf("queued %v, overflow on %s: %s", res.Queued, res.LocalAddr, e.Text)
				want := KindReset
				if !abort {
					want = KindTimeout
				}
				if e.Kind != want {
					return fmt.Errorf("kind %v (%v), want %v", e.Kind, e, want)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestKeepAliveRace: a request reaches the server after its idle timeout
// fired but before its close(); the close finds unread data and sends an
// RST instead of a FIN, and the client reads "Connection reset" (not "end of
// stream"). IdleCloseDelay holds that gap open so the order is fixed.
func TestKeepAliveRace(t *testing.T) {
	t.Parallel()
	log := &syncBuffer{}
	b := startBackend(t, BackendConfig{IdleTimeout: 100 * time.Millisecond, IdleCloseDelay: 300 * time.Millisecond, Log: log})
	p := newPool(t, Options{})
	first := p.Get(testCtx(t), "http://"+b.Addr()+"/")
	mustOK(t, first)
	waitFor(t, "idle timeout", func() bool { return b.Stats().IdleExpired == 1 })
	r := p.Get(testCtx(t), "http://"+b.Addr()+"/")
	if r.Kind != KindReset || !r.Reused || r.LocalAddr != first.LocalAddr {
		t.Fatalf("kind %v reused %v: %v", r.Kind, r.Reused, r.Err)
	}
	waitFor(t, "backend close", func() bool { return b.Stats().IdleClosed == 1 })
	if !strings.Contains(log.String(), "bytes unread") {
		t.Fatalf("backend log:\n%s", log.String())
	}
}

// TestKeepAliveRaceTiming tries to hit the race by timing alone (no
// IdleCloseDelay): the second request is sent at the idle timeout, give or
// take a few hundred microseconds. It only reports what happened; set
// RSTSCOPE_LAB_RACE=1 to run it.
func TestKeepAliveRaceTiming(t *testing.T) {
	if os.Getenv("RSTSCOPE_LAB_RACE") == "" {
		t.Skip("set RSTSCOPE_LAB_RACE=1 to run the timing experiment")
	}
	const idle = 20 * time.Millisecond
	b := startBackend(t, BackendConfig{IdleTimeout: idle})
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := NewPool(Options{ReadTimeout: 2 * time.Second})
			defer p.Close()
			r := p.Get(context.Background(), "http://"+b.Addr()+"/")
			if r.Err != nil {
				return
			}
			time.Sleep(idle + time.Duration(i%40-20)*20*time.Microsecond)
			r = p.Get(context.Background(), "http://"+b.Addr()+"/")
			k := "ok"
			if r.Err != nil {
				k = r.Kind.String()
			}
			mu.Lock()
			counts[k]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("outcomes: %v", counts)
}
