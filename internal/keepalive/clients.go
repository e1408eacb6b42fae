package keepalive

import (
	"fmt"
	"time"

	"github.com/rstscope/rstscope/internal/cause"
)

// Client is the advice for one client stack: its knob and default (from the
// catalogue, cause.IdleSettings), the line of code or configuration that sets
// it safely below the measured timeout, and whether its default is already
// too long for this server.
type Client struct {
	Stack   string `json:"stack"`
	Setting string `json:"setting"`
	Default string `json:"default"`
	Set     string `json:"set,omitempty"` // concrete code/config with the safe value; "" when the stack has no idle timeout
	Advice  string `json:"advice"`
	// AtRisk: with its default the client keeps idle connections longer than
	// the server does, so it will reuse closed ones (stale-keepalive).
	AtRisk bool `json:"at_risk"`
}

// clientKnob is how to set one client stack's pool idle timeout. Keys are the
// Stack names of cause.IdleSettings; stacks that are not clients of the
// measured server (load balancers, nginx as a server) have none.
type clientKnob struct {
	set  func(d time.Duration) string // nil when there is nothing to set
	dflt time.Duration                // longest default idle timeout; -1 = none (never closes idle connections)
}

var knobs = map[string]clientKnob{
	"okhttp": {dflt: 5 * time.Minute, set: func(d time.Duration) string {
		v, unit := javaUnit(d)
		return fmt.Sprintf("new ConnectionPool(5, %d, TimeUnit.%s)", v, unit)
	}},
	"Go net/http": {dflt: 90 * time.Second, set: func(d time.Duration) string {
		return fmt.Sprintf("&http.Transport{IdleConnTimeout: %s}", goDur(d))
	}},
	"Java HttpClient": {dflt: 1200 * time.Second, // 30 s since JDK 20; 11 and 17 are common
		set: func(d time.Duration) string {
			return fmt.Sprintf("-Djdk.httpclient.keepalive.timeout=%d", max(1, int(d/time.Second)))
		}},
	"Apache HttpClient": {dflt: 3 * time.Minute, set: func(d time.Duration) string {
		v, unit := javaUnit(d)
		return fmt.Sprintf("HttpClients.custom().evictIdleConnections(%d, TimeUnit.%s) (5.x: TimeValue.of(%d, TimeUnit.%s))", v, unit, v, unit)
	}},
	"Node http.Agent": {dflt: 5 * time.Second, set: func(d time.Duration) string {
		return fmt.Sprintf("new http.Agent({keepAlive: true, timeout: %d})", d.Milliseconds())
	}},
	"Node undici / fetch": {dflt: 4 * time.Second, set: func(d time.Duration) string {
		return fmt.Sprintf("new undici.Agent({keepAliveTimeout: %d})", d.Milliseconds())
	}},
	"Python urllib3/requests": {dflt: -1},
	"nginx (upstream)": {dflt: 60 * time.Second, set: func(d time.Duration) string {
		return fmt.Sprintf("upstream backend { keepalive 16; keepalive_timeout %s; }  (when nginx proxies to this server)", nginxDur(d))
	}},
}

// Clients returns the advice for every client stack in cause.IdleSettings,
// in catalogue order, with safe as the value to set.
func Clients(safe time.Duration) []Client {
	var out []Client
	for _, s := range cause.IdleSettings {
		k, ok := knobs[s.Stack]
		if !ok {
			continue // a server or load balancer, not a client of this server
		}
		c := Client{Stack: s.Stack, Setting: s.Setting, Default: s.Default, Advice: s.Advice}
		if k.set != nil {
			c.Set = k.set(safe)
		}
		// The measured timeout is safe+margin; a default at or above safe is at risk.
		c.AtRisk = k.dflt < 0 || k.dflt > safe
		out = append(out, c)
	}
	return out
}

func javaUnit(d time.Duration) (int64, string) {
	if d%time.Second == 0 {
		return int64(d / time.Second), "SECONDS"
	}
	return d.Milliseconds(), "MILLISECONDS"
}

func goDur(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%d * time.Second", d/time.Second)
	}
	return fmt.Sprintf("%d * time.Millisecond", d.Milliseconds())
}

func nginxDur(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}
