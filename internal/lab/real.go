package lab

import (
	"context"
	"sort"
	"strings"
)

// realScenarios holds the real-peer versions of scenarios (--peers real):
// nginx, Node.js, okhttp and curl instead of rstscope's own peers.
var realScenarios = map[string]func(ctx context.Context, o Options, r *run) (Expect, error){}

// realPeersMissing says which real programs a scenario needs that are not
// installed, and how to install them; nil when all are there.
var realPeersMissing = func(name string) error { return nil }

func realNames() string {
	var n []string
	for k := range realScenarios {
		n = append(n, k)
	}
	sort.Strings(n)
	if len(n) == 0 {
		return "none yet"
	}
	return strings.Join(n, ", ")
}
