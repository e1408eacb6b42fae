package diagnose_test

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/engine"
	"github.com/rstscope/rstscope/internal/pcapio"
	. "github.com/rstscope/rstscope/internal/testcap"
)

func analyze(t *testing.T, c *Capture) []*diagnose.Incident {
	t.Helper()
	rd, err := pcapio.NewReader(bytes.NewReader(c.Pcapng()))
	if err != nil {
		t.Fatal(err)
	}
	incs, _, err := engine.Run(rd, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return incs
}

func only(t *testing.T, incs []*diagnose.Incident, want cause.ID, resetBy string) *diagnose.Incident {
	t.Helper()
	var got []string
	var found *diagnose.Incident
	for _, inc := range incs {
		got = append(got, string(inc.Cause)+"/"+inc.ResetBy)
		if inc.Cause == want {
			found = inc
		}
	}
	if found == nil || len(incs) != 1 {
		t.Fatalf("incidents %v, want exactly one %s", got, want)
	}
	if found.ResetBy != resetBy {
		t.Errorf("reset by %s, want %s", found.ResetBy, resetBy)
	}
	if found.Summary == "" || found.Explanation == "" || len(found.Advice) == 0 {
		t.Errorf("incident lacks summary, explanation or advice: %+v", found)
	}
	return found
}

const cli, srv = "10.0.0.1:40000", "10.0.0.2:80"

var (
	req  = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	rq   = uint32(len(req))
	rs   = uint32(len(resp))
)

// exchange adds a handshake and one request/response.
func exchange(c *Capture) {
	c.Handshake(0, cli, srv)
	c.Add(Seg{At: 0.01, From: cli, To: srv, Flags: PA, Seq: 1001, Ack: 5001, Win: 512, Payload: req, TS: true})
	c.Add(Seg{At: 0.02, From: srv, To: cli, Flags: PA, Seq: 5001, Ack: 1001 + rq, Win: 512, Payload: resp, TS: true})
	c.Add(Seg{At: 0.03, From: cli, To: srv, Flags: A, Seq: 1001 + rq, Ack: 5001 + rs, Win: 512, TS: true})
}

func TestRefused(t *testing.T) {
	var c Capture
	c.Add(Seg{At: 0, From: cli, To: srv, Flags: S, Seq: 1000, Win: 65535})
	c.Add(Seg{At: 0.0001, From: srv, To: cli, Flags: RA, Seq: 0, Ack: 1001})
	inc := only(t, analyze(t, &c), cause.Refused, "server")
	if inc.Conn.State != "REJ" {
		t.Errorf("conn_state %s, want REJ", inc.Conn.State)
	}
}

func TestStaleKeepalive(t *testing.T) {
	inc := only(t, analyze(t, Scenario3()), cause.StaleKeepalive, "server")
	if got := inc.Facts["server_idle_timeout_s"].(float64); got < 4.99 || got > 5.01 {
		t.Errorf("server_idle_timeout_s %v, want 5.0", got)
	}
	if !strings.Contains(inc.Advice[0], "5.0 s") {
		t.Errorf("first advice does not name the measured timeout: %s", inc.Advice[0])
	}
	if len(inc.Packets) < 3 {
		t.Errorf("packets %v: want FIN, ACK, request, RST", inc.Packets)
	}
}

// The client's request does not acknowledge the server's FIN: they crossed.
func TestKeepaliveRaceCrossed(t *testing.T) {
	var c Capture
	exchange(&c)
	fin := 5001 + rs
	c.Add(Seg{At: 5.03, From: srv, To: cli, Flags: FA, Seq: fin, Ack: 1001 + rq, Win: 512, TS: true})
	c.Add(Seg{At: 5.0301, From: cli, To: srv, Flags: PA, Seq: 1001 + rq, Ack: fin, Win: 512, Payload: req, TS: true})
	c.Add(Seg{At: 5.0302, From: srv, To: cli, Flags: R, Seq: fin + 1})
	only(t, analyze(t, &c), cause.KeepaliveRace, "server")
}

// The server closes right after answering (no idle time): data after close.
func TestDataAfterClose(t *testing.T) {
	var c Capture
	exchange(&c)
	fin := 5001 + rs
	c.Add(Seg{At: 0.0301, From: srv, To: cli, Flags: FA, Seq: fin, Ack: 1001 + rq, Win: 512, TS: true})
	c.Add(Seg{At: 0.0302, From: cli, To: srv, Flags: A, Seq: 1001 + rq, Ack: fin + 1, Win: 512, TS: true})
	c.Add(Seg{At: 0.05, From: cli, To: srv, Flags: PA, Seq: 1001 + rq, Ack: fin + 1, Win: 512, Payload: req, TS: true})
	c.Add(Seg{At: 0.0501, From: srv, To: cli, Flags: R, Seq: fin + 1})
	only(t, analyze(t, &c), cause.DataAfterClose, "server")
}

// A bare reply RST to data on an established connection: the peer has no state.
func TestNoConnection(t *testing.T) {
	var c Capture
	exchange(&c)
	c.Add(Seg{At: 400, From: cli, To: srv, Flags: PA, Seq: 1001 + rq, Ack: 5001 + rs, Win: 512, Payload: req, TS: true})
	c.Add(Seg{At: 400.001, From: srv, To: cli, Flags: R, Seq: 5001 + rs})
	inc := only(t, analyze(t, &c), cause.NoConnection, "server")
	if _, ok := inc.Facts["idle_gap_s"]; !ok {
		t.Errorf("a 400 s idle gap should be a fact: %v", inc.Facts)
	}
}

// An RST whose TTL is unlike the server's own packets.
func TestMiddlebox(t *testing.T) {
	var c Capture
	exchange(&c)
	c.Add(Seg{At: 1, From: srv, To: cli, Flags: RA, Seq: 5001 + rs, Ack: 1001 + rq, Win: 0, TTL: 250})
	inc := only(t, analyze(t, &c), cause.Middlebox, "server")
	if !strings.Contains(inc.Facts["middlebox_evidence"].(string), "TTL 250") {
		t.Errorf("evidence: %v", inc.Facts["middlebox_evidence"])
	}
}

// The server answered and reset with its window at full size: abortive close.
func TestAbortiveClose(t *testing.T) {
	var c Capture
	exchange(&c)
	c.Add(Seg{At: 0.04, From: srv, To: cli, Flags: RA, Seq: 5001 + rs, Ack: 1001 + rq, Win: 512, TS: true})
	inc := only(t, analyze(t, &c), cause.AbortiveClose, "server")
	if len(inc.Alternatives) == 0 {
		t.Error("unread-data-close should be named as the less likely alternative")
	}
}

// An upload answered early (413) and the server resets with the body unread.
func TestUnreadDataClose(t *testing.T) {
	var c Capture
	c.Handshake(0, cli, srv)
	up := "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("x", 1000)
	u := uint32(len(up))
	r413 := "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n"
	c.Add(Seg{At: 0.01, From: cli, To: srv, Flags: PA, Seq: 1001, Ack: 5001, Win: 512, Payload: up, TS: true})
	c.Add(Seg{At: 0.02, From: srv, To: cli, Flags: PA, Seq: 5001, Ack: 1001 + u, Win: 500, Payload: r413, TS: true})
	c.Add(Seg{At: 0.021, From: cli, To: srv, Flags: PA, Seq: 1001 + u, Ack: 5001 + uint32(len(r413)), Win: 512, Payload: strings.Repeat("y", 1400), TS: true})
	c.Add(Seg{At: 0.022, From: srv, To: cli, Flags: RA, Seq: 5001 + uint32(len(r413)), Ack: 1001 + u + 1400, Win: 300, TS: true})
	inc := only(t, analyze(t, &c), cause.UnreadDataClose, "server")
	if inc.Facts["content_length"] != int64(100000) {
		t.Errorf("content_length fact %v", inc.Facts["content_length"])
	}
}

// Handshake done, then the server resets without sending anything.
func TestListenOverflow(t *testing.T) {
	var c Capture
	c.Handshake(0, cli, srv)
	c.Add(Seg{At: 0.0021, From: cli, To: srv, Flags: PA, Seq: 1001, Ack: 5001, Win: 512, Payload: req, TS: true})
	c.Add(Seg{At: 0.0022, From: srv, To: cli, Flags: R, Seq: 5001})
	only(t, analyze(t, &c), cause.ListenOverflow, "server")
}

func TestUnansweredSYN(t *testing.T) {
	var c Capture
	for i, at := range []float64{0, 1, 3} {
		_ = i
		c.Add(Seg{At: at, From: cli, To: srv, Flags: S, Seq: 1000, Win: 65535})
	}
	inc := only(t, analyze(t, &c), cause.UnansweredSYN, "other")
	if inc.Kind != diagnose.KindNoAnswer {
		t.Errorf("kind %s", inc.Kind)
	}
}

// A 502 on the client's connection is tied to the upstream connection that
// was refused while the proxy handled the request.
func TestUpstreamFailure(t *testing.T) {
	var c Capture
	client, proxy, upstream := "10.0.0.1:40000", "10.0.0.5:80", "10.0.0.10:8080"
	c.Handshake(0, client, proxy)
	c.Add(Seg{At: 0.01, From: client, To: proxy, Flags: PA, Seq: 1001, Ack: 5001, Win: 512, Payload: req, TS: true})
	c.Add(Seg{At: 0.011, From: "10.0.0.5:50000", To: upstream, Flags: S, Seq: 7000, Win: 65535})
	c.Add(Seg{At: 0.0111, From: upstream, To: "10.0.0.5:50000", Flags: RA, Ack: 7001})
	bad := "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
	c.Add(Seg{At: 0.012, From: proxy, To: client, Flags: PA, Seq: 5001, Ack: 1001 + rq, Win: 512, Payload: bad, TS: true})
	incs := analyze(t, &c)
	var he, ref *diagnose.Incident
	for _, inc := range incs {
		switch inc.Cause {
		case cause.UpstreamFailure:
			he = inc
		case cause.Refused:
			ref = inc
		}
	}
	if he == nil || ref == nil {
		t.Fatalf("want upstream-failure and refused, got %d incidents", len(incs))
	}
	if len(he.Related) != 1 || he.Related[0] != ref.Conn.UID {
		t.Errorf("502 related %v, want the refused upstream connection %s", he.Related, ref.Conn.UID)
	}
	if len(ref.Related) != 1 || ref.Related[0] != he.Conn.UID {
		t.Errorf("refused related %v, want the client connection", ref.Related)
	}
	if he.Kind != diagnose.KindHTTPError || he.Facts["status"] != 502 {
		t.Errorf("kind %s status %v", he.Kind, he.Facts["status"])
	}
}

// A 502 whose upstream connection was closed (FIN) while the proxy's
// request was still unanswered is tied to it; an upstream that answered
// before closing is not a candidate.
func TestUpstreamClosedBeforeAnswer(t *testing.T) {
	for _, answered := range []bool{false, true} {
		var c Capture
		client, proxy, upstream, leg := "10.0.0.1:40000", "10.0.0.5:80", "10.0.0.10:8080", "10.0.0.5:50000"
		c.Handshake(0, client, proxy)
		c.Add(Seg{At: 0.01, From: client, To: proxy, Flags: PA, Seq: 1001, Ack: 5001, Win: 512, Payload: req, TS: true})
		c.Handshake(0.011, leg, upstream)
		c.Add(Seg{At: 0.015, From: leg, To: upstream, Flags: PA, Seq: 1001, Ack: 5001, Win: 512, Payload: req, TS: true})
		fin := uint32(5001)
		if answered {
			c.Add(Seg{At: 0.016, From: upstream, To: leg, Flags: PA, Seq: 5001, Ack: 1001 + rq, Win: 512, Payload: resp, TS: true})
			fin += rs
		}
		c.Add(Seg{At: 0.017, From: upstream, To: leg, Flags: FA, Seq: fin, Ack: 1001 + rq, Win: 512, TS: true})
		bad := "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
		c.Add(Seg{At: 0.018, From: proxy, To: client, Flags: PA, Seq: 5001, Ack: 1001 + rq, Win: 512, Payload: bad, TS: true})
		var he *diagnose.Incident
		for _, inc := range analyze(t, &c) {
			if inc.Kind == diagnose.KindHTTPError {
				he = inc
			}
		}
		if he == nil {
			t.Fatalf("answered %v: no proxy error", answered)
		}
		how, _ := he.Facts["upstream_failure"].(string)
		if answered && len(he.Related) != 0 {
			t.Errorf("the upstream answered, yet the 502 is tied to it (%s)", how)
		}
		if !answered && (len(he.Related) != 1 || !strings.Contains(how, "closed by the upstream before it answered")) {
			t.Errorf("502 related %v (%q), want the upstream connection closed before answering", he.Related, how)
		}
	}
}

// A kernel reason in a packet comment is shown and settles a close call.
func TestKernelReasonComment(t *testing.T) {
	var c Capture
	exchange(&c)
	c.Add(Seg{At: 0.04, From: srv, To: cli, Flags: RA, Seq: 5001 + rs, Ack: 1001 + rq, Win: 512, TS: true,
		Comment: "rstscope: kernel tcp_send_reset reason=TCP_ABORT_ON_CLOSE state=TCP_CLOSE"})
	inc := only(t, analyze(t, &c), cause.UnreadDataClose, "server")
	if inc.KernelReason != "TCP_ABORT_ON_CLOSE" || inc.Facts["kernel_agrees"] != true {
		t.Errorf("kernel reason %q agrees %v", inc.KernelReason, inc.Facts["kernel_agrees"])
	}
}

// Every reset in the captures made by others is explained, and none is
// "unknown" (their packets allow a verdict).
func TestSharedCaptures(t *testing.T) {
	files, _ := filepath.Glob("../../../shared/captures/zeek/*.pcap*")
	if len(files) == 0 {
		t.Skip("no shared captures at ../shared/captures beside the repo")
	}
	total := 0
	for _, f := range files {
		rd, err := pcapio.Open(f, nil)
		if err != nil {
			t.Fatal(err)
		}
		incs, st, _ := engine.Run(rd, engine.Options{})
		rd.Close()
		resets := 0
		for _, n := range st.Incidents {
			resets += n
		}
		for _, inc := range incs {
			total++
			if inc.Cause == cause.Unknown {
				t.Errorf("%s: %s %s -> %s is unknown: %v", filepath.Base(f), inc.Conn.UID, inc.Conn.Client, inc.Conn.Server, inc.Facts)
			}
		}
		t.Logf("%s: %v", filepath.Base(f), st.Incidents)
	}
	if total == 0 {
		t.Error("the shared captures hold resets; none was found")
	}
}

// An RST carrying a diagnostic payload has it decoded into the facts, with
// control characters removed.
func TestRSTDiagnosticPayload(t *testing.T) {
	for _, c := range []struct{ payload, want string }{
		{"\xF3\x17connection idle too long\x1b[2J", "RST diagnostic payload: connection idle too long[2J"},
		{"\x33\xAA\x00\x0e\x00\x01", "RST diagnostic payload (compact form, magic 0x33AA): 00 0e 00 01"},
	} {
		var cap Capture
		exchange(&cap)
		cap.Add(Seg{At: 0.04, From: srv, To: cli, Flags: RA, Seq: 5001 + rs, Ack: 1001 + rq, Win: 512, TS: true, Payload: c.payload})
		incs := analyze(t, &cap)
		if len(incs) != 1 || incs[0].Facts["rst_diagnostic"] != c.want {
			t.Errorf("payload %q: facts %v", c.payload, incs[0].Facts["rst_diagnostic"])
		}
	}
}

// Data sent just before the server's FIN (no idle time), which the FIN does not
// acknowledge, reaches a closed socket: data-after-close, not an abort.
// (Zeek's ftp-auth-tls trace ends this way.)
func TestDataCrossingFIN(t *testing.T) {
	var c Capture
	exchange(&c)
	fin := 5001 + rs
	c.Add(Seg{At: 0.0301, From: cli, To: srv, Flags: PA, Seq: 1001 + rq, Ack: fin, Win: 512, Payload: "QUIT\r\n", TS: true})
	c.Add(Seg{At: 0.030104, From: srv, To: cli, Flags: FA, Seq: fin, Ack: 1001 + rq, Win: 512, TS: true})
	c.Add(Seg{At: 0.030163, From: srv, To: cli, Flags: R, Seq: fin + 1})
	inc := only(t, analyze(t, &c), cause.DataAfterClose, "server")
	if !strings.Contains(inc.Summary, "crossed") {
		t.Errorf("summary should say the data crossed the FIN: %s", inc.Summary)
	}
}
