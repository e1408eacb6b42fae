package labpeer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proxy defaults, nginx's where the lab does not need shorter ones.
const (
	DefaultUpstreamKeepAlive   = 16               // `keepalive 16;` as in the seed article
	DefaultUpstreamIdleTimeout = 60 * time.Second // upstream keepalive_timeout
	DefaultProxyTimeout        = 10 * time.Second // proxy_connect/read/send_timeout (nginx: 60 s)
)

// ProxyConfig configures a Proxy.
type ProxyConfig struct {
	Listen   string // address for clients, e.g. "127.0.0.5:80"
	Upstream string // the one upstream server, e.g. "127.0.0.10:8080"
	// KeepAlive is the number of idle upstream connections kept (nginx
	// `keepalive N;`). 0 means DefaultUpstreamKeepAlive; negative disables
	// the cache (a new upstream connection per request).
	KeepAlive int
	// IdleTimeout is the client-side keepalive_timeout; 0 means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// UpstreamIdleTimeout closes an idle cached upstream connection (nginx's
	// upstream keepalive_timeout); 0 means DefaultUpstreamIdleTimeout.
	UpstreamIdleTimeout time.Duration
	// Timeout bounds connecting to, writing to and reading from the
	// upstream; 0 means DefaultProxyTimeout. Expiry gives 504.
	Timeout time.Duration
	Log     io.Writer // nginx-like error-log lines; nil discards them
}

// Proxy is a reverse proxy to one upstream that behaves like nginx with
// `upstream { server U; keepalive N; }`, `proxy_http_version 1.1` and
// `proxy_set_header Connection ""`:
//
//   - idle upstream connections are cached (most recently used first) and
//     watched: one the upstream closes (FIN or RST) while idle is dropped,
//     so after the upstream dies the next request connects anew;
//   - a refused connect, an upstream that closes or resets before a complete
//     response, gives 502 Bad Gateway with nginx's page and error-log line;
//     a timeout gives 504;
//   - a failure on a cached connection is retried once on a new connection,
//     unless the request is POST, PATCH or LOCK and was already sent (nginx
//     counts no try for a cached connection, and proxy_next_upstream
//     excludes non-idempotent requests);
//   - the upstream response is read completely before it is relayed, so a
//     reset mid-body is a 502 too (nginx would cut the client connection).
type Proxy struct {
	cfg ProxyConfig
	log *errLog
	srv *connServer

	mu     sync.Mutex
	idle   []*upConn // cached upstream connections, least recently used first
	closed bool
	wg     sync.WaitGroup // idle watchers
}

// upConn is one upstream connection.
type upConn struct {
	c     *net.TCPConn
	br    *bufio.Reader
	watch chan error  // result of the idle watcher's Peek
	timer *time.Timer // upstream keepalive_timeout
}

// StartProxy listens on cfg.Listen and proxies in the background.
func StartProxy(cfg ProxyConfig) (*Proxy, error) {
	if cfg.Upstream == "" {
		return nil, errors.New("proxy: no upstream")
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultUpstreamKeepAlive
	}
	if cfg.UpstreamIdleTimeout <= 0 {
		cfg.UpstreamIdleTimeout = DefaultUpstreamIdleTimeout
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultProxyTimeout
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, log: newErrLog(cfg.Log)}
	p.srv = newConnServer(ln, cfg.IdleTimeout, 0, p.log, p.handle)
	return p, nil
}

// Addr is the address the Proxy listens on.
func (p *Proxy) Addr() string { return p.srv.ln.Addr().String() }

// Stats reports the client-side counters.
func (p *Proxy) Stats() Stats { return p.srv.stats() }

// IdleUpstream returns the number of cached idle upstream connections.
func (p *Proxy) IdleUpstream() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// Close stops the Proxy, closes every connection and waits for its
// goroutines.
func (p *Proxy) Close() error {
	err := p.srv.close()
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, uc := range idle {
		uc.timer.Stop()
		_ = uc.c.Close()
	}
	p.wg.Wait()
	return err
}

// upstreamFailure is a failed exchange with the upstream: what nginx logs and
// what the client gets.
type upstreamFailure struct {
	status int    // 502 or 504
	msg    string // e.g. "connect() failed (111: Connection refused) while connecting to upstream"
	retry  bool   // worth another try on a new connection
}

