package keepalive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goServer starts net/http on loopback with the given idle timeout.
func goServer(t *testing.T, idle time.Duration, h http.HandlerFunc) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") }
	}
	srv := &http.Server{Handler: h, IdleTimeout: idle, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String() + "/"
}

func measure(t *testing.T, url string, max time.Duration) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), max+10*time.Second)
	defer cancel()
	r, err := Measure(ctx, url, Options{Max: max, Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// within checks a measured idle time against the configured one: never
// early, and late by at most slack (scheduling, timer granularity).
func within(t *testing.T, got, configured, slack time.Duration) {
	t.Helper()
	if got < configured-20*time.Millisecond || got > configured+slack {
		t.Errorf("measured %v, configured %v (allowed %v late)", got, configured, slack)
	}
	t.Logf("measured %v for configured %v (%+v)", got, configured, got-configured)
}

func TestGoServerFIN(t *testing.T) {
	r := measure(t, goServer(t, 500*time.Millisecond, nil), 5*time.Second)
	if r.How != FIN {
		t.Fatalf("how = %s, want fin", r.How)
	}
	within(t, r.Idle, 500*time.Millisecond, 250*time.Millisecond)
	if r.Announced != 0 || r.KeepAliveHeader != "" {
		t.Errorf("Go announces nothing, got %q", r.KeepAliveHeader)
	}
	if r.Safe != 250*time.Millisecond {
		t.Errorf("safe = %v, want half of the 0.5 s timeout", r.Safe)
	}
	var buf bytes.Buffer
	WriteText(&buf, r)
	for _, want := range []string{"idle timeout: 0.5", "(FIN)", "announced:    no", "okhttp", "new ConnectionPool(5, 250, TimeUnit.MILLISECONDS)", "IdleConnTimeout: 250 * time.Millisecond"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestAnnouncedHeader(t *testing.T) {
	url := goServer(t, 700*time.Millisecond, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Keep-Alive", "timeout=5, max=100")
		fmt.Fprintln(w, "hi")
	})
	r := measure(t, url, 5*time.Second)
	if r.Announced != 5 {
		t.Errorf("announced = %v, want 5", r.Announced)
	}
	within(t, r.Idle, 700*time.Millisecond, 250*time.Millisecond)
	var buf bytes.Buffer
	WriteText(&buf, r)
	if !strings.Contains(buf.String(), "trust the measurement") {
		t.Errorf("an announcement that disagrees should be called out:\n%s", buf.String())
	}
}

// rstServer answers one request, then after idle resets the connection
// (SO_LINGER 0), as HAProxy's nolinger or a load balancer does.
func rstServer(t *testing.T, idle time.Duration) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=1\r\n\r\nok")
		c.SetReadDeadline(time.Now().Add(idle)) // the server's idle timer
		br.ReadByte()
		c.(*net.TCPConn).SetLinger(0)
	}()
	return "http://" + l.Addr().String() + "/"
}

func TestRST(t *testing.T) {
	r := measure(t, rstServer(t, 600*time.Millisecond), 5*time.Second)
	if r.How != RST {
		t.Fatalf("how = %s, want rst", r.How)
	}
	within(t, r.Idle, 600*time.Millisecond, 250*time.Millisecond)
	if r.Announced != 1 {
		t.Errorf("announced = %v", r.Announced)
	}
}

func TestStillOpenAfterMax(t *testing.T) {
	r := measure(t, goServer(t, time.Minute, nil), 400*time.Millisecond)
	if r.How != StillUp {
		t.Fatalf("how = %s (%s), want open", r.How, r.SecondErr)
	}
}

// TestSilentDrop: the server never closes but stops answering, like a path
// whose NAT entry expired: the second request times out.
func TestSilentDrop(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		http.ReadRequest(br) // swallow the second request, never answer
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		br.ReadByte() // until the client gives up and closes
	}()
	ctx := context.Background()
	r, err := Measure(ctx, "http://"+l.Addr().String()+"/", Options{Max: 300 * time.Millisecond, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.How != Silently {
		t.Fatalf("how = %s, want silent", r.How)
	}
}

func TestConnectionClose(t *testing.T) {
	url := goServer(t, time.Minute, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
	})
	r := measure(t, url, 2*time.Second)
	if r.How != NoReuse {
		t.Fatalf("how = %s, want no-reuse", r.How)
	}
}

func TestRefusedIsError(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	if _, err := Measure(context.Background(), addr, Options{Max: time.Second, Timeout: time.Second}); err == nil {
		t.Fatal("want an error for a closed port")
	}
}

// TestNginx measures a real nginx with keepalive_timeout 700ms. CI installs
// nginx; elsewhere the test is skipped.
func TestNginx(t *testing.T) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
			if _, e := os.Stat(p); e == nil {
				bin = p
			}
		}
	}
	if bin == "" {
		t.Skip("nginx is not installed (apt-get install nginx-light): skipping the nginx keep-alive measurement")
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nginx binds it next; a race with another process is unlikely on loopback
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  keepalive_timeout 700ms 1;
  server {
    listen %[2]s;
    location / { return 200 "ok\n"; }
  }
}
`, dir, addr)
	cf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", cf, "-e", filepath.Join(dir, "error.log"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Wait (bounded) until nginx accepts.
	up := false
	for i := 0; i < 50 && !up; i++ {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			up = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !up {
		b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		t.Fatalf("nginx did not start: %s %s", stderr.String(), b)
	}
	r := measure(t, "http://"+addr+"/", 5*time.Second)
	if r.How != FIN {
		t.Fatalf("how = %s, want fin", r.How)
	}
	within(t, r.Idle, 700*time.Millisecond, 300*time.Millisecond)
	if r.Announced != 1 || !strings.HasPrefix(r.Server, "nginx") {
		t.Errorf("announced %v (header %q), server %q", r.Announced, r.KeepAliveHeader, r.Server)
	}
}

func TestAnnouncedTimeout(t *testing.T) {
	for h, want := range map[string]float64{"timeout=5, max=100": 5, "max=3, Timeout = 65": 65, "": 0, "timeout=abc": 0, "timeout=-1": 0} {
		if got := AnnouncedTimeout(h); got != want {
			t.Errorf("%q: %v, want %v", h, got, want)
		}
	}
}

func TestNearestKnownAndSafe(t *testing.T) {
	cases := []struct {
		d     time.Duration
		known float64 // 0 = none
		safe  time.Duration
	}{
		{5003 * time.Millisecond, 5, 4 * time.Second},
		{65 * time.Second, 65, 58 * time.Second},
		{75200 * time.Millisecond, 75, 67 * time.Second},
		{60 * time.Second, 60, 54 * time.Second},
		{42 * time.Second, 0, 37 * time.Second},
		{349 * time.Second, 350, 314 * time.Second},
		{1500 * time.Millisecond, 0, 750 * time.Millisecond},
	}
	for _, c := range cases {
		k := NearestKnown(c.d)
		if (k == nil) != (c.known == 0) || (k != nil && k.Seconds != c.known) {
			t.Errorf("%v: known %+v, want %v", c.d, k, c.known)
		}
		if s := SafePoolIdle(c.d); s != c.safe {
			t.Errorf("%v: safe %v, want %v", c.d, s, c.safe)
		}
	}
}

func TestClientsAtRisk(t *testing.T) {
	cs := Clients(54 * time.Second) // behind an AWS ALB (60 s)
	got := map[string]Client{}
	for _, c := range cs {
		got[c.Stack] = c
	}
	if !got["okhttp"].AtRisk || got["Node undici / fetch"].AtRisk || !got["Python urllib3/requests"].AtRisk {
		t.Errorf("at-risk flags wrong: %+v", cs)
	}
	if got["okhttp"].Set != "new ConnectionPool(5, 54, TimeUnit.SECONDS)" {
		t.Errorf("okhttp line %q", got["okhttp"].Set)
	}
	if _, ok := got["AWS ALB"]; ok {
		t.Error("load balancers are not clients")
	}
}

func TestJSONOneLine(t *testing.T) {
	r := measure(t, goServer(t, 300*time.Millisecond, nil), 3*time.Second)
	var buf bytes.Buffer
	if err := WriteJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	if strings.Count(buf.String(), "\n") != 1 {
		t.Fatalf("want one line: %q", buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["how"] != "fin" || m["idle_s"].(float64) < 0.28 {
		t.Errorf("json = %s", buf.String())
	}
}

func TestCleanServerText(t *testing.T) {
	var buf bytes.Buffer
	WriteText(&buf, &Result{URL: "http://x/", Status: "200 \x1b[31mOK", Server: "evil\x1b]0;t\x07", How: FIN,
		Idle: time.Second, Unsolicited: "HTTP/1.1 408\x1b[2J\r\n", KeepAliveHeader: "timeout=1\x1b"})
	if strings.ContainsAny(buf.String(), "\x1b\x07") {
		t.Errorf("escape reached the terminal: %q", buf.String())
	}
}
