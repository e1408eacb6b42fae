package labpeer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Client defaults, okhttp's.
const (
	DefaultKeepAlive      = 5 * time.Minute  // ConnectionPool keepAliveDuration
	DefaultMaxIdle        = 5                // ConnectionPool maxIdleConnections
	DefaultConnectTimeout = 10 * time.Second // OkHttpClient connectTimeout
	DefaultIOTimeout      = 10 * time.Second // OkHttpClient readTimeout and writeTimeout
)

// maxResponseBody bounds how much of a response body Pool and Proxy keep.
const maxResponseBody = 16 << 20

// Options configures a Pool. The zero value is okhttp's defaults except
// RetryOnConnectionFailure, which the seed article turns off (okhttp's
// default is on).
type Options struct {
	// KeepAlive is how long an idle pooled connection is kept; when it
	// expires the pool closes the connection itself (client FIN first, the
	// article's fix 1). 0 means DefaultKeepAlive.
	KeepAlive time.Duration
	// MaxIdle is the number of idle connections kept per host:port; the
	// least recently used one is closed beyond it. 0 means DefaultMaxIdle.
	MaxIdle int
	// RetryOnConnectionFailure retries an idempotent request (GET, HEAD,
	// OPTIONS, TRACE) once, on a new connection, when it failed on a reused
	// connection with end of stream, reset or broken pipe (fix 2).
	RetryOnConnectionFailure bool
	// CheckBeforeReuse peeks at an idle connection (recv MSG_PEEK |
	// MSG_DONTWAIT) before reusing it and drops it if the server has closed
	// it (EOF), reset it or sent unexpected bytes. Go's and Node's clients
	// effectively do this; okhttp does not for GET.
	CheckBeforeReuse bool
	// ConnectTimeout, ReadTimeout and WriteTimeout bound each step; 0 means
	// DefaultConnectTimeout / DefaultIOTimeout.
	ConnectTimeout, ReadTimeout, WriteTimeout time.Duration
	// LocalIP, if set, is the source address of new connections
	// (e.g. "127.0.0.2"), so the lab can tell client legs apart.
	LocalIP string
}

// ErrKind classifies a request's failure. Its String is the short phrase the
// orchestrator can match on; Result.Err carries okhttp's full text.
type ErrKind int

// Failure kinds.
const (
	KindNone        ErrKind = iota // success
	KindEndOfStream                // EOF before a complete response (server FIN)
	KindReset                      // ECONNRESET
	KindRefused                    // ECONNREFUSED on connect
	KindBrokenPipe                 // EPIPE on write
	KindTimeout                    // a deadline passed
	KindOther                      // anything else
)

var kindNames = [...]string{"", "unexpected end of stream", "connection reset", "connection refused",
	"broken pipe", "timeout", "io error"}

func (k ErrKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("ErrKind(%d)", int(k))
}

// Error is a request failure, worded like okhttp's exception (Text) with the
// Go error underneath (Cause: errors.Is(err, syscall.ECONNRESET) works).
type Error struct {
	Kind  ErrKind
	Text  string // e.g. "java.net.SocketException: Connection reset"
	Cause error
}

func (e *Error) Error() string { return e.Text }

// Unwrap returns the underlying Go error.
func (e *Error) Unwrap() error { return e.Cause }

// Request is one HTTP request for Pool.Do.
type Request struct {
	Method string      // "" means GET
	URL    string      // "http://host:port/path"
	Header http.Header // extra header fields, optional
	Body   []byte      // sent with Content-Length when non-nil
}

// Attempt describes one try of a request on one connection.
type Attempt struct {
	LocalAddr  string        // client side of the connection, "" if connect failed
	RemoteAddr string        // server side
	Reused     bool          // the connection came from the pool
	IdleFor    time.Duration // how long it had been idle in the pool (reused only)
	Status     int           // status code, 0 if none was read
	Err        error         // *Error, nil on success
}

