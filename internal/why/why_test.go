package why

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rstscope/rstscope/internal/cause"
)

// okhttpTrace is the article's scenario 3, as okhttp 3/4 prints it.
const okhttpTrace = `java.io.IOException: unexpected end of stream on Connection{10.211.55.5:80, proxy=DIRECT hostAddress=/10.211.55.5:80 cipherSuite=none protocol=http/1.1}
	at okhttp3.internal.http1.Http1Codec.readResponseHeaders(Http1Codec.java:208)
	at okhttp3.internal.http.CallServerInterceptor.intercept(CallServerInterceptor.java:88)
	at okhttp3.internal.http.RealInterceptorChain.proceed(RealInterceptorChain.java:147)
	at okhttp3.internal.connection.ConnectInterceptor.intercept(ConnectInterceptor.java:45)
	at okhttp3.RealCall.getResponseWithInterceptorChain(RealCall.java:254)
	at okhttp3.RealCall.execute(RealCall.java:92)
	at com.example.Client.main(Client.java:31)
Caused by: java.io.EOFException: \n not found: limit=0 content=…
	at okio.RealBufferedSource.readUtf8LineStrict(RealBufferedSource.java:237)
	at okhttp3.internal.http1.Http1Codec.readHeaderLine(Http1Codec.java:215)
	at okhttp3.internal.http1.Http1Codec.readResponseHeaders(Http1Codec.java:189)
	... 7 more
`

