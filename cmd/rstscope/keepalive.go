package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/rstscope/rstscope/internal/cli"
	"github.com/rstscope/rstscope/internal/keepalive"
)

func init() {
	cli.Register(&cli.Command{
		Name:    "keepalive",
		Summary: "measure how long a server keeps an idle keep-alive connection",
		Usage:   "rstscope keepalive [flags] URL",
		Help: `Measures how long the server at URL - or the proxy or load balancer in front
of it - keeps an idle HTTP keep-alive connection open. It sends one GET,
reads the whole response, stays idle, and times the server's FIN or RST
(to the millisecond; no capture or root needed). It then reports:

  - the idle timeout, and whether it ended with FIN or RST;
  - whether the server announces it (a "Keep-Alive: timeout=N" header);
  - the well-known timeout it matches (nginx 65/75 s, AWS ALB 60 s, Node 5 s...);
  - the pool idle timeout to give clients (safely below it), with the line
    to set it in okhttp, Go, Java, Apache HttpClient, Node, undici, nginx,
    and which clients' defaults are too long for this server.

A client whose pool keeps idle connections longer than the server reuses
connections the server has closed: the server answers with RST and the client
sees "Connection reset" or "unexpected end of stream" (stale-keepalive).

If nothing closes the connection within --max, a second request on it tells
whether it is still up (timeout longer than --max) or was dropped silently
by a NAT or firewall in the path. URLs may be http or https; a bare
HOST:PORT means http. Proxy environment variables are not used: the
measurement is of the direct connection.

Examples:
  rstscope keepalive http://localhost:8080/
  rstscope keepalive https://api.example.com/health --max 10m
  rstscope keepalive 127.0.0.1:8080 --max 30s --json

Exit codes: 0 measured (or the server does not keep connections alive);
1 no close seen within --max, or the request failed; 2 usage error.`,
		Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) int {
			maxIdle := fs.Duration("max", keepalive.DefaultMax, "longest time to stay idle waiting for the close")
			timeout := fs.Duration("timeout", 10*time.Second, "limit for connecting and for each response")
			insecure := fs.Bool("insecure", false, "https: do not verify the server's certificate")
			asJSON := fs.Bool("json", false, "one JSON object with the measurement")
			return func(env *cli.Env, args []string) int {
				if len(args) != 1 {
					fmt.Fprintln(env.Stderr, "rstscope keepalive: want one URL\nRun 'rstscope keepalive --help' for usage.")
					return cli.ExitUsage
				}
				if *maxIdle <= 0 || *timeout <= 0 {
					fmt.Fprintln(env.Stderr, "rstscope keepalive: --max and --timeout must be positive")
					return cli.ExitUsage
				}
				if _, err := keepalive.ParseURL(args[0]); err != nil {
					fmt.Fprintf(env.Stderr, "rstscope keepalive: %s\n", cli.Clean(err.Error()))
					return cli.ExitUsage
				}
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
				defer stop()
				o := keepalive.Options{Max: *maxIdle, Timeout: *timeout, Insecure: *insecure}
				if !*asJSON {
					o.Progress = env.Stderr
				}
				res, err := keepalive.Measure(ctx, args[0], o)
				if err != nil {
					fmt.Fprintf(env.Stderr, "rstscope keepalive: %s\n(try `rstscope probe HOST:PORT` to see whether anything answers)\n", cli.Clean(err.Error()))
					return cli.ExitFindings
				}
				if *asJSON {
					if err := keepalive.WriteJSON(env.Stdout, res); err != nil {
						return cli.ExitUsage
					}
				} else {
					keepalive.WriteText(env.Stdout, res)
				}
				switch res.How {
				case keepalive.FIN, keepalive.RST, keepalive.NoReuse:
					return cli.ExitOK
				}
				return cli.ExitFindings
			}
		},
	})
}