// Result is what Pool.Do returns. Status, Body, Reused, LocalAddr and
// RemoteAddr describe the last attempt; Attempts lists all of them (two when
// the request was retried: the failed one first).
type Result struct {
	Status     int
	Body       []byte
	Err        error   // *Error, nil on success
	Kind       ErrKind // KindNone on success
	Reused     bool
	LocalAddr  string
	RemoteAddr string
	Retried    bool
	Attempts   []Attempt
	// Discarded lists the local addresses of pooled connections dropped
	// before use: expired, or found closed by CheckBeforeReuse.
	Discarded []string
}

// ErrText is Err's text, "" on success.
func (r *Result) ErrText() string {
	if r.Err == nil {
		return ""
	}
	return r.Err.Error()
}

// Pool is an HTTP/1.1 client with an okhttp-like connection pool. It does not
// watch idle connections: a server's FIN on one goes unnoticed until a
// request is written on it (unless Options.CheckBeforeReuse). Safe for
// concurrent use; Close it when done.
type Pool struct {
	opt    Options
	mu     sync.Mutex
	idle   map[string][]*clientConn // by host:port, least recently used first
	closed bool
}

// clientConn is one client connection.
type clientConn struct {
	c         *net.TCPConn
	br        *bufio.Reader
	cr        *countReader
	key       string
	idleSince time.Time
	timer     *time.Timer // closes the connection when KeepAlive expires
}

// countReader counts the bytes read since it was last reset, for okhttp's
// "limit=N" in the end-of-stream message.
type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// NewPool returns an empty Pool.
func NewPool(opt Options) *Pool {
	if opt.KeepAlive <= 0 {
		opt.KeepAlive = DefaultKeepAlive
	}
	if opt.MaxIdle <= 0 {
		opt.MaxIdle = DefaultMaxIdle
	}
	if opt.ConnectTimeout <= 0 {
		opt.ConnectTimeout = DefaultConnectTimeout
	}
	if opt.ReadTimeout <= 0 {
		opt.ReadTimeout = DefaultIOTimeout
	}
	if opt.WriteTimeout <= 0 {
		opt.WriteTimeout = DefaultIOTimeout
	}
	return &Pool{opt: opt, idle: map[string][]*clientConn{}}
}

// Get is Do with a GET of url.
func (p *Pool) Get(ctx context.Context, url string) *Result {
	return p.Do(ctx, Request{URL: url})
}

// IdleConns returns the number of idle pooled connections.
func (p *Pool) IdleConns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.idle {
		n += len(l)
	}
	return n
}

// Close closes every idle connection; the Pool must not be used afterwards.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = map[string][]*clientConn{}
	p.mu.Unlock()
	for _, l := range idle {
		for _, cc := range l {
			cc.timer.Stop()
			_ = cc.c.Close()
		}
	}
	return nil
}

// Do sends req and reads the whole response. It never returns nil; failures
// are in Result.Err.
func (p *Pool) Do(ctx context.Context, req Request) *Result {
	res := &Result{}
	if req.Method == "" {
		req.Method = http.MethodGet
	}
	u, err := url.Parse(req.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		res.Err = &Error{Kind: KindOther, Text: fmt.Sprintf("java.lang.IllegalArgumentException: unexpected url: %s", req.URL), Cause: err}
		res.Kind = KindOther
		return res
	}
	hostport := u.Host
	if u.Port() == "" {
		hostport = net.JoinHostPort(u.Hostname(), "80")
	}
	for try := 0; ; try++ {
		a, body := p.attempt(ctx, req, u, hostport, try > 0, res)
		res.Attempts = append(res.Attempts, a)
		res.Status, res.Body, res.Err = a.Status, body, a.Err
		res.Reused, res.LocalAddr, res.RemoteAddr = a.Reused, a.LocalAddr, a.RemoteAddr
		res.Kind = KindNone
		var e *Error
		if errors.As(a.Err, &e) {
			res.Kind = e.Kind
		}
		if try == 0 && a.Err != nil && a.Reused && p.opt.RetryOnConnectionFailure && idempotent(req.Method) &&
			(res.Kind == KindEndOfStream || res.Kind == KindReset || res.Kind == KindBrokenPipe) && ctx.Err() == nil {
			res.Retried = true
			continue
		}
		return res
	}
}