var table = []struct {
	name   string
	text   string
	top    cause.ID
	target string // HOST:PORT expected, "" = none expected
}{
	{"java reset", `Exception in thread "main" java.net.SocketException: Connection reset
	at java.base/sun.nio.ch.NioSocketImpl.implRead(NioSocketImpl.java:323)
	at java.base/java.net.Socket$SocketInputStream.read(Socket.java:966)`, cause.StaleKeepalive, ""},
	{"java refused", `java.net.ConnectException: Connection refused
	at java.base/sun.nio.ch.Net.pollConnect(Native Method)`, cause.Refused, ""},
	{"okhttp trace", okhttpTrace, cause.StaleKeepalive, "10.211.55.5:80"},
	{"okhttp failed to connect", `java.net.ConnectException: Failed to connect to localhost/127.0.0.1:8080`, cause.Refused, "127.0.0.1:8080"},
	{"go reset", `Get "http://10.0.0.2:8080/api": read tcp 10.0.0.1:53422->10.0.0.2:8080: read: connection reset by peer`, cause.StaleKeepalive, "10.0.0.2:8080"},
	{"go EOF", `Post "https://api.example.com/v1/orders": EOF`, cause.StaleKeepalive, "api.example.com:443"},
	{"go server closed idle", `Post "http://backend:9000/submit": http: server closed idle connection`, cause.StaleKeepalive, "backend:9000"},
	{"go refused", `dial tcp 127.0.0.1:5432: connect: connection refused`, cause.Refused, "127.0.0.1:5432"},
	{"go dial timeout", `dial tcp 10.1.2.3:443: i/o timeout`, cause.UnansweredSYN, "10.1.2.3:443"},
	{"node reset", `Error: read ECONNRESET
    at TCP.onStreamRead (node:internal/stream_base_commons:217:20) {
  errno: -104,
  code: 'ECONNRESET',
  syscall: 'read'
}`, cause.StaleKeepalive, ""},
	{"node hang up", `Error: socket hang up
    at connResetException (node:internal/errors:720:14)
    at Socket.socketOnEnd (node:_http_client:525:23) {
  code: 'ECONNRESET'
}`, cause.StaleKeepalive, ""},
	{"node refused", `Error: connect ECONNREFUSED 127.0.0.1:3000
    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16) {
  errno: -111, code: 'ECONNREFUSED', syscall: 'connect', address: '127.0.0.1', port: 3000 }`, cause.Refused, "127.0.0.1:3000"},
	{"python reset", `requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))`, cause.StaleKeepalive, ""},
	{"python reset errno", `ConnectionResetError: [Errno 104] Connection reset by peer`, cause.StaleKeepalive, ""},
	{"python remote disconnected", `requests.exceptions.ConnectionError: ('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))`, cause.StaleKeepalive, ""},
	{"python refused", `requests.exceptions.ConnectionError: HTTPConnectionPool(host='localhost', port=8000): Max retries exceeded with url: / (Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f>: Failed to establish a new connection: [Errno 111] Connection refused'))`, cause.Refused, "localhost:8000"},
	{"curl 7", `curl: (7) Failed to connect to localhost port 8080 after 0 ms: Connection refused`, cause.Refused, "localhost:8080"},
	{"curl 7 old", `curl: (7) Failed to connect to 10.211.55.5 port 80: Connection refused`, cause.Refused, "10.211.55.5:80"},
	{"curl 52", `curl: (52) Empty reply from server`, cause.UpstreamFailure, ""},
	{"curl 56", `curl: (56) Recv failure: Connection reset by peer`, cause.UnreadDataClose, ""},
	{"nginx prematurely", `2024/03/01 12:00:01 [error] 31#31: *7 upstream prematurely closed connection while reading response header from upstream, client: 172.17.0.1, server: localhost, request: "GET /test HTTP/1.1", upstream: "http://10.211.55.10:8080/test", host: "localhost"`, cause.UpstreamFailure, "10.211.55.10:8080"},
	{"nginx refused", `2024/03/01 12:00:02 [error] 31#31: *9 connect() failed (111: Connection refused) while connecting to upstream, client: 10.211.55.10, server: , request: "GET /test HTTP/1.1", upstream: "http://10.211.55.10:8080/test", host: "10.211.55.5"`, cause.UpstreamFailure, "10.211.55.10:8080"},
	{"nginx recv 104", `2024/03/01 12:00:03 [error] 31#31: *11 recv() failed (104: Connection reset by peer) while reading response header from upstream, client: 127.0.0.1, server: _, request: "POST /api HTTP/1.1", upstream: "http://[::1]:9000/api", host: "example.com"`, cause.UpstreamFailure, "::1:9000"},
	{"envoy termination", `upstream connect error or disconnect/reset before headers. reset reason: connection termination`, cause.UpstreamFailure, ""},
	{"envoy failure", `upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: delayed connect error: 111`, cause.UpstreamFailure, ""},
	{"apache", `org.apache.http.NoHttpResponseException: api.example.com:443 failed to respond`, cause.StaleKeepalive, ""},
	{"java connect timeout", `java.net.SocketTimeoutException: connect timed out`, cause.UnansweredSYN, ""},
	{"broken pipe", `write tcp 10.0.0.1:4000->10.0.0.2:80: write: broken pipe`, cause.DataAfterClose, "10.0.0.2:80"},
}

