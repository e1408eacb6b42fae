package realpeer

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestProcNetAddr(t *testing.T) {
	got, err := procNetAddr("127.0.0.5:80")
	if err != nil || got != "0500007F:0050" {
		t.Fatalf("procNetAddr = %q, %v; want 0500007F:0050", got, err)
	}
	if _, err := procNetAddr("[::1]:80"); err == nil {
		t.Error("IPv6 accepted")
	}
}

// WaitListen sees a listener from the kernel's table without connecting.
func TestWaitListen(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Skip(err)
	}
	defer ln.Close()
	if err := WaitListen(context.Background(), nil, ln.Addr().String(), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	err = WaitListen(context.Background(), nil, "127.0.0.1:"+strconv.Itoa(port), 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("closed port: %v", err)
	}
}

func TestParseClientLine(t *testing.T) {
	cl, ok := parseClientLine("ERROR 2 local=127.0.0.2:4100 reused=true retried=false dropped=1 :: java.io.IOException: unexpected end of stream on Connection{127.0.0.5:80, proxy=DIRECT hostAddress=/127.0.0.5:80 cipherSuite=none protocol=http/1.1} (caused by java.io.EOFException: \\n not found: limit=0 content=…)")
	if !ok || cl.N != 2 || cl.Dropped != 1 || !cl.Reused || cl.Retried || cl.Local != "127.0.0.2:4100" ||
		!strings.HasPrefix(cl.Error, "java.io.IOException: unexpected end of stream on Connection{") {
		t.Errorf("ERROR line: %+v %v", cl, ok)
	}
	cl, ok = parseClientLine("RESULT 1 status=200 local=127.0.0.2:4100 reused=false retried=true dropped=0")
	if !ok || cl.N != 1 || cl.Status != 200 || cl.Reused || !cl.Retried || cl.Error != "" {
		t.Errorf("RESULT line: %+v %v", cl, ok)
	}
	if _, ok := parseClientLine("SLEEP 3000"); ok {
		t.Error("SLEEP parsed as a result")
	}
}

func TestNginxConf(t *testing.T) {
	c := NginxConfig{Listen: "127.0.0.5:80", KeepaliveTimeout: 5 * time.Second, Upstream: "127.0.0.10:8080", UpstreamKeepalive: 16, ProxyBind: "127.0.0.5"}
	conf := c.Conf("/tmp/x", map[string]bool{"uwsgi": true})
	for _, want := range []string{"daemon off;", "master_process off;", "pid /tmp/x/nginx.pid;", "error_log /tmp/x/error.log info;",
		"keepalive_timeout 5000ms;", "server 127.0.0.10:8080;", "keepalive 16;", "proxy_http_version 1.1;",
		"proxy_pass http://web_server;", "listen 127.0.0.5:80;", "proxy_temp_path /tmp/x/tmp/proxy;", "scgi_temp_path"} {
		if !strings.Contains(conf, want) {
			t.Errorf("nginx.conf lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "uwsgi_temp_path") {
		t.Error("temp path of a module the build lacks")
	}
}

// Missing names the program and the Debian package to install.
func TestMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := Missing(Node)
	if _, statErr := os.Stat("/usr/sbin/node"); statErr == nil {
		t.Skip("node in /usr/sbin")
	}
	if err == nil || !strings.Contains(err.Error(), "node") || !strings.Contains(err.Error(), "apt-get install nodejs") {
		t.Errorf("Missing(node) = %v", err)
	}
}

// Close stops the processes and removes the directory; a directory whose
// owner is gone is swept by the next NewSet.
func TestSetClose(t *testing.T) {
	s, err := NewSet()
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Start(context.Background(), "sleep", "/bin/sh", "-c", "sleep 30")
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Run(context.Background(), 5*time.Second, "/bin/sh", "-c", "echo hi; exit 3")
	if err != nil || out.Exit != 3 || out.Stdout != "hi\n" {
		t.Errorf("Run = %+v, %v", out, err)
	}
	start := time.Now()
	s.Close()
	if !p.Exited() || time.Since(start) > 3*time.Second {
		t.Error("process not stopped")
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("directory left: %v", err)
	}

	stale, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	// A pid far above pid_max's default range: no such process.
	os.WriteFile(stale+"/owner", []byte("2147483646"), 0o644)
	s2, err := NewSet()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		os.RemoveAll(stale)
		t.Error("stale directory not swept")
	}
	if _, err := os.Stat(s2.Dir); err != nil {
		t.Errorf("own directory swept: %v", err)
	}
}
