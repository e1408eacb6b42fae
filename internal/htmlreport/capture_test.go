package htmlreport

import (
	"bytes"
	"net/netip"
	"os"
	"testing"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/engine"
	"github.com/rstscope/rstscope/internal/pcapio"
	"github.com/rstscope/rstscope/internal/report"
	"github.com/rstscope/rstscope/internal/testcap"
)

// This file builds small captures with internal/testcap and runs the real
// engine on them, so the report is tested on incidents the engine really
// produces.

// capture is a testcap.Capture with the milliseconds-based pkt these tests
// were written with.
type capture struct{ testcap.Capture }

func newCapture() *capture { return &capture{} }

// pkt adds one TCP segment at ms milliseconds after testcap.T0.
func (c *capture) pkt(ms float64, from, to string, flags decode.Flags, seq, ack uint32, win uint16, payload, comment string) {
	c.Add(testcap.Seg{At: ms / 1e3, From: from, To: to, Flags: flags, Seq: seq, Ack: ack, Win: win, Payload: payload, Comment: comment})
}

// bytes writes the capture as pcapng (which keeps packet comments).
func (c *capture) bytes(testing.TB) []byte { return c.Pcapng() }

// analyze runs the engine on a capture and returns the report's Data, as
// `rstscope analyze` would build it.
func analyze(t testing.TB, name string, raw []byte) Data {
	t.Helper()
	rd, err := pcapio.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return runEngine(t, name, rd)
}

