package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rstscope/rstscope/internal/cli"
	"github.com/rstscope/rstscope/internal/lab"
	"github.com/rstscope/rstscope/internal/netns"
)

func init() {
	cli.Register(&cli.Command{
		Name:    "lab",
		Summary: "reproduce each reset for real on this machine, captured and explained",
		Usage:   "rstscope lab list | rstscope lab SCENARIO|all [flags]",
		Help: `Runs real programs on loopback addresses inside a network namespace of its own
(it never touches this host's traffic or ports), captures their packets, reads
the kernel's own reset reasons (as root, Linux 6.10+), and explains what
happened with the same engine as 'rstscope analyze'. Each scenario checks that
the client saw the error it predicts and that rstscope names the expected cause.

The article's three scenarios:
  rstscope lab refused             SYN to a port nobody listens on: RST, connection refused
  rstscope lab upstream-down       nginx-like proxy, upstream killed with SIGKILL: 502
  rstscope lab stale-keepalive     okhttp-like pool reuses a connection the server closed
  rstscope lab stale-keepalive --fix pool-idle   the article's fix 1 (pool idle < server's)
  rstscope lab stale-keepalive --fix retry       the article's fix 2 (retryOnConnectionFailure)
  rstscope lab stale-keepalive --fix check       a pool that checks before reuse (Go, Node)
Quicker: rstscope lab stale-keepalive --server-idle 1s --wait 1.5s

'rstscope lab list' shows every scenario; 'rstscope lab all' runs them all.
As root it uses a new network namespace; otherwise a new user and network
namespace (where the system allows unprivileged user namespaces); kernel
reasons need root. Exit status: 0 every scenario as expected, 1 not, 2 usage
or the lab could not run, 130 interrupted (everything is cleaned up).`,
		Flags: labFlags,
	})
}

func labFlags(fs *flag.FlagSet) func(env *cli.Env, args []string) int {
	jsonOut := fs.Bool("json", false, "JSON Lines: a lab object (checks, client steps), the incidents, a summary")
	write := fs.String("write", "", "write the capture to `FILE.pcapng`, the kernel's reasons as packet comments (with all: one file per scenario, named FILE-SCENARIO.pcapng)")
	serverIdle := fs.Duration("server-idle", 5*time.Second, "stale-keepalive: the server's keepalive_timeout")
	wait := fs.Duration("wait", 0, "stale-keepalive: idle time before the second request (default: server-idle + 20%, the article's 6 s)")
	poolIdle := fs.Duration("pool-idle", 0, "client pool keep-alive (default okhttp's 5 min)")
	fix := fs.String("fix", "", "stale-keepalive: show a fix: pool-idle, retry or check")
	htmlOut := fs.String("html", "", "also write the HTML report to `FILE` (with all: one file per scenario, FILE-SCENARIO.html)")
	peers := fs.String("peers", "go", "which programs play the parts: go (rstscope's own) or real (nginx, Node.js, okhttp, curl)")
	noColor := fs.Bool("no-color", false, "no colours")
	return func(env *cli.Env, args []string) int {
		if len(args) != 1 {
			fmt.Fprintln(env.Stderr, "rstscope lab: name one scenario, all, or list\nRun 'rstscope lab --help' for usage.")
			return cli.ExitUsage
		}
		if args[0] == "list" {
			fmt.Fprintln(env.Stdout, "Scenarios (rstscope lab NAME):")
			lab.List(env.Stdout)
			return cli.ExitOK
		}
		var scs []*lab.Scenario
		if args[0] == "all" {
			scs = lab.Scenarios
		} else if sc := lab.Lookup(args[0]); sc != nil {
			scs = []*lab.Scenario{sc}
		} else {
			fmt.Fprintf(env.Stderr, "rstscope lab: unknown scenario %q; 'rstscope lab list' shows them\n", cli.Clean(args[0]))
			return cli.ExitUsage
		}
		if *fix != "" && (len(scs) != 1 || scs[0].Name != "stale-keepalive") {
			fmt.Fprintln(env.Stderr, "rstscope lab: --fix goes with the stale-keepalive scenario")
			return cli.ExitUsage
		}
		if !netns.Inside() {
			return labOutside(env)
		}
		return labInside(env, scs, lab.Options{ServerIdle: *serverIdle, Wait: *wait, PoolIdle: *poolIdle, Fix: *fix, Peers: *peers}, *jsonOut, *write, *htmlOut, *noColor)
	}
}

