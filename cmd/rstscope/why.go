package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rstscope/rstscope/internal/cli"
	"github.com/rstscope/rstscope/internal/why"
)

func init() {
	cli.Register(&cli.Command{
		Name:    "why",
		Summary: "what an error message usually means: likely causes and how to confirm",
		Usage:   `rstscope why [flags] "ERROR TEXT" | -`,
		Help: `Paste an error message - or pipe a whole stack trace or log excerpt - and get
the causes that usually produce it, most likely first, each with a sentence
on why it fits; the tcpdump command that would confirm it and where to run it
(client, proxy or server); and the rstscope command to run next.

It knows Java ("Connection reset", ConnectException), okhttp ("unexpected end
of stream"), Apache HttpClient (NoHttpResponseException), Go ("connection
reset by peer", EOF, "server closed idle connection"), Node (ECONNRESET,
"socket hang up", ECONNREFUSED), Python (ConnectionResetError,
RemoteDisconnected), curl errors 7, 28, 52 and 56, nginx error.log lines
("upstream prematurely closed connection", "connect() failed (111: ...)",
"recv() failed (104: ...)") and Envoy ("upstream connect error or
disconnect/reset before headers"). Host names and ports in the text are
used in the suggested commands.

The text is read from the arguments, or from standard input with '-' (or
when no argument is given and standard input is not a terminal).

Examples:
  rstscope why "java.net.SocketException: Connection reset"
  rstscope why 'Get "http://api:8080/v1": EOF'
  kubectl logs deploy/app | grep -A30 Exception | rstscope why -
  grep upstream /var/log/nginx/error.log | tail -1 | rstscope why - --json

Exit codes: 0 recognised; 1 not recognised (general next steps are printed);
2 usage error (no text).`,
		Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) int {
			asJSON := fs.Bool("json", false, "one JSON object with the recognised messages, causes and commands")
			return func(env *cli.Env, args []string) int {
				text, err := whyInput(env, args)
				if err != nil {
					fmt.Fprintf(env.Stderr, "rstscope why: %s\nRun 'rstscope why --help' for usage.\n", err)
					return cli.ExitUsage
				}
				rep := why.Analyze(text)
				if *asJSON {
					if err := why.WriteJSON(env.Stdout, rep); err != nil {
						return cli.ExitUsage
					}
				} else {
					why.WriteText(env.Stdout, rep)
				}
				if len(rep.Recognised) == 0 {
					return cli.ExitFindings
				}
				return cli.ExitOK
			}
		},
	})
}

// whyInput returns the text to examine: the arguments joined, or standard
// input for "-" (or no argument with a non-terminal standard input).
func whyInput(env *cli.Env, args []string) (string, error) {
	fromStdin := len(args) == 1 && args[0] == "-"
	if len(args) == 0 {
		f, ok := env.Stdin.(*os.File)
		fromStdin = env.Stdin != nil && (!ok || !cli.IsTerminal(f))
	}
	if fromStdin {
		b, err := io.ReadAll(io.LimitReader(env.Stdin, why.MaxInput))
		if err != nil {
			return "", fmt.Errorf("reading standard input: %v", err)
		}
		if strings.TrimSpace(string(b)) == "" {
			return "", fmt.Errorf("no error text on standard input")
		}
		return string(b), nil
	}
	text := strings.Join(args, " ")
	if strings.TrimSpace(text) == "" {
		return "", fmt.Errorf("give the error text as an argument, or '-' to read it from standard input")
	}
	return text, nil
}