// handle proxies one client request.
func (p *Proxy) handle(sc *serverConn, req *http.Request) bool {
	var body []byte
	if req.ContentLength != 0 {
		b, err := io.ReadAll(io.LimitReader(req.Body, maxResponseBody+1))
		if err != nil {
			_ = sc.c.Close()
			return false
		}
		if len(b) > maxResponseBody {
			p.log.printf("error", sc.id, "client intended to send too large body, client: %s", sc.client())
			_ = writeResponse(sc.c, http.StatusRequestEntityTooLarge, serverHdr("text/html"), errorPage(http.StatusRequestEntityTooLarge), true)
			_ = sc.c.Close()
			return false
		}
		body = b
	}
	ctx := fmt.Sprintf(", client: %s, server: %s, request: \"%s %s %s\", upstream: \"http://%s%s\", host: \"%s\"",
		sc.client(), p.srv.name, req.Method, req.RequestURI, req.Proto, p.cfg.Upstream, req.RequestURI, req.Host)
	for try := 0; ; try++ {
		resp, f := p.forward(req, body, try > 0)
		if f == nil {
			err := writeResponse(sc.c, resp.StatusCode, resp.hdr, resp.body, req.Close)
			return err == nil
		}
		p.log.printf("error", sc.id, "%s%s", f.msg, ctx)
		if f.retry && try == 0 {
			continue
		}
		err := writeResponse(sc.c, f.status, serverHdr("text/html"), errorPage(f.status), req.Close)
		return err == nil
	}
}

// upstreamResponse is a complete upstream response, ready to relay.
type upstreamResponse struct {
	StatusCode int
	hdr        []string
	body       []byte
}

// forward sends one request upstream on a cached connection (unless fresh)
// or a new one and reads the complete response.
func (p *Proxy) forward(req *http.Request, body []byte, fresh bool) (*upstreamResponse, *upstreamFailure) {
	var uc *upConn
	if !fresh {
		uc = p.take()
	}
	cached := uc != nil
	if uc == nil {
		c, err := net.DialTimeout("tcp", p.cfg.Upstream, p.cfg.Timeout)
		if err != nil {
			if isTimeout(err) {
				return nil, &upstreamFailure{status: http.StatusGatewayTimeout,
					msg: "upstream timed out (110: Connection timed out) while connecting to upstream"}
			}
			return nil, &upstreamFailure{status: http.StatusBadGateway, msg: syscallText("connect", err) + " while connecting to upstream"}
		}
		tc := c.(*net.TCPConn)
		uc = &upConn{c: tc, br: bufio.NewReader(tc)}
	}
	// A cached connection may be retried unless a non-idempotent request
	// has reached the upstream.
	sent := false
	fail := func(status int, msg string) (*upstreamResponse, *upstreamFailure) {
		_ = uc.c.Close()
		nonIdem := req.Method == http.MethodPost || req.Method == http.MethodPatch || req.Method == "LOCK"
		return nil, &upstreamFailure{status: status, msg: msg, retry: cached && status == http.StatusBadGateway && !(sent && nonIdem)}
	}

	_ = uc.c.SetWriteDeadline(time.Now().Add(p.cfg.Timeout))
	if _, err := uc.c.Write(upstreamRequest(req, body, p.cfg.Upstream)); err != nil {
		if isTimeout(err) {
			return fail(http.StatusGatewayTimeout, "upstream timed out (110: Connection timed out) while sending request to upstream")
		}
		return fail(http.StatusBadGateway, syscallText("writev", err)+" while sending request to upstream")
	}
	sent = true
	_ = uc.c.SetReadDeadline(time.Now().Add(p.cfg.Timeout))
	resp, err := http.ReadResponse(uc.br, req)
	if err != nil {
		return fail(readFailure(err, "while reading response header from upstream"))
	}
	rbody, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		cached = false // the response had started: nginx does not retry
		return fail(readFailure(err, "while reading upstream"))
	}
	out := &upstreamResponse{StatusCode: resp.StatusCode, body: rbody}
	for k, vs := range resp.Header {
		if hopByHop(k) || k == "Content-Length" || k == "Date" || k == "Server" {
			continue
		}
		for _, v := range vs {
			out.hdr = append(out.hdr, k, v)
		}
	}
	out.hdr = append(serverHdr(""), out.hdr...)
	if resp.Close || uc.br.Buffered() > 0 || p.cfg.KeepAlive < 0 {
		_ = uc.c.Close()
	} else {
		_ = uc.c.SetDeadline(time.Time{})
		p.put(uc)
	}
	return out, nil
}

