// Package cli holds the small pieces every rstscope subcommand shares: a command
// registry, flag parsing that accepts flags after positional arguments
// (`rstscope analyze f.pcap --json`), terminal detection and safe printing of
// untrusted strings.
//
// It uses the standard library's flag package on purpose: one dependency fewer,
// and the only thing flag lacks (interspersed flags) is a loop in Parse.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"unicode"

	"golang.org/x/term"
)

// Exit codes, documented in README.md.
const (
	ExitOK       = 0 // the command ran; findings do not change this
	ExitFindings = 1 // --fail-on matched, or a check failed
	ExitUsage    = 2 // usage error or unreadable input
)

// Command is one subcommand of rstscope.
type Command struct {
	Name    string // e.g. "analyze"
	Summary string // one line for the command list
	Usage   string // synopsis, e.g. "rstscope analyze [flags] FILE|-"
	Help    string // longer text that teaches: what it does, examples
	// Flags declares the command's flags on fs and returns the function that
	// runs the command with the positional arguments.
	Flags  func(fs *flag.FlagSet) func(env *Env, args []string) int
	Hidden bool // internal commands (lab peers) are not listed
}

// Env is what a command gets to talk to the world; tests replace it.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

var registry = map[string]*Command{}

// Register adds a command; called from init functions in cmd/rstscope.
func Register(c *Command) {
	if _, dup := registry[c.Name]; dup {
		panic("cli: duplicate command " + c.Name)
	}
	registry[c.Name] = c
}

// Lookup returns the command named name, or nil.
func Lookup(name string) *Command { return registry[name] }

// Commands returns the visible commands sorted by name.
func Commands() []*Command {
	var out []*Command
	for _, c := range registry {
		if !c.Hidden {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Run parses args for c and runs it. Flags may stand before, between or after
// positional arguments; "--" ends flag parsing.
func Run(c *Command, env *Env, args []string) int {
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	run := c.Flags(fs)
	fs.Usage = func() {} // errors get a short hint below, --help the full text once
	pos, err := ParseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			PrintCommandHelp(env.Stdout, c, fs)
			return ExitOK
		}
		fmt.Fprintf(env.Stderr, "rstscope %s: %v\nRun 'rstscope %s --help' for usage.\n", c.Name, err, c.Name)
		return ExitUsage
	}
	return run(env, pos)
}

// ParseInterspersed parses flags anywhere in args and returns the positional
// arguments in order. A lone "-" is a positional argument (standard input).
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at the first non-flag, or after "--".
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// PrintCommandHelp writes a command's usage, help text and flags.
func PrintCommandHelp(w io.Writer, c *Command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s\n\n", c.Usage)
	if c.Help != "" {
		fmt.Fprintln(w, strings.TrimSpace(c.Help))
		fmt.Fprintln(w)
	}
	has := false
	fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprintln(w, "Flags:")
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			dash := "--"
			if len(f.Name) == 1 {
				dash = "-"
			}
			line := "  " + dash + f.Name
			if name != "" {
				line += " " + name
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(w, "%-28s %s%s\n", line, usage, def)
		})
	}
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// UseColor reports whether output to w should be coloured: a terminal, and
// NO_COLOR unset (https://no-color.org).
func UseColor(w io.Writer) bool {
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	return IsTerminal(w)
}

// Clean makes an untrusted string safe for a terminal: control characters
// (escape sequences, carriage returns, NUL) become \xNN or \uNNNN, invalid
// UTF-8 becomes U+FFFD. Printable text, including non-ASCII, is kept.
func Clean(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < 0x20 || b == 0x7f || b >= 0x80 {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\x%02x", r)
		case !unicode.IsPrint(r) && r != '\uFFFD':
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
