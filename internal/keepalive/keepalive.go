// Package keepalive measures how long a server - or whatever stands in front
// of it: a proxy, a load balancer - keeps an idle HTTP keep-alive connection
// open. That number is what a client's connection pool idle timeout must stay
// below; when it does not, the pool reuses connections the server has already
// closed and requests fail with a reset (the stale-keepalive cause).
//
// The method is the article's, automated: send one request, read the whole
// response, stay idle, and time the server's FIN or RST. No capture and no
// privileges are needed, because the kernel tells a reader both: a FIN is a
// clean end of stream, an RST is ECONNRESET.
package keepalive

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rstscope/rstscope/internal/cause"
)

// DefaultMax is how long Measure stays idle by default.
const DefaultMax = 120 * time.Second

// Options configure Measure.
type Options struct {
	Max      time.Duration // longest idle wait; 0 means DefaultMax
	Timeout  time.Duration // connect, TLS handshake and response each; 0 means 10 s
	Insecure bool          // skip TLS certificate verification
	// Progress, if set, gets a line when the idle wait starts (the wait is
	// long; people should know the tool is not stuck).
	Progress io.Writer
}

// How names the way an idle connection ended.
type How string

// The ways an idle connection can end, as they appear in JSON.
const (
	FIN      How = "fin"       // clean close: end of stream
	RST      How = "rst"       // reset: ECONNRESET
	StillUp  How = "open"      // nothing within Max, and a second request still worked
	Silently How = "silent"    // nothing within Max, but a second request failed: dropped in the path
	NoReuse  How = "no-reuse"  // the server said Connection: close (or HTTP/1.0 without keep-alive)
	Unclear  How = "undecided" // nothing within Max, and the second request could not tell
)

// Result is one measurement.
type Result struct {
	URL    string `json:"url"`
	Remote string `json:"remote"` // the address connected to
	Status string `json:"status"` // e.g. "200 OK"
	Proto  string `json:"proto"`  // e.g. "HTTP/1.1"
	Server string `json:"server,omitempty"`

	KeepAliveHeader string  `json:"keep_alive_header,omitempty"` // the Keep-Alive header, verbatim
	Announced       float64 `json:"announced_s,omitempty"`       // its timeout=, seconds; 0 if none

	How How `json:"how"`
	// Idle is the measured idle timeout: from the last byte of the response
	// to the server's FIN, RST or first unsolicited byte. Valid iff How is
	// FIN or RST.
	Idle time.Duration `json:"-"`
	// IdleSeconds is Idle in seconds, for JSON.
	IdleSeconds float64 `json:"idle_s,omitempty"`
	// Unsolicited is what the server sent on the idle connection before
	// closing it (some servers send a 408 response), truncated.
	Unsolicited string        `json:"unsolicited,omitempty"`
	Max         time.Duration `json:"-"`
	MaxSeconds  float64       `json:"max_s"`
	// SecondErr is, when How is Silently or Unclear, how the request sent
	// after Max failed.
	SecondErr string `json:"second_request_error,omitempty"`

	Known *Known `json:"known,omitempty"` // a well-known timeout close to Idle
	// Safe is the pool idle timeout to recommend: safely below Idle.
	Safe        time.Duration `json:"-"`
	SafeSeconds float64       `json:"safe_pool_idle_s,omitempty"`
	Clients     []Client      `json:"clients,omitempty"`
}

// Known is a well-known idle timeout (cause.KnownIdleTimeouts).
type Known struct {
	Seconds float64 `json:"seconds"`
	Who     string  `json:"who"`
}

// MaxUnsolicited bounds how much of an idle connection's unsolicited data is kept.
const MaxUnsolicited = 512

