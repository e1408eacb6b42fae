// Command rstscope tells why TCP connections were reset.
//
// Each subcommand lives in its own file (analyze.go, lab.go, ...) and
// registers itself with internal/cli; this file only dispatches.
package main

import (
	"fmt"
	"os"

	"github.com/rstscope/rstscope/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	env := &cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	os.Exit(run(env, os.Args[1:]))
}

func run(env *cli.Env, args []string) int {
	if len(args) == 0 {
		usage(env)
		return cli.ExitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		if len(args) > 1 {
			if c := cli.Lookup(args[1]); c != nil {
				return cli.Run(c, env, []string{"--help"})
			}
		}
		usage(env)
		return cli.ExitOK
	case "--version", "version":
		fmt.Fprintln(env.Stdout, "rstscope", version)
		return cli.ExitOK
	}
	c := cli.Lookup(args[0])
	if c == nil {
		fmt.Fprintf(env.Stderr, "rstscope: unknown command %q\n\n", cli.Clean(args[0]))
		usage(env)
		return cli.ExitUsage
	}
	return cli.Run(c, env, args[1:])
}

func usage(env *cli.Env) {
	w := env.Stderr
	fmt.Fprintln(w, `rstscope tells why TCP connections were reset.

Usage: rstscope COMMAND [flags] [args]

Commands:`)
	for _, c := range cli.Commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintln(w, `
Start here:
  rstscope lab refused            watch a reset happen, explained (no capture needed)
  rstscope analyze capture.pcap   explain every reset in a capture
  rstscope why "Connection reset" what an error message usually means

Run 'rstscope help COMMAND' for a command's flags and examples.`)
}