// idempotent reports whether a request with this method may be replayed
// (Go's net/http set).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// attempt makes one try: a pooled connection (unless fresh) or a new one,
// write, read. It returns the attempt and the response body.
func (p *Pool) attempt(ctx context.Context, req Request, u *url.URL, hostport string, fresh bool, res *Result) (Attempt, []byte) {
	var a Attempt
	var cc *clientConn
	if !fresh {
		cc, a.IdleFor = p.take(hostport, res)
	}
	if cc != nil {
		a.Reused = true
	} else {
		var err error
		cc, err = p.dial(ctx, hostport)
		if err != nil {
			a.Err = err
			return a, nil
		}
	}
	a.LocalAddr, a.RemoteAddr = cc.c.LocalAddr().String(), cc.c.RemoteAddr().String()
	stop := context.AfterFunc(ctx, func() { _ = cc.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	// Write the request, okhttp style: all of it, then read the response.
	_ = cc.c.SetWriteDeadline(p.deadline(ctx, p.opt.WriteTimeout))
	if _, err := cc.c.Write(requestBytes(req, u)); err != nil {
		_ = cc.c.Close()
		a.Err = writeError(err)
		return a, nil
	}
	_ = cc.c.SetReadDeadline(p.deadline(ctx, p.opt.ReadTimeout))
	cc.cr.n = 0
	resp, err := http.ReadResponse(cc.br, &http.Request{Method: req.Method})
	if err != nil {
		_ = cc.c.Close()
		a.Err = readError(err, true, hostport, a.RemoteAddr, cc.cr.n)
		return a, nil
	}
	a.Status = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		_ = cc.c.Close()
		a.Err = readError(err, false, hostport, a.RemoteAddr, cc.cr.n)
		return a, body
	}
	if resp.Close || cc.br.Buffered() > 0 || ctx.Err() != nil {
		_ = cc.c.Close()
	} else {
		p.put(cc)
	}
	return a, body
}

// deadline is now+d, or ctx's deadline if sooner.
func (p *Pool) deadline(ctx context.Context, d time.Duration) time.Time {
	t := time.Now().Add(d)
	if cd, ok := ctx.Deadline(); ok && cd.Before(t) {
		return cd
	}
	return t
}

// dial opens a new connection to hostport.
func (p *Pool) dial(ctx context.Context, hostport string) (*clientConn, error) {
	d := net.Dialer{Timeout: p.opt.ConnectTimeout}
	if p.opt.LocalIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(p.opt.LocalIP)}
	}
	c, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		e := &Error{Cause: err}
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			e.Kind = KindRefused
			e.Text = fmt.Sprintf("java.net.ConnectException: Failed to connect to /%s (caused by java.net.ConnectException: Connection refused)", hostport)
		case isTimeout(err):
			e.Kind = KindTimeout
			e.Text = "java.net.SocketTimeoutException: connect timed out"
		default:
			e.Kind = KindOther
			e.Text = fmt.Sprintf("java.net.ConnectException: Failed to connect to /%s (%v)", hostport, err)
		}
		return nil, e
	}
	tc := c.(*net.TCPConn)
	cr := &countReader{r: tc}
	return &clientConn{c: tc, br: bufio.NewReader(cr), cr: cr, key: hostport}, nil
}

// take pops the most recently used idle connection to key that has not
// expired (and, with CheckBeforeReuse, still looks open).
func (p *Pool) take(key string, res *Result) (*clientConn, time.Duration) {
	for {
		p.mu.Lock()
		l := p.idle[key]
		if len(l) == 0 {
			p.mu.Unlock()
			return nil, 0
		}
		cc := l[len(l)-1]
		p.idle[key] = l[:len(l)-1]
		p.mu.Unlock()
		cc.timer.Stop()
		idle := time.Since(cc.idleSince)
		if idle >= p.opt.KeepAlive || (p.opt.CheckBeforeReuse && !peekAlive(cc)) {
			res.Discarded = append(res.Discarded, cc.c.LocalAddr().String())
			_ = cc.c.Close()
			continue
		}
		return cc, idle
	}
}

