package main

import (
	"context"
	"flag"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/rstscope/rstscope/internal/cli"
	"github.com/rstscope/rstscope/internal/labpeer"
)

// lab-peer runs one of the lab's real peers (internal/labpeer) in this
// process. The lab orchestrator starts it inside its network namespace,
// waits for the "ready ADDR" line and kills it (or closes its stdin) when
// the scenario is over. It is hidden: people run `rstscope lab`.
func init() {
	cli.Register(&cli.Command{
		Name:    "lab-peer",
		Summary: "run a lab peer (backend or proxy); used by 'rstscope lab'",
		Usage:   "rstscope lab-peer backend|proxy --listen ADDR [flags]",
		Help: `Runs one of the lab's peers until SIGTERM, SIGINT or EOF on standard input.
Prints "ready ADDR" on standard output once listening; nginx-like log lines go
to standard error.

  backend  HTTP/1.1 server answering "hello from backend" with keep-alive;
           --mode picks a misbehaviour: normal, unread-data-close,
           abortive-close, data-after-close, close-before-response,
           reset-before-response, reset-mid-response, listen-overflow
  proxy    nginx-like reverse proxy to --upstream with a pool of --keepalive
           idle upstream connections; 502 when the upstream is down

Examples:
  rstscope lab-peer backend --listen 127.0.0.10:8080 --idle 5s
  rstscope lab-peer proxy --listen 127.0.0.5:80 --upstream 127.0.0.10:8080 --keepalive 16`,
		Hidden: true,
		Flags: func(fs *flag.FlagSet) func(env *cli.Env, args []string) int {
			var cfg labpeer.PeerConfig
			var mode string
			fs.StringVar(&cfg.Listen, "listen", "", "address to listen on, e.g. 127.0.0.10:8080 (required)")
			fs.DurationVar(&cfg.Idle, "idle", labpeer.DefaultIdleTimeout, "keep-alive idle timeout towards clients (nginx keepalive_timeout)")
			fs.StringVar(&mode, "mode", string(labpeer.ModeNormal), "backend: how to misbehave")
			fs.IntVar(&cfg.Backlog, "backlog", 1, "backend, listen-overflow: listen backlog")
			fs.DurationVar(&cfg.IdleCloseDelay, "idle-close-delay", 0, "backend: wait this long between the idle timeout and close(); a request arriving meanwhile draws an RST (keep-alive race)")
			fs.BoolVar(&cfg.AbortOnOverflow, "abort-on-overflow", false, "backend: set net.ipv4.tcp_abort_on_overflow=1 first (root; per network namespace)")
			fs.StringVar(&cfg.Upstream, "upstream", "", "proxy: upstream address, e.g. 127.0.0.10:8080")
			fs.IntVar(&cfg.KeepAlive, "keepalive", labpeer.DefaultUpstreamKeepAlive, "proxy: idle upstream connections kept (nginx keepalive N; -1: none)")
			fs.DurationVar(&cfg.UpstreamIdle, "upstream-idle", labpeer.DefaultUpstreamIdleTimeout, "proxy: idle upstream connection lifetime (nginx upstream keepalive_timeout)")
			return func(env *cli.Env, args []string) int {
				if len(args) != 1 || (args[0] != "backend" && args[0] != "proxy") {
					fmt.Fprintln(env.Stderr, "rstscope lab-peer: want one role: backend or proxy")
					return cli.ExitUsage
				}
				cfg.Role = args[0]
				if cfg.Listen == "" {
					fmt.Fprintln(env.Stderr, "rstscope lab-peer: --listen is required")
					return cli.ExitUsage
				}
				if cfg.Role == "proxy" && cfg.Upstream == "" {
					fmt.Fprintln(env.Stderr, "rstscope lab-peer: proxy needs --upstream")
					return cli.ExitUsage
				}
				m, err := labpeer.ParseMode(mode)
				if err != nil {
					fmt.Fprintln(env.Stderr, "rstscope lab-peer:", err)
					return cli.ExitUsage
				}
				cfg.Mode = m
				ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
				defer stop()
				if err := labpeer.RunPeer(ctx, cfg, env.Stdin, env.Stdout, env.Stderr); err != nil {
					fmt.Fprintln(env.Stderr, "rstscope lab-peer:", err)
					return cli.ExitFindings
				}
				return cli.ExitOK
			}
		},
	})
}
