package realpeer

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The programs, and the Debian packages that hold them.
const (
	Nginx  = "nginx"
	Node   = "node"
	Java   = "java"
	Javac  = "javac"
	OkHttp = "okhttp"
	Curl   = "curl"
)

var packages = map[string]string{
	Nginx:  "nginx",
	Node:   "nodejs",
	Java:   "default-jre-headless",
	Javac:  "default-jdk-headless",
	OkHttp: "libokhttp-java",
	Curl:   "curl",
}

// The jars of okhttp 3 and okio 1 as Debian's libokhttp-java and
// libokio-java install them.
var okhttpJars = []string{"/usr/share/java/okhttp.jar", "/usr/share/java/okio.jar"}

// Lookup finds a program in PATH or in the sbin directories (nginx lives
// in /usr/sbin, which a user's PATH may lack).
func Lookup(prog string) (string, error) {
	if p, err := exec.LookPath(prog); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(d, prog)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", prog)
}

// Missing says which of the programs (Nginx, Node, ...) are not installed
// and which Debian packages hold them; nil when all are there.
func Missing(progs ...string) error {
	var miss, pkgs []string
	for _, p := range progs {
		ok := true
		if p == OkHttp {
			for _, j := range okhttpJars {
				if _, err := os.Stat(j); err != nil {
					ok = false
				}
			}
		} else if _, err := Lookup(p); err != nil {
			ok = false
		}
		if !ok {
			what := p
			if p == OkHttp {
				what = "okhttp 3 (" + strings.Join(okhttpJars, ", ") + ")"
			}
			miss = append(miss, what)
			pkgs = append(pkgs, packages[p])
		}
	}
	if len(miss) == 0 {
		return nil
	}
	// A JDK holds the JRE: name it once.
	if slices.Contains(pkgs, packages[Javac]) {
		pkgs = slices.DeleteFunc(pkgs, func(p string) bool { return p == packages[Java] })
	}
	return fmt.Errorf("real peers not installed: %s; on Debian or Ubuntu: apt-get install %s",
		strings.Join(miss, ", "), strings.Join(pkgs, " "))
}

// NginxConfig is what an nginx of the lab does: serve a page, or proxy to
// one upstream with a keep-alive pool (the article's scenario 2).
type NginxConfig struct {
	Listen           string        // "127.0.0.5:80"
	KeepaliveTimeout time.Duration // keepalive_timeout towards clients
	// Upstream, if set, is the one server of `upstream web_server` that
	// location /test proxies to, with HTTP/1.1 and `keepalive` idle
	// connections; otherwise every location answers 200 with a page.
	Upstream          string
	UpstreamKeepalive int
	ProxyBind         string // source address of upstream connections, optional
}

// Conf renders nginx.conf for a run in dir: one process (no master, no
// daemon) so that it dies with the lab, every path inside dir.
func (c NginxConfig) Conf(dir string, without map[string]bool) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# written by rstscope lab --peers real; runs in the foreground, one process")
	p("daemon off;")
	p("master_process off;")
	p("worker_processes 1;")
	p("pid %s;", filepath.Join(dir, "nginx.pid"))
	p("error_log %s info;", filepath.Join(dir, "error.log"))
	p("events { worker_connections 256; }")
	p("http {")
	p("    access_log %s;", filepath.Join(dir, "access.log"))
	p("    client_body_temp_path %s;", filepath.Join(dir, "tmp", "body"))
	for _, m := range []string{"proxy", "fastcgi", "uwsgi", "scgi"} {
		if !without[m] {
			p("    %s_temp_path %s;", m, filepath.Join(dir, "tmp", m))
		}
	}
	p("    keepalive_timeout %dms;", c.KeepaliveTimeout.Milliseconds())
	if c.Upstream != "" {
		p("    upstream web_server {")
		p("        server %s;", c.Upstream)
		p("        keepalive %d;", c.UpstreamKeepalive)
		p("    }")
	}
	p("    server {")
	p("        listen %s;", c.Listen)
	if c.Upstream != "" {
		p("        location /test {")
		p("            proxy_pass http://web_server;")
		p("            proxy_http_version 1.1;")
		p(`            proxy_set_header Connection "";`)
		if c.ProxyBind != "" {
			p("            proxy_bind %s;", c.ProxyBind)
		}
		p("        }")
	}
	p("        location / {")
	p("            default_type text/plain;")
	p(`            return 200 "hello from nginx\n";`)
	p("        }")
	p("    }")
	p("}")
	return b.String()
}

