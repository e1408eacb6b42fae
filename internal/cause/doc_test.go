package cause_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/rstscope/rstscope/internal/cause"
)

var update = flag.Bool("update", false, "rewrite docs/causes.md from the catalogue")

// TestDocsUpToDate keeps docs/causes.md generated from the catalogue, so the
// documentation cannot drift from what rstscope says. Regenerate with
// `go test ./internal/cause -update`.
func TestDocsUpToDate(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("# The causes rstscope knows\n\n")
	b.WriteString("Generated from `internal/cause` by `go test ./internal/cause -update`: edit the catalogue, not this page.\n")
	b.WriteString("Each cause has a rule in `internal/diagnose` and, where Linux can produce it on loopback, a scenario in `rstscope lab`.\n\n")
	b.WriteString("| id | what | kernel reasons (`tcp:tcp_send_reset`) |\n|---|---|---|\n")
	for _, c := range cause.Catalogue {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", c.ID, c.Title, strings.Join(c.Kernel, ", "))
	}
	for _, c := range cause.Catalogue {
		fmt.Fprintf(&b, "\n## `%s`: %s\n\n%s\n", c.ID, c.Title, c.Explanation)
		if c.Signature != "" {
			fmt.Fprintf(&b, "\n**In the packets:** %s\n", c.Signature)
		}
		if len(c.AppSees) > 0 {
			b.WriteString("\n**What applications report:**\n")
			for _, s := range c.AppSees {
				fmt.Fprintf(&b, "- `%s`\n", s)
			}
		}
		b.WriteString("\n**What to do:**\n")
		for _, a := range c.Advice {
			fmt.Fprintf(&b, "- %s\n", a)
		}
	}
	b.WriteString("\n## The kernel's reasons and the causes they fit\n\n")
	b.WriteString("The lab's tests check every verdict against this table (`cause.KernelReasonCauses`).\n\n| kernel reason | consistent with |\n|---|---|\n")
	var reasons []string
	for r := range cause.KernelReasonCauses {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		var ids []string
		for _, id := range cause.KernelReasonCauses[r] {
			ids = append(ids, "`"+string(id)+"`")
		}
		fmt.Fprintf(&b, "| %s | %s |\n", r, strings.Join(ids, ", "))
	}
	b.WriteString("\n## Idle timeouts of common clients and servers\n\n| stack | setting | default | advice |\n|---|---|---|---|\n")
	for _, s := range cause.IdleSettings {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", s.Stack, s.Setting, s.Default, s.Advice)
	}
	const path = "../../docs/causes.md"
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/cause -update)", err)
	}
	if !bytes.Equal(got, b.Bytes()) {
		t.Errorf("docs/causes.md is out of date: run go test ./internal/cause -update")
	}
}

// TestCatalogue checks every entry is complete and every kernel reason maps
// to known causes.
func TestCatalogue(t *testing.T) {
	seen := map[cause.ID]bool{}
	for _, c := range cause.Catalogue {
		if seen[c.ID] {
			t.Errorf("duplicate id %s", c.ID)
		}
		seen[c.ID] = true
		if c.Title == "" || c.Explanation == "" || len(c.Advice) == 0 {
			t.Errorf("%s: title, explanation and advice are required", c.ID)
		}
	}
	for r, ids := range cause.KernelReasonCauses {
		for _, id := range ids {
			if !cause.Valid(id) {
				t.Errorf("kernel reason %s maps to unknown cause %s", r, id)
			}
		}
	}
	if !cause.Agrees("NO_SOCKET", cause.Refused) || cause.Agrees("TCP_STATE", cause.Refused) {
		t.Error("Agrees disagrees with the table")
	}
	if !cause.Agrees("SOMETHING_NEW", cause.Refused) {
		t.Error("an unknown reason must agree with every verdict")
	}
}