func runEngine(t testing.TB, name string, rd *pcapio.Reader) Data {
	t.Helper()
	incs, st, err := engine.Run(rd, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[cause.ID]int{}
	for _, inc := range incs {
		counts[inc.Cause]++
	}
	return Data{Input: report.Input{Name: name, Format: rd.Format()}, Stats: st,
		Incidents: incs, Counts: counts}
}

const (
	fS = decode.SYN
	fA = decode.ACK
	fF = decode.FIN
	fR = decode.RST
	fP = decode.PSH
)

// scenario3 is the article's third scenario: okhttp sends a GET, the pool
// keeps the connection, nginx closes it after its 5 s keepalive_timeout
// (FIN; the client's kernel ACKs), and 6 s after the first request the
// client sends a second GET on it, which nginx's kernel answers with RST.
// target is the second request's path (the XSS test puts a payload there),
// comment the pcapng comment on the RST (the kernel's reason, as watch
// writes it).
func scenario3(target, reason, comment string) *capture {
	cl, sv := "10.211.55.10:52814", "10.211.55.5:80"
	c := newCapture()
	const ci, si = 1000, 5000
	get1 := "GET /test HTTP/1.1\r\nHost: 10.211.55.5\r\nConnection: Keep-Alive\r\nUser-Agent: okhttp/3.14.9\r\n\r\n"
	resp := "HTTP/1.1 " + reason + "\r\nServer: nginx\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"
	get2 := "GET " + target + " HTTP/1.1\r\nHost: 10.211.55.5\r\nConnection: Keep-Alive\r\nUser-Agent: okhttp/3.14.9\r\n\r\n"
	n1, nr := uint32(len(get1)), uint32(len(resp))
	c.pkt(0, cl, sv, fS, ci, 0, 64240, "", "")
	c.pkt(0.2, sv, cl, fS|fA, si, ci+1, 65160, "", "")
	c.pkt(0.3, cl, sv, fA, ci+1, si+1, 502, "", "")
	c.pkt(1, cl, sv, fP|fA, ci+1, si+1, 502, get1, "")
	c.pkt(1.2, sv, cl, fA, si+1, ci+1+n1, 508, "", "")
	c.pkt(3, sv, cl, fP|fA, si+1, ci+1+n1, 508, resp, "")
	c.pkt(3.1, cl, sv, fA, ci+1+n1, si+1+nr, 501, "", "")
	c.pkt(5003, sv, cl, fF|fA, si+1+nr, ci+1+n1, 508, "", "")
	c.pkt(5003.2, cl, sv, fA, ci+1+n1, si+2+nr, 501, "", "")
	c.pkt(6004, cl, sv, fP|fA, ci+1+n1, si+2+nr, 501, get2, "")
	c.pkt(6004.2, sv, cl, fR, si+2+nr, 0, 0, "", comment)
	return c
}

// proxy502 is the article's second scenario: nginx (10.0.0.2) receives
// GET /test, its connect to the dead upstream 10.0.0.3:8080 is refused, and
// it answers 502.
func proxy502() *capture { return proxy502From("10.0.0.2:41766") }

// proxy502From is proxy502 with the proxy's upstream connection opened from
// upstreamSide (another address of the proxy, when not 10.0.0.2).
func proxy502From(upstreamSide string) *capture {
	cl, px, pxu, up := "10.0.0.1:50312", "10.0.0.2:80", upstreamSide, "10.0.0.3:8080"
	c := newCapture()
	get := "GET /test HTTP/1.1\r\nHost: 10.0.0.2\r\n\r\n"
	resp := "HTTP/1.1 502 Bad Gateway\r\nServer: nginx\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
	n, r := uint32(len(get)), uint32(len(resp))
	c.pkt(0, cl, px, fS, 100, 0, 64240, "", "")
	c.pkt(0.1, px, cl, fS|fA, 900, 101, 65160, "", "")
	c.pkt(0.2, cl, px, fA, 101, 901, 502, "", "")
	c.pkt(1, cl, px, fP|fA, 101, 901, 502, get, "")
	c.pkt(1.1, pxu, up, fS, 7000, 0, 64240, "", "")
	c.pkt(1.2, up, pxu, fR|fA, 0, 7001, 0, "", "")
	c.pkt(1.5, px, cl, fP|fA, 901, 101+n, 508, resp, "")
	c.pkt(1.6, cl, px, fA, 101+n, 901+r, 501, "", "")
	c.pkt(2000, cl, px, fF|fA, 101+n, 901+r, 501, "", "")
	c.pkt(2000.1, px, cl, fF|fA, 901+r, 102+n, 508, "", "")
	c.pkt(2000.2, cl, px, fA, 102+n, 902+r, 501, "", "")
	return c
}

// writeMany writes a capture of n connections to path: every refusedEvery-th
// is refused (SYN answered by RST), the others open and close cleanly; the
// article's scenario 3 comes last. Frames are streamed to the file so that
// a 100k-connection capture needs little memory.
func writeMany(t testing.TB, path string, n, refusedEvery int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := pcapio.NewPcapWriter(f, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	flush := func(c *capture) {
		for i := range c.Frames {
			if err := w.WritePacket(&c.Frames[i]); err != nil {
				t.Fatal(err)
			}
		}
		c.Frames = c.Frames[:0]
	}
	sv := "10.9.0.1:443"
	c := newCapture()
	for i := 0; i < n; i++ {
		cl := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), uint16(40000+i%20000)).String()
		ms := float64(i) * 0.05
		if i%refusedEvery == 0 {
			c.pkt(ms, cl, sv, fS, 1, 0, 64240, "", "")
			c.pkt(ms+0.01, sv, cl, fR|fA, 0, 2, 0, "", "")
		} else {
			c.pkt(ms, cl, sv, fS, 1, 0, 64240, "", "")
			c.pkt(ms+0.01, sv, cl, fS|fA, 9, 2, 65160, "", "")
			c.pkt(ms+0.02, cl, sv, fA, 2, 10, 502, "", "")
			c.pkt(ms+0.03, cl, sv, fF|fA, 2, 10, 502, "", "")
			c.pkt(ms+0.04, sv, cl, fF|fA, 10, 3, 508, "", "")
			c.pkt(ms+0.05, cl, sv, fA, 3, 11, 502, "", "")
		}
		flush(c)
	}
	s3 := scenario3("/test", "200 OK", "")
	for i := range s3.Frames {
		s3.Frames[i].Timestamp += int64(float64(n)*0.05*1e6) + 1e9
	}
	flush(s3)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}
