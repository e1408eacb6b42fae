package labpeer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// PeerConfig describes a peer process (`rstscope lab-peer ROLE ...`).
type PeerConfig struct {
	Role            string        // "backend" or "proxy"
	Listen          string        // listen address
	Idle            time.Duration // keep-alive idle timeout towards clients; 0: DefaultIdleTimeout
	Mode            Mode          // backend: misbehaviour, "" is ModeNormal
	Backlog         int           // backend, listen-overflow: listen backlog (0: 1)
	IdleCloseDelay  time.Duration // backend: wait between idle timeout and close() (keep-alive race)
	AbortOnOverflow bool          // backend: set net.ipv4.tcp_abort_on_overflow=1 first (root, per netns)
	Upstream        string        // proxy: upstream address
	KeepAlive       int           // proxy: idle upstream connections kept (0: 16, <0: none)
	UpstreamIdle    time.Duration // proxy: upstream keepalive_timeout (0: 60 s)
}

// RunPeer runs the peer cfg describes until ctx ends or stdin reaches EOF
// (nil stdin is not watched). Once it listens it writes "ready ADDR\n" to
// stdout, which the orchestrator waits for; log lines go to stderr. Watching
// stdin lets a parent that holds the other end of a pipe make sure the peer
// never outlives it, even if the parent is SIGKILLed.
func RunPeer(ctx context.Context, cfg PeerConfig, stdin io.Reader, stdout, stderr io.Writer) error {
	var addr string
	var closer io.Closer
	switch cfg.Role {
	case "backend":
		if cfg.AbortOnOverflow {
			if _, err := SetAbortOnOverflow(true); err != nil {
				return fmt.Errorf("set tcp_abort_on_overflow: %w", err)
			}
		}
		b, err := StartBackend(BackendConfig{Listen: cfg.Listen, Mode: cfg.Mode, IdleTimeout: cfg.Idle,
			Backlog: cfg.Backlog, IdleCloseDelay: cfg.IdleCloseDelay, Log: stderr})
		if err != nil {
			return err
		}
		addr, closer = b.Addr(), b
	case "proxy":
		p, err := StartProxy(ProxyConfig{Listen: cfg.Listen, Upstream: cfg.Upstream, KeepAlive: cfg.KeepAlive,
			IdleTimeout: cfg.Idle, UpstreamIdleTimeout: cfg.UpstreamIdle, Log: stderr})
		if err != nil {
			return err
		}
		addr, closer = p.Addr(), p
	default:
		return fmt.Errorf("unknown peer role %q (want backend or proxy)", cfg.Role)
	}
	defer closer.Close()
	if _, err := fmt.Fprintf(stdout, "ready %s\n", addr); err != nil {
		return err
	}
	eof := make(chan struct{})
	if stdin != nil {
		go func() {
			// Returns at EOF or on a read error; either way the parent is gone.
			_, _ = io.Copy(io.Discard, stdin)
			close(eof)
		}()
	}
	select {
	case <-ctx.Done():
		if errors.Is(context.Cause(ctx), context.Canceled) {
			return nil
		}
		return context.Cause(ctx)
	case <-eof:
		return nil
	}
}
