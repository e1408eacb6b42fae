// Package realpeer runs real third-party programs (nginx, Node.js, a Java
// client on okhttp, curl) for `rstscope lab --peers real`, so that the lab
// checks rstscope against what real servers and clients do, not only against
// rstscope's own Go peers.
//
// A Set owns a temporary directory holding every configuration, script,
// compiled class and log of one run, and every process it started. Close
// stops them all (SIGTERM, then SIGKILL) and removes the directory; it is
// meant to be deferred, so that it runs on every exit path. The processes
// also die with the lab if it is killed outright (Pdeathsig), and a
// cancelled context (Ctrl-C) kills them through exec.CommandContext.
//
// Readiness is read from the kernel's socket table (/proc/self/net/tcp of
// the caller's network namespace) instead of by connecting: a probe
// connection would show up in the lab's capture, and a probe that came too
// early would even be reset, a "connection refused" the lab did not mean.
package realpeer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Set is one run's temporary directory and processes.
type Set struct {
	Dir string

	mu    sync.Mutex
	procs []*Proc
}

// NewSet makes a fresh temporary directory for one run. It first removes
// the directories of earlier runs whose process is gone: a run killed with
// SIGKILL takes its programs along (Pdeathsig) but cannot remove its
// directory itself.
func NewSet() (*Set, error) {
	sweep()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &Set{Dir: dir}, nil
}

const dirPrefix = "rstscope-realpeer-"

// sweep removes run directories whose owner process no longer exists. The
// lab's namespace is a network namespace only, so process ids are the
// host's and the check is sound (a reused pid merely keeps a directory).
func sweep() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// Path returns name inside the set's directory.
func (s *Set) Path(name string) string { return filepath.Join(s.Dir, name) }

// WriteFile writes content to name inside the set's directory and returns
// its path.
func (s *Set) WriteFile(name, content string) (string, error) {
	p := s.Path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	return p, os.WriteFile(p, []byte(content), 0o644)
}

// Close stops every process the set started and removes its directory.
// It is safe to call more than once.
func (s *Set) Close() {
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	for _, p := range procs {
		p.Stop()
	}
	if s.Dir != "" {
		os.RemoveAll(s.Dir)
	}
}

// Proc is one long-running program (a server) started by a Set.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	log  *logBuf
	done chan struct{}
	err  error // from Wait, valid once done is closed
}

// Start runs argv in the set's directory as a long-running process; its
// stdout and stderr go to a log kept in memory (Log). It dies with the
// caller (Pdeathsig) and when ctx ends.
func (s *Set) Start(ctx context.Context, name string, argv ...string) (*Proc, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = s.Dir
	// Its own process group, so that a program that forks (a shell, a
	// launcher) is stopped whole; Pdeathsig for when the lab is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	p := &Proc{Name: name, cmd: cmd, log: &logBuf{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Log is what the process printed so far (at most 64 KiB).
func (p *Proc) Log() string { return p.log.String() }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL and waits until the process is reaped, so that its
// sockets are closed when Kill returns (the article's "kill the Node
// process").
func (p *Proc) Kill() {
	if p == nil || p.Exited() {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Stop asks the process to end (SIGTERM) and kills it if it lingers.
func (p *Proc) Stop() {
	if p == nil || p.Exited() {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
		p.Kill()
	}
}

// WaitListen waits until a TCP socket listens on addr (IPv4 "ip:port") in
// this network namespace, reading the kernel's socket table so that no
// packet is sent. It fails early if p exits first.
func WaitListen(ctx context.Context, p *Proc, addr string, timeout time.Duration) error {
	want, err := procNetAddr(addr)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		ok, err := listening(want)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited before it listened on %s: %s", p.Name, addr, lastLines(p.Log(), 5))
		}
		if time.Now().After(deadline) {
			if p == nil {
				return fmt.Errorf("nothing listened on %s within %s", addr, timeout)
			}
			return fmt.Errorf("%s did not listen on %s within %s: %s", p.Name, addr, timeout, lastLines(p.Log(), 5))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// procNetAddr turns "127.0.0.5:80" into /proc/net/tcp's "0500007F:0050".
func procNetAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return "", fmt.Errorf("realpeer: %s: only IPv4 addresses", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return "", err
	}
	// The kernel prints the address as a native-endian (little on every
	// platform the lab runs on) 32-bit number.
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], n), nil
}

func listening(want string) (bool, error) {
	b, err := os.ReadFile("/proc/self/net/tcp")
	if err != nil {
		return false, err
	}
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) > 3 && f[1] == want && f[3] == "0A" { // TCP_LISTEN
			return true, nil
		}
	}
	return false, nil
}

// Output is what a short-lived program (a client, a compiler) did.
type Output struct {
	Stdout, Stderr string
	Exit           int // exit status; -1 if killed by a signal
}

// Run runs argv in the set's directory to its end, at most timeout, and
// returns its output. A non-zero exit is not an error: clients report
// failures that way and the caller reads them. err is for a program that
// could not run or ran out of time.
func (s *Set) Run(ctx context.Context, timeout time.Duration, argv ...string) (Output, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := Output{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return out, fmt.Errorf("%s did not finish within %s", filepath.Base(argv[0]), timeout)
	case ctx.Err() != nil:
		return out, ctx.Err()
	case errors.As(err, &ee):
		out.Exit = ee.ExitCode()
	case err != nil:
		return out, fmt.Errorf("run %s: %w", filepath.Base(argv[0]), err)
	}
	return out, nil
}

// logBuf keeps the first 64 KiB a process prints; safe for concurrent use
// (stdout and stderr are copied by two goroutines).
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 64<<10 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, " | ")
}
