package conntrack

import (
	"bytes"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/rstscope/rstscope/internal/decode"
)

func TestHTTPLines(t *testing.T) {
	long := "/" + strings.Repeat("a", 300)
	tests := []struct {
		name    string
		fromCli bool
		payload string
		want    *HTTPMsg // nil: no message
	}{
		{"GET", true, "GET /index.html?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			&HTTPMsg{Method: "GET", Target: "/index.html?q=1", ContentLength: -1}},
		{"POST with body", true, "POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nConnection: Close\r\n\r\nhello world",
			&HTTPMsg{Method: "POST", Target: "/api", ContentLength: 11, Close: true, BodySeen: 11}},
		{"long target", true, "DELETE " + long + " HTTP/1.0\r\n\r\n",
			&HTTPMsg{Method: "DELETE", Target: long[:200], ContentLength: -1}},
		{"200", false, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nkeep-alive: timeout=15, max=100\r\n\r\nhello",
			&HTTPMsg{Status: 200, Reason: "OK", ContentLength: 5, KeepAliveS: 15, BodySeen: 5}},
		{"404 close", false, "HTTP/1.0 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
			&HTTPMsg{Status: 404, Reason: "Not Found", ContentLength: 0, Close: true}},
		{"headers cut", false, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 7\r\nServ",
			&HTTPMsg{Status: 502, Reason: "Bad Gateway", ContentLength: 7}},
		{"no reason", false, "HTTP/1.1 204\r\n\r\n", &HTTPMsg{Status: 204, ContentLength: -1}},
		{"bad content length", false, "HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n", &HTTPMsg{Status: 200, Reason: "OK", ContentLength: -1}},
		{"HEAD", true, "HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n", &HTTPMsg{Method: "HEAD", Target: "/x", ContentLength: -1}},
		{"OPTIONS", true, "OPTIONS * HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &HTTPMsg{Method: "OPTIONS", Target: "*", ContentLength: 0}},
		{"target with spaces", true, "GET /a b HTTP/1.1\r\n\r\n", &HTTPMsg{Method: "GET", Target: "/a b", ContentLength: -1}},
		{"no newline", false, "HTTP/1.1 503 Service Unavailable", &HTTPMsg{Status: 503, Reason: "Service Unavailable", ContentLength: -1}},
		{"bad status", false, "HTTP/1.1 2x0 OK\r\n\r\n", nil},
		{"HTTP/2 preface", true, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", nil},
		{"not a method", true, "GETS / HTTP/1.1\r\n\r\n", nil},
		{"request line split", true, "GET /very/long/path", nil},
		{"ssh", true, "SSH-2.0-OpenSSH_9.6\r\n", nil},
		{"tls", true, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", nil},
		{"short", true, "GET /", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			v := h.conv(cli, srv, 1, 2, sec)
			v.handshake()
			v.ts += 3 * sec
			v.send(tc.fromCli, PSH|ACK, []byte(tc.payload), 0)
			got := h.flush()[0]
			if tc.want == nil {
				if len(got.HTTP) != 0 || got.HTTPTotal != 0 {
					t.Fatalf("unexpected message %+v", got.HTTP)
				}
				return
			}
			if len(got.HTTP) != 1 {
				t.Fatalf("%d messages", len(got.HTTP))
			}
			w := *tc.want
			w.Dir = FromServer
			if tc.fromCli {
				w.Dir = FromClient
			}
			w.Pkt, w.TS, w.IdleBefore = 4, sec+3*ms+3*sec, 3*sec+ms
			if got.HTTP[0] != w {
				t.Errorf("got  %+v\nwant %+v", got.HTTP[0], w)
			}
			if p := got.Pkts[3]; p.HTTP != 0 {
				t.Errorf("packet 4: HTTP index %d", p.HTTP)
			}
		})
	}
}

// A keep-alive connection with 40 exchanges keeps the first and last
// messages; every kept packet points at its own message, and bodies that
// follow in later segments are counted on the right message.
func TestHTTPKeepAliveRing(t *testing.T) {
	const pairs = 40
	h := newHarness(t, Config{})
	v := h.conv(cli, srv, 1, 2, sec)
	v.handshake()
	for i := range pairs {
		v.c(PSH|ACK, fmt.Sprintf("GET /item/%d HTTP/1.1\r\nHost: x\r\n\r\n", i))
		v.s(PSH|ACK, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 100+i))
		v.s(PSH|ACK, strings.Repeat("b", 100+i)) // the body, in its own segment
		v.c(ACK, "")
		v.ts += 2 * sec
	}
	got := h.flush()[0]
	if got.HTTPTotal != 2*pairs || len(got.HTTP) != headHTTP+tailHTTP {
		t.Fatalf("HTTPTotal %d, kept %d", got.HTTPTotal, len(got.HTTP))
	}
	// Kept: serials 0, 1 and the last tailHTTP; serial s is request or
	// response s%2 of exchange s/2.
	serials := []int{0, 1}
	for s := 2*pairs - tailHTTP; s < 2*pairs; s++ {
		serials = append(serials, s)
	}
	for i, s := range serials {
		m := got.HTTP[i]
		if s%2 == 0 {
			if m.Target != fmt.Sprintf("/item/%d", s/2) || m.Dir != FromClient {
				t.Errorf("message %d: %+v, want request %d", i, m, s/2)
			}
		} else {
			if m.Status != 200 || m.ContentLength != int64(100+s/2) || m.Dir != FromServer {
				t.Errorf("message %d: %+v, want response %d", i, m, s/2)
			}
			if m.BodySeen != m.ContentLength {
				t.Errorf("message %d (response %d): body seen %d, want %d", i, s/2, m.BodySeen, m.ContentLength)
			}
		}
		if s%2 == 0 && s > 0 && m.IdleBefore != 2*sec+ms {
			t.Errorf("request %d: idle before %d", s/2, m.IdleBefore)
		}
	}
	byNum := map[uint64]int{}
	for i, m := range got.HTTP {
		byNum[m.Pkt] = i
	}
	checked := 0
	for _, p := range got.Pkts {
		idx, kept := byNum[p.Num]
		switch {
		case p.HTTP >= 0:
			if int(p.HTTP) >= len(got.HTTP) || got.HTTP[p.HTTP].Pkt != p.Num {
				t.Errorf("packet %d: HTTP index %d points at another message", p.Num, p.HTTP)
			}
			checked++
		case kept:
			t.Errorf("packet %d: HTTP -1 but message %d starts in it", p.Num, idx)
		}
	}
	if checked < tailHTTP/2 {
		t.Errorf("only %d kept packets carry a message index", checked)
	}
	if len(got.Pkts) != headPkts+tailPkts || got.Pkts[0].Num != 1 || got.Pkts[len(got.Pkts)-1].Num != got.TotalPkts {
		t.Errorf("kept packets %d, first %d last %d of %d", len(got.Pkts), got.Pkts[0].Num, got.Pkts[len(got.Pkts)-1].Num, got.TotalPkts)
	}
	for i := 1; i < len(got.Pkts); i++ {
		if got.Pkts[i].Num <= got.Pkts[i-1].Num {
			t.Fatalf("packets out of order at %d", i)
		}
	}
}

// BenchmarkTrackerKeepAlive: 300 keep-alive HTTP connections taking turns;
// one op is one packet (request, response headers, body, ACK).
func BenchmarkTrackerKeepAlive(b *testing.B) {
	const conns = 300
	tr := New(Config{}, func(*Conn) {})
	req := []byte("GET /api/v1/items?page=2 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\n\r\n")
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 512\r\nKeep-Alive: timeout=5\r\n\r\n")
	body := make([]byte, 512)
	type conn struct {
		c, s       netip.AddrPort
		cSeq, sSeq uint32
	}
	cs := make([]conn, conns)
	for i := range cs {
		cs[i] = conn{netip.AddrPortFrom(cli.Addr(), 10000+uint16(i)), srv, uint32(i) * 100003, uint32(i) * 700001}
	}
	var ts int64 = sec
	var num uint64
	send := func(i int, fromC bool, f decode.Flags, payload []byte) {
		c := &cs[i]
		src, dst, seq, ack := c.c, c.s, &c.cSeq, c.sSeq
		if !fromC {
			src, dst, seq, ack = c.s, c.c, &c.sSeq, c.cSeq
		}
		p := pkt(src, dst, f, *seq, ack, payload, 0)
		*seq += p.SegLen()
		num++
		ts += 100_000
		tr.Add(&p, num, ts)
	}
	for i := range conns {
		send(i, true, SYN, nil)
		send(i, false, SYN|ACK, nil)
		send(i, true, ACK, nil)
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		i := n % conns
		switch n / conns % 4 {
		case 0:
			send(i, true, PSH|ACK, req)
		case 1:
			send(i, false, PSH|ACK, resp)
		case 2:
			send(i, false, PSH|ACK, body)
		case 3:
			send(i, true, ACK, nil)
		}
		n++
	}
	b.StopTimer()
	if st := tr.Stats(); st.Conns != conns || st.Retransmits != 0 {
		b.Fatalf("stats %+v", st)
	}
	tr.Flush()
}

// The tracker notes, for the diagnosis, whether a request was waiting for
// its response when each side sent its FIN, and counts proxy errors per
// side, over all messages (not only those kept).
func TestFinPendingAndProxyErrors(t *testing.T) {
	req := "GET / HTTP/1.1\r\n\r\n"
	ok := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	bad := "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
	for _, tc := range []struct {
		name    string
		run     func(v *conv)
		pending bool
		errs    uint32
	}{
		{"closed before answering", func(v *conv) { v.c(PSH|ACK, req); v.s(FIN|ACK, "") }, true, 0},
		{"answered, then closed", func(v *conv) { v.c(PSH|ACK, req); v.s(PSH|ACK, ok); v.s(FIN|ACK, "") }, false, 0},
		{"answer on the FIN", func(v *conv) { v.c(PSH|ACK, req); v.s(FIN|PSH|ACK, ok) }, false, 0},
		{"second request unanswered", func(v *conv) {
			v.c(PSH|ACK, req)
			v.s(PSH|ACK, ok)
			v.c(PSH|ACK, req)
			v.s(FIN|ACK, "")
		}, true, 0},
		{"20 proxy errors", func(v *conv) {
			for i := 0; i < 20; i++ {
				v.c(PSH|ACK, req)
				v.s(PSH|ACK, bad)
			}
			v.s(FIN|ACK, "")
		}, false, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			v := h.conv(cli, srv, 1, 2, sec)
			v.handshake()
			tc.run(v)
			got := h.flush()[0]
			s, c := got.Ep[FromServer], got.Ep[FromClient]
			if s.FinPkt == 0 || s.FinPending != tc.pending || s.ProxyErrors != tc.errs || c.ProxyErrors != 0 {
				t.Errorf("server FIN #%d pending %v proxy errors %d (client %d), want pending %v errors %d",
					s.FinPkt, s.FinPending, s.ProxyErrors, c.ProxyErrors, tc.pending, tc.errs)
			}
		})
	}
}

// methods are the request methods methodOf knows.
var methods = [...]string{"GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"}

// methodOfLoop is the plain definition methodOf must agree with: the first
// space within the first 8 bytes ends a name from methods.
func methodOfLoop(line []byte) string {
	sp := bytes.IndexByte(line[:min(len(line), 8)], ' ')
	if sp < 3 {
		return ""
	}
	for _, name := range methods {
		if len(name) == sp && string(line[:sp]) == name {
			return name
		}
	}
	return ""
}

func TestMethodOf(t *testing.T) {
	var lines []string
	for _, m := range methods {
		lines = append(lines, m+" / HTTP/1.1", m+"  /", m+" ", m, m+"X / HTTP/1.1", strings.ToLower(m)+" /",
			m[:len(m)-1]+" /", m+"\t/", "X"+m+" /")
	}
	lines = append(lines, "GETS /", "PUTT /", "POSTS /", "HEADER /", "PATC /", "HTTP/1.1 200 OK", "PRI * HTTP/2.0", "", "G", "GE ", "P  ")
	n := 0
	for _, l := range lines {
		for cut := 0; cut <= len(l); cut++ { // every prefix, as a segment may end anywhere
			b := []byte(l[:cut])
			if got, want := methodOf(b), methodOfLoop(b); got != want {
				t.Errorf("methodOf(%q) = %q, want %q", b, got, want)
			}
			if methodOfLoop(b) != "" {
				n++
			}
		}
	}
	if n < 2*len(methods) {
		t.Errorf("only %d lines name a method: the cases test nothing", n)
	}
}

// A message slot of the tail ring is reused in place: a GET written over a
// response must keep nothing of it (whole structs compared, so a field
// added to HTTPMsg and not reset fails here).
func TestHTTPRingSlotOverwritten(t *testing.T) {
	h := newHarness(t, Config{})
	v := h.conv(cli, srv, 100, 200, sec)
	v.handshake()
	resp := "HTTP/1.1 503 Busy\r\nContent-Length: 2\r\nConnection: close\r\nKeep-Alive: timeout=7\r\n\r\nhi"
	for i := 0; i < headHTTP+tailHTTP; i++ {
		v.s(PSH|ACK, resp)
	}
	for i := 0; i < tailHTTP; i++ {
		v.c(PSH|ACK, "GET /x HTTP/1.1\r\n\r\n")
	}
	got := h.flush()
	msgs := got[0].HTTP
	if len(msgs) != headHTTP+tailHTTP {
		t.Fatalf("%d messages kept", len(msgs))
	}
	for i, m := range msgs[headHTTP:] {
		m.Pkt, m.TS, m.IdleBefore = 0, 0, 0
		if want := (HTTPMsg{Dir: FromClient, Method: "GET", Target: "/x", ContentLength: -1}); !reflect.DeepEqual(m, want) {
			t.Errorf("ring slot %d: %+v, want %+v", i, m, want)
		}
	}
	if m := msgs[0]; m.Status != 503 || !m.Close || m.KeepAliveS != 7 || m.ContentLength != 2 || m.BodySeen != 2 || m.Reason != "Busy" {
		t.Errorf("the response itself: %+v", m)
	}
}