// StartNginx writes nginx.conf into the set's directory, starts nginx in
// the foreground and waits until it listens.
func (s *Set) StartNginx(ctx context.Context, c NginxConfig) (*Proc, error) {
	bin, err := Lookup(Nginx)
	if err != nil {
		return nil, err
	}
	// Temp-path directives of modules left out of this build would be
	// errors: read which ones `nginx -V` says are missing.
	without := map[string]bool{}
	if out, err := exec.CommandContext(ctx, bin, "-V").CombinedOutput(); err == nil {
		for _, m := range []string{"proxy", "fastcgi", "uwsgi", "scgi"} {
			without[m] = strings.Contains(string(out), "--without-http_"+m+"_module")
		}
	}
	conf, err := s.WriteFile("nginx.conf", c.Conf(s.Dir, without))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.Path("tmp"), 0o755); err != nil {
		return nil, err
	}
	// -e: the error log before the configuration is read (nginx 1.19.5+),
	// so that nginx never opens the system's own log.
	p, err := s.Start(ctx, "nginx", bin, "-p", s.Dir, "-c", conf, "-e", s.Path("error.log"))
	if err != nil {
		return nil, err
	}
	if err := WaitListen(ctx, p, c.Listen, 10*time.Second); err != nil {
		return nil, fmt.Errorf("%w (error.log: %s)", err, lastLines(s.NginxErrors(), 5))
	}
	return p, nil
}

// NginxErrors returns nginx's error.log so far.
func (s *Set) NginxErrors() string {
	b, _ := os.ReadFile(s.Path("error.log"))
	return string(b)
}

//go:embed assets/backend.js
var backendJS string

// StartNode runs the article's Node.js page on addr ("hello from node")
// and waits until it listens. keepAlive, if non-zero, sets the server's
// keepAliveTimeout (Node's default is 5 s).
func (s *Set) StartNode(ctx context.Context, addr string, keepAlive time.Duration) (*Proc, error) {
	bin, err := Lookup(Node)
	if err != nil {
		return nil, err
	}
	script, err := s.WriteFile("backend.js", backendJS)
	if err != nil {
		return nil, err
	}
	host, port, ok := strings.Cut(addr, ":")
	if !ok {
		return nil, fmt.Errorf("realpeer: bad address %q", addr)
	}
	args := []string{bin, script, host, port}
	if keepAlive > 0 {
		args = append(args, strconv.FormatInt(keepAlive.Milliseconds(), 10))
	}
	p, err := s.Start(ctx, "node", args...)
	if err != nil {
		return nil, err
	}
	if err := WaitListen(ctx, p, addr, 10*time.Second); err != nil {
		return nil, err
	}
	return p, nil
}

//go:embed assets/RstscopeClient.java
var clientJava string

// OkHttpClient is the article's client: what it does (see
// assets/RstscopeClient.java).
type OkHttpClient struct {
	URL      string
	Wait     time.Duration // sleep between the two requests
	Retry    bool          // retryOnConnectionFailure
	PoolIdle time.Duration // ConnectionPool keep-alive
	LocalIP  string        // source address of its connections
	Method   string        // "GET" (default) or "POST"
}

// CompileOkHttpClient compiles the embedded Java client into the set's
// directory (once per run) and returns the classpath to run it with.
func (s *Set) CompileOkHttpClient(ctx context.Context) (string, error) {
	javac, err := Lookup(Javac)
	if err != nil {
		return "", err
	}
	src, err := s.WriteFile(filepath.Join("java", "RstscopeClient.java"), clientJava)
	if err != nil {
		return "", err
	}
	classes := s.Path("classes")
	jars := strings.Join(okhttpJars, ":")
	out, err := s.Run(ctx, 60*time.Second, javac, "-nowarn", "-d", classes, "-cp", jars, src)
	if err != nil {
		return "", fmt.Errorf("javac: %w", err)
	}
	if out.Exit != 0 {
		return "", fmt.Errorf("javac failed: %s", lastLines(out.Stdout+out.Stderr, 8))
	}
	return classes + ":" + jars, nil
}

// ClientLine is one request of the Java client: a RESULT or an ERROR line.
type ClientLine struct {
	N       int
	Status  int
	Local   string
	Reused  bool
	Retried bool
	Dropped int    // pooled connections found closed and dropped unused
	Error   string // the exception and its causes, as Java prints them
}

