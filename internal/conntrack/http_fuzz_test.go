package conntrack

import (
	"encoding/binary"
	"strings"
	"testing"
)

// sniffPair runs the sniffer and the reference (http_ref_test.go) on the
// same payloads, each with a fresh Conn and storage of its own.
type sniffPair struct {
	fast, ref     Conn
	fastSt, refSt storage
	refIn         refInterner
	num           uint64
}

// feed gives payload to both, capped so that a read past its end panics.
func (sp *sniffPair) feed(t testing.TB, dir Dir, payload []byte) {
	t.Helper()
	sp.num++
	p := payload[:len(payload):len(payload)]
	ts, idle := int64(sp.num)*1000, int64(sp.num)
	sp.fast.sniffHTTP(dir, p, sp.num, ts, idle, &sp.fastSt)
	refSniffHTTP(&sp.ref, dir, p, sp.num, ts, idle, &sp.refSt, &sp.refIn)
	sp.compare(t, dir, payload)
}

// compare fails t unless both wrote the same: every kept message whole,
// the counters of the ring, reqPending and the proxy errors.
func (sp *sniffPair) compare(t testing.TB, dir Dir, payload []byte) {
	t.Helper()
	f, r := &sp.fast, &sp.ref
	if f.HTTPTotal != r.HTTPTotal || f.httpRing != r.httpRing || len(f.http) != len(r.http) {
		t.Fatalf("after %q (dir %d): total %d ring %d kept %d, reference %d %d %d",
			payload, dir, f.HTTPTotal, f.httpRing, len(f.http), r.HTTPTotal, r.httpRing, len(r.http))
	}
	for i := range f.http {
		if f.http[i] != r.http[i] {
			t.Fatalf("after %q (dir %d): message %d\n got %+v\nwant %+v", payload, dir, i, f.http[i], r.http[i])
		}
	}
	if f.reqPending != r.reqPending || f.Ep[0].ProxyErrors != r.Ep[0].ProxyErrors || f.Ep[1].ProxyErrors != r.Ep[1].ProxyErrors {
		t.Fatalf("after %q (dir %d): reqPending %v proxy errors %d/%d, reference %v %d/%d", payload, dir,
			f.reqPending, f.Ep[0].ProxyErrors, f.Ep[1].ProxyErrors, r.reqPending, r.Ep[0].ProxyErrors, r.Ep[1].ProxyErrors)
	}
}

// sniffBoth feeds payload whole in both directions, then every prefix
// (as a snaplen or a segment may cut it anywhere; at most 300 of them,
// the longest last), every suffix of up to 16 bytes less and copies with
// one of the bytes 4 to 23 changed, and compares after each.
func sniffBoth(t testing.TB, payload []byte) {
	var sp sniffPair
	sp.feed(t, FromClient, payload)
	sp.feed(t, FromServer, payload)
	for n := max(0, len(payload)-300); n < len(payload); n++ {
		sp.feed(t, Dir(n&1), payload[:n])
	}
	for k := 1; k <= 16 && k < len(payload); k++ {
		sp.feed(t, Dir(k&1), payload[k:])
	}
	// The same with one byte changed (a target or reason of the same
	// length, which the interner must not take for the first).
	b := append([]byte(nil), payload...)
	for k := 4; k < 24 && k < len(b); k++ {
		b[k]++
		sp.feed(t, Dir(k&1), b)
		b[k]--
	}
}