// Measure runs one measurement against rawURL (http or https; a bare
// HOST:PORT means http). It returns an error only when no response could be
// had at all; everything else is in the Result.
func Measure(ctx context.Context, rawURL string, o Options) (*Result, error) {
	u, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if o.Max <= 0 {
		o.Max = DefaultMax
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	res := &Result{URL: u.String(), Max: o.Max, MaxSeconds: o.Max.Seconds()}

	conn, err := dial(ctx, u, o)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	res.Remote = conn.RemoteAddr().String()

	br := bufio.NewReader(conn)
	resp, err := roundTrip(conn, br, u, o.Timeout)
	if err != nil {
		return nil, fmt.Errorf("request to %s: %w", u.Redacted(), err)
	}
	res.Status, res.Proto, res.Server = resp.Status, resp.Proto, resp.Header.Get("Server")
	res.KeepAliveHeader = resp.Header.Get("Keep-Alive")
	res.Announced = AnnouncedTimeout(res.KeepAliveHeader)
	idleStart := time.Now()

	if resp.Close {
		res.How = NoReuse
		return res, nil
	}
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "%s %s; idle, waiting up to %s for the connection to close...\n", res.Proto, res.Status, o.Max)
	}

	// The idle wait: one Read that returns at the server's FIN (EOF), RST
	// (ECONNRESET), first unsolicited byte, or the deadline.
	conn.SetReadDeadline(idleStart.Add(o.Max))
	buf := make([]byte, MaxUnsolicited)
	n, err := br.Read(buf)
	at := time.Since(idleStart)
	if n > 0 {
		// Unsolicited data (a 408, an HTTP/2 GOAWAY from a confused server):
		// the server acted at this moment; keep reading briefly for its close.
		res.Unsolicited = string(buf[:n])
		conn.SetReadDeadline(time.Now().Add(o.Timeout))
		_, err = io.Copy(io.Discard, io.LimitReader(br, 1<<20))
		if err == nil {
			err = io.EOF
		}
		if isTimeout(err) {
			err = io.EOF // it spoke but did not close: time when it spoke
		}
	}
	switch {
	case errors.Is(err, io.EOF):
		res.How = FIN
	case isReset(err):
		res.How = RST
	case isTimeout(err) && ctx.Err() == nil:
		// Nothing arrived. Either the connection is still up, or something
		// in the path dropped it without telling anyone (NAT, firewall).
		// A second request on it tells which.
		res.How = secondRequest(conn, br, u, o.Timeout, res)
		return res, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	default:
		res.How = RST // any other read error ends the connection like a reset
		res.SecondErr = err.Error()
	}
	res.Idle = at
	res.IdleSeconds = at.Seconds()
	res.Known = NearestKnown(at)
	res.Safe = SafePoolIdle(at)
	res.SafeSeconds = res.Safe.Seconds()
	res.Clients = Clients(res.Safe)
	return res, nil
}

// secondRequest sends a request on a connection that stayed silent for Max.
func secondRequest(conn net.Conn, br *bufio.Reader, u *url.URL, timeout time.Duration, res *Result) How {
	resp, err := roundTrip(conn, br, u, timeout)
	switch {
	case err == nil:
		resp.Body.Close()
		return StillUp
	case isReset(err) || isTimeout(err):
		res.SecondErr = err.Error()
		return Silently
	}
	res.SecondErr = err.Error()
	return Unclear
}

// ParseURL accepts http and https URLs and a bare HOST:PORT (meaning http).
func ParseURL(raw string) (*url.URL, error) {
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("no host in %q", raw)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

func dial(ctx context.Context, u *url.URL, o Options) (net.Conn, error) {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	d := net.Dialer{Timeout: o.Timeout}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" {
		return c, nil
	}
	tc := tls.Client(c, &tls.Config{ServerName: host, InsecureSkipVerify: o.Insecure, NextProtos: []string{"http/1.1"}})
	hctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// roundTrip writes one GET and reads the whole response, so that the idle
// time starts when the server has nothing more to send.
func roundTrip(conn net.Conn, br *bufio.Reader, u *url.URL, timeout time.Duration) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "rstscope-keepalive")
	req.Header.Set("Connection", "keep-alive")
	conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	if err := req.Write(conn); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<20)); err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	resp.Body.Close()
	return resp, nil
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// AnnouncedTimeout returns the timeout= of a Keep-Alive header
// ("timeout=5, max=100") in seconds, or 0.
func AnnouncedTimeout(h string) float64 {
	for _, part := range strings.Split(h, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "timeout") {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f > 0 {
				return f
			}
		}
	}
	return 0
}

// NearestKnown returns the well-known idle timeout within max(0.5 s, 5 %)
// of d, or nil.
func NearestKnown(d time.Duration) *Known {
	s := d.Seconds()
	var best *Known
	bestDiff := 0.0
	for _, k := range cause.KnownIdleTimeouts {
		diff := s - k.Seconds
		if diff < 0 {
			diff = -diff
		}
		if diff <= max(0.5, 0.05*k.Seconds) && (best == nil || diff < bestDiff) {
			best, bestDiff = &Known{Seconds: k.Seconds, Who: k.Who}, diff
		}
	}
	return best
}

// SafePoolIdle is the pool idle timeout to recommend for a server that
// closes after d: below it by a margin of max(1 s, 10 %), so the client
// always closes first even with timer slack and a round trip in flight
// (the keepalive-race cause); half of d when d is too short for that margin.
// Whole seconds from 2 s up, else milliseconds.
func SafePoolIdle(d time.Duration) time.Duration {
	margin := max(time.Second, d/10)
	safe := d - margin
	if d <= 2*margin {
		safe = d / 2
	}
	if safe >= 2*time.Second {
		return safe.Truncate(time.Second)
	}
	return safe.Truncate(10 * time.Millisecond)
}