// RunOkHttpClient runs the compiled client and parses its lines. info
// holds its other lines (the okhttp version, the sleep).
func (s *Set) RunOkHttpClient(ctx context.Context, classpath string, c OkHttpClient) (lines []ClientLine, info []string, err error) {
	java, err := Lookup(Java)
	if err != nil {
		return nil, nil, err
	}
	if c.Method == "" {
		c.Method = "GET"
	}
	out, err := s.Run(ctx, c.Wait+30*time.Second, java, "-cp", classpath, "RstscopeClient", c.URL,
		strconv.FormatInt(c.Wait.Milliseconds(), 10), strconv.FormatBool(c.Retry),
		strconv.FormatInt(c.PoolIdle.Milliseconds(), 10), c.LocalIP, c.Method)
	if err != nil {
		return nil, nil, err
	}
	for _, l := range strings.Split(out.Stdout, "\n") {
		if cl, ok := parseClientLine(l); ok {
			lines = append(lines, cl)
		} else if l != "" {
			info = append(info, l)
		}
	}
	if len(lines) == 0 {
		return nil, info, fmt.Errorf("the Java client printed no result (exit %d): %s", out.Exit, lastLines(out.Stdout+out.Stderr, 8))
	}
	return lines, info, nil
}

// parseClientLine reads
//
//	RESULT 1 status=200 local=127.0.0.2:41234 reused=false retried=false dropped=0
//	ERROR 2 local=127.0.0.2:41234 reused=true retried=false dropped=0 :: java.io.IOException: ...
func parseClientLine(l string) (ClientLine, bool) {
	var cl ClientLine
	head, errText, hasErr := strings.Cut(l, " :: ")
	f := strings.Fields(head)
	if len(f) < 2 || (f[0] != "RESULT" && f[0] != "ERROR") {
		return cl, false
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		return cl, false
	}
	cl.N = n
	for _, kv := range f[2:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "status":
			cl.Status, _ = strconv.Atoi(v)
		case "local":
			cl.Local = v
		case "reused":
			cl.Reused = v == "true"
		case "retried":
			cl.Retried = v == "true"
		case "dropped":
			cl.Dropped, _ = strconv.Atoi(v)
		}
	}
	if f[0] == "ERROR" {
		cl.Error = "java.io.IOException"
		if hasErr {
			cl.Error = errText
		}
	}
	return cl, true
}

// CurlResult is one curl request.
type CurlResult struct {
	Status  int    // HTTP status, 0 if none
	Local   string // local address of the connection, if one was made
	Error   string // curl's own error line, with the connect failure's reason from -v
	Exit    int    // curl's exit status (7: could not connect)
	Refused bool   // the connect was refused (ECONNREFUSED)
	Body    string // the response body (first 4 KiB)
}

// Curl runs `curl -v` once from localIP and reads what it got.
func (s *Set) Curl(ctx context.Context, url, localIP string) (CurlResult, error) {
	bin, err := Lookup(Curl)
	if err != nil {
		return CurlResult{}, err
	}
	args := []string{bin, "-sS", "-v", "--max-time", "5", "-o", s.Path("curl-body"),
		"-w", "%{http_code} %{local_ip}:%{local_port}\n"}
	if localIP != "" {
		args = append(args, "--interface", localIP)
	}
	out, err := s.Run(ctx, 10*time.Second, append(args, url)...)
	if err != nil {
		return CurlResult{}, err
	}
	var r CurlResult
	r.Exit = out.Exit
	if f := strings.Fields(out.Stdout); len(f) >= 1 {
		r.Status, _ = strconv.Atoi(f[0])
		if len(f) >= 2 && r.Status != 0 {
			r.Local = f[1]
		}
	}
	var reason string
	for _, l := range strings.Split(out.Stderr, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "curl: ("):
			r.Error = l
		case strings.HasPrefix(l, "* connect to ") && strings.Contains(l, " failed: "):
			reason = strings.TrimPrefix(l, "* ")
		}
	}
	if reason != "" && r.Error != "" && !strings.Contains(r.Error, reason) {
		r.Error += " (" + reason + ")"
	}
	r.Refused = strings.Contains(out.Stderr, "Connection refused")
	if b, err := os.ReadFile(s.Path("curl-body")); err == nil {
		if len(b) > 4096 {
			b = b[:4096]
		}
		r.Body = string(b)
	}
	os.Remove(s.Path("curl-body"))
	return r, nil
}
