package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/rstscope/rstscope/internal/cli"
	"github.com/rstscope/rstscope/internal/probe"
)

func init() {
	cli.Register(&cli.Command{
		Name:    "probe",
		Summary: "connect to HOST:PORT: open, refused (RST) or no answer, and who listens",
		Usage:   "rstscope probe [flags] HOST:PORT",
		Help: `Connects to HOST:PORT and tells apart the three answers a SYN can get:

  OPEN       a SYN-ACK: something accepted the connection
  REFUSED    an RST: nothing listens there, or a firewall rejects (tcp-reset)
  NO-ANSWER  nothing before --timeout: a firewall drops the SYNs, the host
             is down, or the listener's accept queue is full

with the time each attempt took. Every address HOST resolves to is tried.
When the address belongs to this machine, probe also reads /proc (as
'ss -lntp' does) to show what listens on that port and which process owns
it, and names near misses: a service bound to 127.0.0.1 asked on another
address, one bound to another address, IPv6 only (or IPv4 only), or open on
a neighbouring port. Run as root to see other users' processes.

Examples:
  rstscope probe localhost:8080
  rstscope probe 10.0.0.5:5432 --timeout 1s --count 5
  rstscope probe '[::1]:443' --json

Exit codes: 0 at least one address is open; 1 none is (refused, no answer,
unreachable); 2 usage error or HOST did not resolve.`,
		Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) int {
			timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for an answer to each attempt")
			count := fs.Int("count", 1, fmt.Sprintf("attempts per address (at most %d)", probe.MaxCount))
			asJSON := fs.Bool("json", false, "one JSON object per address")
			return func(env *cli.Env, args []string) int {
				if len(args) != 1 {
					fmt.Fprintln(env.Stderr, "rstscope probe: want one HOST:PORT\nRun 'rstscope probe --help' for usage.")
					return cli.ExitUsage
				}
				if *timeout <= 0 || *count < 1 || *count > probe.MaxCount {
					fmt.Fprintf(env.Stderr, "rstscope probe: --timeout must be positive and --count between 1 and %d\n", probe.MaxCount)
					return cli.ExitUsage
				}
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
				defer stop()
				rep, err := probe.Run(ctx, args[0], probe.Options{Timeout: *timeout, Count: *count})
				if err != nil {
					fmt.Fprintf(env.Stderr, "rstscope probe: %s\n", cli.Clean(err.Error()))
					return cli.ExitUsage
				}
				if *asJSON {
					if err := probe.WriteJSON(env.Stdout, rep); err != nil {
						return cli.ExitUsage
					}
				} else {
					probe.WriteText(env.Stdout, rep)
				}
				if rep.AnyOpen() {
					return cli.ExitOK
				}
				return cli.ExitFindings
			}
		},
	})
}