// labOutside re-runs this command in a fresh network namespace and relays
// its exit status. The child dies with us (Pdeathsig) and the namespace
// vanishes with its last process: nothing is left behind.
func labOutside(env *cli.Env) int {
	cmd, err := netns.Command(context.Background(), os.Args[1:]...)
	if err != nil {
		fmt.Fprintf(env.Stderr, "rstscope lab: cannot make a network namespace: %v\nThe lab only runs isolated, so that it never touches this host's ports. Run it as root, or allow unprivileged user namespaces.\n", err)
		return cli.ExitUsage
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, env.Stdout, env.Stderr
	// SIGINT and SIGTERM are passed on to the child (a terminal's Ctrl-C
	// reaches it anyway; a supervisor's signal to us would not), which
	// cleans up (peers, tracefs instance) and exits; we report its status.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(env.Stderr, "rstscope lab: %v\n", err)
		return cli.ExitUsage
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	for err == nil {
		select {
		case sig := <-sigs:
			cmd.Process.Signal(sig)
			continue
		case err = <-waited:
		}
		break
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ee.ExitCode() < 0 {
			return cli.ExitUsage
		}
		return ee.ExitCode()
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "rstscope lab: %v\n", err)
		return cli.ExitUsage
	}
	return cli.ExitOK
}

func labInside(env *cli.Env, scs []*lab.Scenario, o lab.Options, jsonOut bool, write, htmlOut string, noColor bool) int {
	if err := netns.SetupLoopback(); err != nil {
		fmt.Fprintf(env.Stderr, "rstscope lab: bringing lo up in the lab's namespace: %v\n", err)
		return cli.ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if !jsonOut {
		fmt.Fprintf(env.Stdout, "rstscope lab: in a new network namespace (%s)\n\n", netns.Mode())
	}
	color := !noColor && cli.UseColor(env.Stdout)
	code := cli.ExitOK
	for _, sc := range scs {
		if ctx.Err() != nil {
			fmt.Fprintln(env.Stderr, "rstscope lab: interrupted")
			return cli.ExitUsage
		}
		if sc.Root && os.Geteuid() != 0 && len(scs) > 1 {
			fmt.Fprintf(env.Stdout, "=== lab %s: skipped, needs real root\n\n", sc.Name)
			continue
		}
		res := lab.Run(ctx, sc, o)
		if ctx.Err() != nil {
			fmt.Fprintf(env.Stderr, "rstscope lab: interrupted during %s; peers stopped, tracefs instance removed\n", sc.Name)
			return 130
		}
		// Write the evidence first: it must not depend on stdout staying open.
		var wrote []string
		for _, out := range []struct {
			flag, path string
			fn         func(io.Writer) error
		}{{"--write", write, res.WritePcapng}, {"--html", htmlOut, res.HTML}} {
			if out.path == "" || len(res.Frames) == 0 {
				continue
			}
			path := out.path
			if len(scs) > 1 {
				ext := filepath.Ext(path)
				path = strings.TrimSuffix(path, ext) + "-" + sc.Name + ext
			}
			if err := writeFile(path, out.fn); err != nil {
				fmt.Fprintf(env.Stderr, "rstscope lab: %s: %v\n", out.flag, err)
				return cli.ExitUsage
			}
			wrote = append(wrote, path)
		}
		if jsonOut {
			res.JSON(env.Stdout)
		} else {
			res.Text(env.Stdout, color)
			for _, p := range wrote {
				fmt.Fprintf(env.Stdout, "wrote %s\n", p)
			}
		}
		switch {
		case res.Unavailable:
			code = cli.ExitUsage
		case !res.OK() && code == cli.ExitOK:
			code = cli.ExitFindings
		}
	}
	return code
}