// put returns a healthy connection to the pool and arms its keep-alive
// timer.
func (p *Pool) put(cc *clientConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = cc.c.Close()
		return
	}
	l := p.idle[cc.key]
	if len(l) >= p.opt.MaxIdle {
		old := l[0]
		old.timer.Stop()
		_ = old.c.Close()
		l = l[1:]
	}
	cc.idleSince = time.Now()
	cc.timer = time.AfterFunc(p.opt.KeepAlive, func() { p.expire(cc) })
	p.idle[cc.key] = append(l, cc)
}

// expire closes cc if it is still idle in the pool: the client's own
// keep-alive ran out first, so the client sends the FIN.
func (p *Pool) expire(cc *clientConn) {
	p.mu.Lock()
	l := p.idle[cc.key]
	found := false
	for i, x := range l {
		if x == cc {
			p.idle[cc.key] = append(l[:i:i], l[i+1:]...)
			found = true
			break
		}
	}
	p.mu.Unlock()
	if found {
		_ = cc.c.Close()
	}
}

// peekAlive looks at an idle connection without blocking or consuming: alive
// means nothing to read yet (EAGAIN). EOF, an error (RST) or unexpected
// bytes mean the connection must not be reused.
func peekAlive(cc *clientConn) bool {
	if cc.br.Buffered() > 0 {
		return false
	}
	rc, err := cc.c.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	buf := make([]byte, 1)
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		alive = rerr == unix.EAGAIN
		return true // never wait
	})
	return err == nil && alive
}

// requestBytes renders req as okhttp sends it.
func requestBytes(req Request, u *url.URL) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", req.Method, u.RequestURI())
	fmt.Fprintf(&b, "Host: %s\r\n", u.Host)
	b.WriteString("Connection: Keep-Alive\r\nAccept-Encoding: identity\r\nUser-Agent: okhttp/3.14.9 (rstscope lab)\r\n")
	for k, vs := range req.Header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	if req.Body != nil {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(req.Body))
	}
	b.WriteString("\r\n")
	return append([]byte(b.String()), req.Body...)
}

// writeError words a failed write like Java's SocketOutputStream.
func writeError(err error) *Error {
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return &Error{Kind: KindReset, Text: "java.net.SocketException: Connection reset by peer", Cause: err}
	case errors.Is(err, syscall.EPIPE):
		return &Error{Kind: KindBrokenPipe, Text: "java.net.SocketException: Broken pipe (Write failed)", Cause: err}
	case isTimeout(err):
		return &Error{Kind: KindTimeout, Text: "java.net.SocketTimeoutException: timeout", Cause: err}
	}
	return &Error{Kind: KindOther, Text: "java.io.IOException: " + err.Error(), Cause: err}
}

// readError words a failed read like okhttp: EOF while reading the status
// line is "unexpected end of stream on Connection{...}" caused by okio's
// "\n not found: limit=N", EOF in the body is a ProtocolException.
func readError(err error, statusLine bool, hostport, remote string, n int) *Error {
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		if statusLine {
			return &Error{Kind: KindEndOfStream, Cause: err, Text: fmt.Sprintf(
				"java.io.IOException: unexpected end of stream on Connection{%s, proxy=DIRECT hostAddress=/%s cipherSuite=none protocol=http/1.1} (caused by java.io.EOFException: \\n not found: limit=%d content=…)",
				hostport, remote, n)}
		}
		return &Error{Kind: KindEndOfStream, Text: "java.net.ProtocolException: unexpected end of stream", Cause: err}
	case errors.Is(err, syscall.ECONNRESET):
		return &Error{Kind: KindReset, Text: "java.net.SocketException: Connection reset", Cause: err}
	case isTimeout(err):
		return &Error{Kind: KindTimeout, Text: "java.net.SocketTimeoutException: timeout", Cause: err}
	}
	return &Error{Kind: KindOther, Text: "java.io.IOException: " + err.Error(), Cause: err}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}
