package lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// peer is a lab-peer process (backend or proxy): a real process, so that
// "kill the backend" is a real SIGKILL.
type peer struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
	log   *strings.Builder
	done  chan struct{}
}

// startPeer runs `rstscope lab-peer ROLE ARGS...` (this very binary) and
// waits for its "ready ADDR" line. The peer dies with us (Pdeathsig) and
// exits when its stdin closes.
func startPeer(ctx context.Context, name string, args ...string) (*peer, error) {
	cmd := exec.CommandContext(ctx, "/proc/self/exe", append([]string{"lab-peer"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &peer{name: name, cmd: cmd, stdin: stdin, log: &strings.Builder{}, done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{b: p.log}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
				ready <- a
			}
		}
	}()
	go func() { cmd.Wait(); close(p.done) }()
	select {
	case p.addr = <-ready:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before it was ready: %s", name, strings.TrimSpace(p.log.String()))
	case <-time.After(10 * time.Second):
		p.kill()
		return nil, fmt.Errorf("%s did not become ready in 10 s", name)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *peer) kill() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop closes stdin (the peer exits by itself) and kills it if it lingers.
func (p *peer) stop() {
	if p == nil {
		return
	}
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
		p.kill()
	}
}

type lockedWriter struct {
	b *strings.Builder
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	if w.b.Len() > 64<<10 {
		return len(b), nil
	}
	return w.b.Write(b)
}