// sniffSeeds are the shapes the sniffer meets and the corners of its
// parsing; they are also the committed corpus of FuzzSniffHTTP.
var sniffSeeds = []string{
	"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 18:56:26 GMT\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\nhello\n",
	"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026",
	"GET / HTTP/1.1\r\nHost: 127.0.0.5:8088\r\n\r\n",
	"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nConnection: Close\r\n\r\nhello world",
	"PUT /x HTTP/1.0\r\ncontent-length:  42 \r\n\r\n" + strings.Repeat("b", 42),
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 512\r\nKeep-Alive: timeout=5\r\n\r\n",
	"HTTP/1.1 503 Busy\r\nKEEP-ALIVE: max=10, TimeOut=70000000\r\ncOnNeCtIoN: Keep-Alive, CLOSE\r\n\r\nhi",
	"HTTP/1.0 404 Not Found\ncontent-length: 0\nconnection: close\n\n",
	"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 7\r\nServ",
	"HTTP/1.1 204\r\n\r\n",
	"HTTP/1.1 200 \r\n\r\n",
	"HTTP/1.1 2x0 OK\r\n\r\n",
	"HTTP/1.\n 200 OK\r\n\r\n",
	"HTTP/2 200\r\n\r\n",
	"HTTP/1.1 503 Service Unavailable",
	"HTTP/1.1 200 " + strings.Repeat("reason ", 12) + "\r\n\r\n",
	"DELETE /" + strings.Repeat("a", 300) + " HTTP/1.0\r\n\r\n",
	"GET /a b HTTP/1.1 trailing\r\n\r\n",
	"GET /x HTTP/1.10\r\n\r\n",
	"GET  HTTP/1.1\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
	"HEAD /x HTTP/1.1\r\nContent-Length: 9\r\n\r\n",
	"PATCH /p HTTP/1.1\r\nContent\rLength: 5\r\nKeep\rAlive: timeout=3\r\n\r\nbody",
	"CONNECT h:443 HTTP/1.1\r\nContent-Length: 5\u00a0\r\nConnection:\u0085close\r\n\r\n",
	"TRACE / HTTP/1.1\r\nContent-Length: 1234567890123456\r\nContent-Length: 12a\r\nContent-Length: 3\r\n\r\nabc",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"GETS / HTTP/1.1\r\n\r\n",
	"SSH-2.0-OpenSSH_9.6\r\n",
	"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
	"POST / HTTP/1.1\r\nX: y\r\n\r",
	"POST / HTTP/1.1\r\nX: y\r\r\n\r\nbody",
	"POST / HTTP/1.1\r\n\r\n",
	"POST / HTTP/1.1\n\nbody",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n",
	"HTTP/1.1 200 \x00OK\r\nServer: nginx/1.22.1\r\n\r\n", // the key of "OK", 3 bytes long
	"HTTP/1.1 200 OK\r\nHTTP/1.1 200 \x00OK\r\n",
	"HTTP/1.1 200 OK\r\nConnection:abc:close\r\nKeep-Alive:tim:timeout=9\r\n\r\n", // a ':' at 10 and 14
}

func FuzzSniffHTTP(f *testing.F) {
	for _, s := range sniffSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) { sniffBoth(t, payload) })
}

// TestSniffHTTPMatchesRef runs the seeds and variants of them (the case of
// every letter flipped, '\r' dropped, spaces around values doubled) through
// the comparison without the fuzzer.
func TestSniffHTTPMatchesRef(t *testing.T) {
	for _, s := range sniffSeeds {
		variants := []string{s, flipCase(s), strings.ReplaceAll(s, "\r", ""),
			strings.ReplaceAll(s, ": ", ":\t "), strings.ReplaceAll(s, "\r\n", " \r\n"),
			strings.ToUpper(s), strings.ToLower(s)}
		for _, v := range variants {
			sniffBoth(t, []byte(v))
		}
	}
}

func flipCase(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
			b[i] = c ^ 0x20
		}
	}
	return string(b)
}

// The sniffer allocates nothing per packet once its targets and reasons
// are interned.
func TestSniffHTTPNoAllocs(t *testing.T) {
	var c Conn
	var st storage
	payloads := [][]byte{
		[]byte(sniffSeeds[0]), []byte(sniffSeeds[1]), []byte(sniffSeeds[2]), []byte(sniffSeeds[3]),
		[]byte("\x17\x03\x03\x00\x45binarybinary"),
	}
	i := 0
	sniff := func() {
		for _, p := range payloads {
			i++
			c.sniffHTTP(Dir(i&1), p, uint64(i), int64(i), 0, &st)
		}
	}
	for range headHTTP + tailHTTP {
		sniff()
	}
	if n := testing.AllocsPerRun(100, sniff); n != 0 {
		t.Errorf("%v allocations a run", n)
	}
}

// keyOK is the key shortKeyOf gives "OK" (which quickFirstLine returns
// without computing it).
func TestKeyOK(t *testing.T) {
	p := []byte(" OK\r\nServer")
	if k := shortKeyOf(binary.LittleEndian.Uint64(p), 2); k != keyOK {
		t.Errorf("shortKeyOf(\"OK\") = %#x, keyOK %#x", k, uint64(keyOK))
	}
}