// readFailure maps an upstream read error to nginx's status and message.
func readFailure(err error, while string) (int, string) {
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadGateway, "upstream prematurely closed connection " + while
	case isTimeout(err):
		return http.StatusGatewayTimeout, "upstream timed out (110: Connection timed out) " + while
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return http.StatusBadGateway, syscallText("recv", err) + " " + while
	}
	return http.StatusBadGateway, "upstream sent invalid response (" + err.Error() + ") " + while
}

// take pops the most recently used cached connection that is still open.
// Its idle watcher is stopped by an expired read deadline: if the watcher
// reports that deadline, nothing arrived while idle and the connection is
// reusable; EOF, an error or stray bytes mean the upstream closed it.
func (p *Proxy) take() *upConn {
	for {
		p.mu.Lock()
		if len(p.idle) == 0 {
			p.mu.Unlock()
			return nil
		}
		uc := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		p.mu.Unlock()
		uc.timer.Stop()
		_ = uc.c.SetReadDeadline(time.Unix(1, 0))
		err := <-uc.watch
		if errors.Is(err, os.ErrDeadlineExceeded) {
			_ = uc.c.SetReadDeadline(time.Time{})
			return uc
		}
		_ = uc.c.Close()
	}
}

// put caches an idle upstream connection, closing the least recently used
// one beyond KeepAlive, and starts its watcher and idle timer.
func (p *Proxy) put(uc *upConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = uc.c.Close()
		return
	}
	if len(p.idle) >= p.cfg.KeepAlive {
		old := p.idle[0]
		p.idle = p.idle[1:]
		old.timer.Stop()
		_ = old.c.Close()
	}
	uc.watch = make(chan error, 1)
	uc.timer = time.AfterFunc(p.cfg.UpstreamIdleTimeout, func() {
		if p.remove(uc) {
			_ = uc.c.Close() // nginx's upstream keepalive_timeout: proxy FIN first
		}
	})
	p.idle = append(p.idle, uc)
	p.wg.Add(1)
	go p.watchIdle(uc)
}

// watchIdle blocks reading an idle cached connection, as nginx's keepalive
// close handler does. If the upstream closes or resets it while it is still
// cached, the connection is dropped from the cache.
func (p *Proxy) watchIdle(uc *upConn) {
	defer p.wg.Done()
	_, err := uc.br.Peek(1)
	uc.watch <- err
	if p.remove(uc) {
		_ = uc.c.Close()
		p.log.printf("info", 0, "cached upstream connection %s -> %s closed by upstream while idle (%s), dropped",
			uc.c.LocalAddr(), uc.c.RemoteAddr(), idleCloseReason(err))
	}
}

func idleCloseReason(err error) string {
	switch {
	case err == nil:
		return "unexpected data"
	case errors.Is(err, io.EOF):
		return "FIN"
	case errors.Is(err, syscall.ECONNRESET):
		return "RST"
	}
	return err.Error()
}

// remove takes uc out of the cache; it reports whether uc was there.
func (p *Proxy) remove(uc *upConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.idle {
		if x == uc {
			p.idle = append(p.idle[:i:i], p.idle[i+1:]...)
			return true
		}
	}
	return false
}

// serverHdr is the Server (and optional Content-Type) header pairs.
func serverHdr(contentType string) []string {
	h := []string{"Server", "nginx (rstscope lab-peer)"}
	if contentType != "" {
		h = append(h, "Content-Type", contentType)
	}
	return h
}

// hopByHop reports header fields that apply to one connection only.
func hopByHop(k string) bool {
	switch http.CanonicalHeaderKey(k) {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// upstreamRequest renders the request sent upstream: HTTP/1.1, Host set to
// the upstream (nginx's $proxy_host) and no Connection header, so the
// connection stays open.
func upstreamRequest(req *http.Request, body []byte, upstream string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", req.Method, req.RequestURI, upstream)
	for k, vs := range req.Header {
		if hopByHop(k) || k == "Content-Length" || k == "Host" {
			continue
		}
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	if len(body) > 0 || req.ContentLength > 0 {
		b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	b.WriteString("\r\n")
	return append([]byte(b.String()), body...)
}
