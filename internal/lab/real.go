package lab

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/labpeer"
	"github.com/rstscope/rstscope/internal/realpeer"
)

// realScenarios holds the real-peer versions of scenarios (--peers real):
// nginx, Node.js, okhttp and curl instead of rstscope's own peers. Each
// expects what its Go-peer version expects, so the same checks hold both
// to the same ground truth.
var realScenarios = map[string]func(ctx context.Context, o Options, r *run) (Expect, error){
	"refused":         realRefused,
	"upstream-down":   realUpstreamDown,
	"stale-keepalive": realStaleKeepalive,
}

// realNeeds lists the programs each real-peer scenario runs.
var realNeeds = map[string][]string{
	"refused":         {realpeer.Curl},
	"upstream-down":   {realpeer.Nginx, realpeer.Node, realpeer.Curl},
	"stale-keepalive": {realpeer.Nginx, realpeer.Java, realpeer.Javac, realpeer.OkHttp},
}

// realPeersMissing says which real programs a scenario needs that are not
// installed, and how to install them; nil when all are there.
var realPeersMissing = func(name string) error {
	if err := realpeer.Missing(realNeeds[name]...); err != nil {
		return fmt.Errorf("lab %s --peers real: %w", name, err)
	}
	return nil
}

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

// realRefused is the article's scenario 1 with curl in place of nc.
func realRefused(ctx context.Context, o Options, r *run) (Expect, error) {
	set, err := realpeer.NewSet()
	if err != nil {
		return Expect{}, err
	}
	defer set.Close()
	addr := ServerIP + ":80"
	r.note("nothing listens on %s; the client is curl (the article uses nc)", addr)
	u := url(addr, "/")
	res, err := set.Curl(ctx, u, ClientIP)
	if err != nil {
		return Expect{}, err
	}
	r.steps = append(r.steps, curlStep("curl "+u, res))
	return Expect{Cause: cause.Refused, ResetBy: "server", ClientSees: labpeer.KindRefused.String()}, nil
}

// realUpstreamDown is the article's scenario 2: nginx in front of a Node.js
// page, the Node process SIGKILLed, curl gets 502.
func realUpstreamDown(ctx context.Context, o Options, r *run) (Expect, error) {
	set, err := realpeer.NewSet()
	if err != nil {
		return Expect{}, err
	}
	defer set.Close()
	up := UpstreamIP + ":8080"
	front := ServerIP + ":80"
	node, err := set.StartNode(ctx, up, 0)
	if err != nil {
		return Expect{}, err
	}
	ngx, err := set.StartNginx(ctx, realpeer.NginxConfig{Listen: front, KeepaliveTimeout: 65 * time.Second,
		Upstream: up, UpstreamKeepalive: 16, ProxyBind: ServerIP})
	if err != nil {
		return Expect{}, err
	}
	r.note("Node.js backend on %s (pid %d); nginx on %s (pid %d): upstream web_server { server %s; keepalive 16; }, proxy_http_version 1.1, keepalive_timeout 65s; configs in %s (removed at exit)",
		up, node.Pid(), front, ngx.Pid(), up, set.Dir)
	u := url(front, "/test")
	res, err := set.Curl(ctx, u, ClientIP)
	if err != nil {
		return Expect{}, err
	}
	r.steps = append(r.steps, curlStep("curl "+u, res))
	if b := strings.TrimSpace(res.Body); b != "" && res.Status == 200 {
		r.note("the page: %q", firstLine(b))
	}
	node.Kill()
	r.note("Node.js backend killed with SIGKILL")
	// Kill waited until the process was reaped, so its sockets are closed;
	// give nginx a moment to see the FIN on its idle upstream connection,
	// as the Go-peer version does.
	time.Sleep(100 * time.Millisecond)
	if res, err = set.Curl(ctx, u, ClientIP); err != nil {
		return Expect{}, err
	}
	r.steps = append(r.steps, curlStep("curl "+u, res))
	if t := firstTitle(res.Body); t != "" {
		r.note("nginx answered: %s", t)
	}
	noteNginxErrors(r, set)
	return Expect{Cause: cause.UpstreamFailure, ResetBy: "server", Status: 502}, nil
}