func TestTable(t *testing.T) {
	for _, c := range table {
		t.Run(c.name, func(t *testing.T) {
			r := Analyze(c.text)
			if len(r.Recognised) == 0 {
				t.Fatalf("not recognised")
			}
			if r.Top() != c.top {
				t.Errorf("top = %s, want %s; causes %+v", r.Top(), c.top, r.Causes)
			}
			for _, cand := range r.Causes {
				if !cause.Valid(cand.ID) {
					t.Errorf("cause %q is not in the catalogue", cand.ID)
				}
				if cand.Why == "" || cand.Title == "" {
					t.Errorf("cause %s lacks why/title", cand.ID)
				}
			}
			if c.target != "" {
				if r.Target == nil {
					t.Errorf("no target, want %s", c.target)
				} else if got := r.Target.Host + ":" + itoa(r.Target.Port); got != c.target {
					t.Errorf("target %s, want %s", got, c.target)
				}
			}
			if !strings.HasPrefix(r.Capture.Command, "sudo tcpdump -i any -nn") || r.Capture.Where == "" {
				t.Errorf("capture %+v", r.Capture)
			}
			if len(r.Next) == 0 {
				t.Error("no next step")
			}
		})
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func TestNextSteps(t *testing.T) {
	r := Analyze(okhttpTrace)
	want := []string{"rstscope keepalive http://10.211.55.5:80/", "rstscope analyze rst.pcap", "rstscope lab stale-keepalive"}
	var got []string
	for _, s := range r.Next {
		got = append(got, s.Command)
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("next = %q, want %q", got, want)
	}
	if r.Capture.Command != "sudo tcpdump -i any -nn -s 0 -w rst.pcap 'tcp port 80 and host 10.211.55.5'" {
		t.Errorf("capture = %q", r.Capture.Command)
	}
	if len(r.Recognised) != 2 {
		t.Errorf("okhttp trace should match both okhttp and okio rules: %+v", r.Recognised)
	}

	r = Analyze(table[21].text) // nginx refused
	if !strings.Contains(r.Capture.Where, "proxy host") || r.Next[0].Command != "rstscope probe 10.211.55.10:8080" || !r.Target.Upstream {
		t.Errorf("nginx: capture %+v next %+v", r.Capture, r.Next)
	}
	// The specific nginx rule supersedes the generic "connection refused".
	for _, g := range r.Recognised {
		if g.Name == "connection refused" {
			t.Error("generic rule not superseded")
		}
	}
}

func TestUnrecognised(t *testing.T) {
	r := Analyze("everything is fine, nothing happened")
	if len(r.Recognised) != 0 || len(r.Causes) != 0 || r.Top() != "" {
		t.Fatalf("recognised something: %+v", r)
	}
	var buf bytes.Buffer
	WriteText(&buf, r)
	if !strings.Contains(buf.String(), "Not recognised") || !strings.Contains(buf.String(), "rstscope analyze") {
		t.Errorf("text:\n%s", buf.String())
	}
}

func TestHostileInput(t *testing.T) {
	// Shell metacharacters never reach the suggested commands; escapes never reach the terminal.
	r := Analyze("Get \"http://evil;rm -rf ~/:80/\": EOF\x1b]0;owned\x07 connection reset; curl: (7) Failed to connect to $(reboot) port 1")
	if r.Target != nil && strings.ContainsAny(r.Target.Host, ";$() ") {
		t.Errorf("unsafe host %q", r.Target.Host)
	}
	var buf bytes.Buffer
	WriteText(&buf, r)
	if strings.ContainsAny(buf.String(), "\x1b\x07") {
		t.Errorf("escape reached the terminal: %q", buf.String())
	}
	for _, s := range r.Next {
		if strings.ContainsAny(s.Command, ";$()`") {
			t.Errorf("unsafe command %q", s.Command)
		}
	}
	if testing.Short() {
		return
	}
	// Huge input is bounded.
	big := strings.Repeat("x", 2*MaxInput) + "Connection reset"
	if r := Analyze(big); len(r.Recognised) != 0 {
		t.Errorf("text beyond MaxInput was examined")
	}
}

func TestJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJSON(&buf, Analyze(table[0].text)); err != nil {
		t.Fatal(err)
	}
	if strings.Count(buf.String(), "\n") != 1 {
		t.Fatalf("want one line: %q", buf.String())
	}
	var m struct {
		Causes []struct{ ID string } `json:"causes"`
	}
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m.Causes[0].ID != "stale-keepalive" {
		t.Errorf("json %s: %v", buf.String(), err)
	}
}

// Every rule names real causes and has a fit sentence for each.
func TestRulesUseCatalogue(t *testing.T) {
	names := map[string]bool{}
	for _, r := range Rules {
		if names[r.Name] {
			t.Errorf("duplicate rule name %q", r.Name)
		}
		names[r.Name] = true
		for _, w := range r.Causes {
			if !cause.Valid(w.ID) || w.Fit == "" || w.Weight <= 0 {
				t.Errorf("rule %q: bad cause %+v", r.Name, w)
			}
		}
	}
	for _, r := range Rules {
		for _, s := range r.Supersedes {
			if !names[s] {
				t.Errorf("rule %q supersedes unknown rule %q", r.Name, s)
			}
		}
	}
}