// realStaleKeepalive is the article's scenario 3: nginx with
// keepalive_timeout = o.ServerIdle, the okhttp client (pool, GET, sleep
// o.Wait, GET).
func realStaleKeepalive(ctx context.Context, o Options, r *run) (Expect, error) {
	c := realpeer.OkHttpClient{Wait: o.Wait, PoolIdle: o.PoolIdle, LocalIP: ClientIP}
	if o.Fix == "check" {
		return Expect{}, fmt.Errorf("--fix check has no real-peer version: okhttp 3 does not check an idle connection before reusing it for a GET (it does for other methods)")
	}
	exp, err := staleFixExpect(o.Fix)
	if err != nil {
		return Expect{}, err
	}
	switch o.Fix {
	case "pool-idle":
		c.PoolIdle = staleFixPoolIdle(o)
	case "retry":
		c.Retry = true
	}
	set, err := realpeer.NewSet()
	if err != nil {
		return Expect{}, err
	}
	defer set.Close()
	// Compile first: javac takes a second or two and sends no packet.
	cp, err := set.CompileOkHttpClient(ctx)
	if err != nil {
		return Expect{}, err
	}
	addr := ServerIP + ":80"
	ngx, err := set.StartNginx(ctx, realpeer.NginxConfig{Listen: addr, KeepaliveTimeout: o.ServerIdle})
	if err != nil {
		return Expect{}, err
	}
	c.URL = url(addr, "/test")
	r.note("nginx on %s (pid %d) with keepalive_timeout %s; okhttp client: ConnectionPool(5, %s), retryOnConnectionFailure(%v); configs in %s (removed at exit)",
		addr, ngx.Pid(), o.ServerIdle, c.PoolIdle, c.Retry, set.Dir)
	lines, info, err := set.RunOkHttpClient(ctx, cp, c)
	for _, l := range info {
		if v, ok := strings.CutPrefix(l, "CLIENT "); ok {
			r.note("client: %s", v)
		} else if v, ok := strings.CutPrefix(l, "SLEEP "); ok {
			r.note("client sleeps %s ms", v)
		}
	}
	if err != nil {
		return Expect{}, err
	}
	for _, l := range lines {
		what := "GET " + c.URL
		if l.N == 2 {
			what += " after " + o.Wait.String()
		}
		st := Step{What: what, Status: l.Status, Error: l.Error, Reused: l.Reused, Retried: l.Retried, Local: l.Local}
		if l.Error != "" {
			st.Kind = javaKind(l.Error).String()
		}
		r.steps = append(r.steps, st)
		if l.Dropped > 0 {
			r.note("okhttp found %d pooled connection(s) closed and dropped them before sending request %d", l.Dropped, l.N)
		}
	}
	noteNginxErrors(r, set)
	return exp, nil
}

// curlStep turns a curl run into a step; a refused connect is the
// article's "connection refused".
func curlStep(what string, res realpeer.CurlResult) Step {
	st := Step{What: what, Status: res.Status, Local: res.Local}
	if res.Exit != 0 {
		st.Error = res.Error
		if st.Error == "" {
			st.Error = fmt.Sprintf("curl exited with status %d", res.Exit)
		}
		st.Kind = labpeer.KindOther.String()
		switch {
		case res.Refused:
			st.Kind = labpeer.KindRefused.String()
		case res.Exit == 28:
			st.Kind = labpeer.KindTimeout.String()
		case res.Exit == 56 && strings.Contains(res.Error, "reset"):
			st.Kind = labpeer.KindReset.String()
		case res.Exit == 52:
			st.Kind = labpeer.KindEndOfStream.String()
		}
	}
	return st
}

// javaKind classifies a Java exception chain by the symptom it shows, the
// way labpeer's okhttp-like client words its own.
func javaKind(text string) labpeer.ErrKind {
	switch {
	case strings.Contains(text, "unexpected end of stream"):
		return labpeer.KindEndOfStream
	case strings.Contains(text, "Connection reset"):
		return labpeer.KindReset
	case strings.Contains(text, "Connection refused"):
		return labpeer.KindRefused
	case strings.Contains(text, "Broken pipe"):
		return labpeer.KindBrokenPipe
	case strings.Contains(text, "SocketTimeoutException"), strings.Contains(text, "timeout"):
		return labpeer.KindTimeout
	}
	return labpeer.KindOther
}

// noteNginxErrors shows nginx's error.log lines about upstreams and
// connections: the article reads the same lines.
func noteNginxErrors(r *run, set *realpeer.Set) {
	for _, l := range strings.Split(set.NginxErrors(), "\n") {
		if strings.Contains(l, "[error]") || strings.Contains(l, "upstream") || strings.Contains(l, "[crit]") {
			r.note("nginx error.log: %s", strings.TrimSpace(l))
		}
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// firstTitle finds an HTML page's <title> (nginx's "502 Bad Gateway").
func firstTitle(body string) string {
	_, rest, ok := strings.Cut(body, "<title>")
	if !ok {
		return ""
	}
	t, _, _ := strings.Cut(rest, "</title>")
	return t
}
