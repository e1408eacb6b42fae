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
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultIdleTimeout is the keep-alive idle timeout of the Backend and of the
// Proxy's client side when none is given: 5 s, the value the seed article
// gives nginx's keepalive_timeout (and Node's server.keepAliveTimeout default).
const DefaultIdleTimeout = 5 * time.Second

// headerTimeout bounds reading a request once its first byte has arrived
// (nginx's client_header_timeout is 60 s; the lab needs no slow clients).
const headerTimeout = 10 * time.Second

// Stats counts what a server peer has done. The orchestrator and tests poll
// it, e.g. to wait until an idle connection has been closed by the server.
type Stats struct {
	Accepted    int64 // connections accepted
	Requests    int64 // requests read
	IdleExpired int64 // keep-alive idle timeouts that fired (the close may still be pending)
	IdleClosed  int64 // keep-alive connections closed after the idle timeout
	Open        int64 // connections currently open
}

// errLog writes nginx-style error-log lines:
//
//	2024/05/01 10:00:00 [error] 1234#0: *5 connect() failed (111: Connection refused) while connecting to upstream, client: ...
//
// nginx's format is kept so that what rstscope shows next to a capture reads
// like what an operator finds in /var/log/nginx/error.log.
type errLog struct {
	mu  sync.Mutex
	w   io.Writer
	pid int
}

func newErrLog(w io.Writer) *errLog {
	if w == nil {
		w = io.Discard
	}
	return &errLog{w: w, pid: os.Getpid()}
}

// printf logs one line at level (error, warn, info) for connection id.
func (l *errLog) printf(level string, id uint64, format string, args ...any) {
	line := fmt.Sprintf("%s [%s] %d#0: *%d %s\n", time.Now().Format("2006/01/02 15:04:05"),
		level, l.pid, id, fmt.Sprintf(format, args...))
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, line)
}

// serverConn is one accepted connection of a server peer.
type serverConn struct {
	id uint64
	c  *net.TCPConn
	br *bufio.Reader
}

// client returns the client's address for log lines.
func (sc *serverConn) client() string { return sc.c.RemoteAddr().String() }

// abort closes the connection with SO_LINGER {1,0}: the kernel sends an RST
// instead of a FIN and drops unsent data.
func (sc *serverConn) abort() {
	_ = sc.c.SetLinger(0)
	_ = sc.c.Close()
}

// handlerFunc serves one request. It returns true to keep the connection
// open for the next request; when it returns false it has already closed the
// connection in whatever way its mode demands.
type handlerFunc func(sc *serverConn, req *http.Request) (keep bool)

// connServer is the HTTP/1.1 keep-alive loop shared by Backend and Proxy: it
// accepts connections, waits at most idle for each next request and closes
// an idle connection normally (FIN), as nginx does at keepalive_timeout.
type connServer struct {
	ln         net.Listener
	idle       time.Duration
	closeDelay time.Duration // wait between the idle timeout and close()
	log        *errLog
	handle     handlerFunc
	name       string // "server: ..." in log lines

	mu     sync.Mutex
	conns  map[*net.TCPConn]struct{}
	closed bool
	wg     sync.WaitGroup

	nextID                                               atomic.Uint64
	accepted, requests, idleExpired, idleClosed, openNow atomic.Int64
}

func newConnServer(ln net.Listener, idle, closeDelay time.Duration, log *errLog, h handlerFunc) *connServer {
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	s := &connServer{ln: ln, idle: idle, closeDelay: closeDelay, log: log, handle: h, name: ln.Addr().String(),
		conns: map[*net.TCPConn]struct{}{}}
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

func (s *connServer) stats() Stats {
	return Stats{Accepted: s.accepted.Load(), Requests: s.requests.Load(),
		IdleExpired: s.idleExpired.Load(), IdleClosed: s.idleClosed.Load(), Open: s.openNow.Load()}
}

func (s *connServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off briefly like net/http does.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		tc := c.(*net.TCPConn)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = tc.Close()
			return
		}
		s.conns[tc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.accepted.Add(1)
		s.openNow.Add(1)
		sc := &serverConn{id: s.nextID.Add(1), c: tc, br: bufio.NewReader(tc)}
		go s.serve(sc)
	}
}

// serve runs the keep-alive loop of one connection.
func (s *connServer) serve(sc *serverConn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, sc.c)
		s.mu.Unlock()
		s.openNow.Add(-1)
		s.wg.Done()
	}()
	for {
		// Wait for the first byte of the next request, at most idle.
		_ = sc.c.SetReadDeadline(time.Now().Add(s.idle))
		if _, err := sc.br.Peek(1); err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				s.idleExpired.Add(1)
				how := "FIN"
				if s.closeDelay > 0 {
					// A busy server closes a little after its timer fired;
					// a request arriving meanwhile is unread at close().
					time.Sleep(s.closeDelay)
					if n, _ := unreadBytes(sc.c); n > 0 || sc.br.Buffered() > 0 {
						how = fmt.Sprintf("RST: %d bytes unread", n+sc.br.Buffered())
					}
				}
				_ = sc.c.Close() // nothing unread: a normal FIN; else an RST
				s.idleClosed.Add(1)
				s.log.printf("info", sc.id, "keepalive timeout (%s), closed idle connection (%s), client: %s, server: %s",
					s.idle, how, sc.client(), s.name)
			case errors.Is(err, io.EOF):
				_ = sc.c.Close()
				s.log.printf("info", sc.id, "client %s closed keepalive connection", sc.client())
			case errors.Is(err, net.ErrClosed):
				// closed by Close
			default:
				_ = sc.c.Close()
				s.log.printf("info", sc.id, "%s while waiting for request, client: %s, server: %s",
					syscallText("recv", err), sc.client(), s.name)
			}
			return
		}
		_ = sc.c.SetReadDeadline(time.Now().Add(headerTimeout))
		req, err := http.ReadRequest(sc.br)
		if err != nil {
			s.log.printf("info", sc.id, "client sent invalid request (%v), client: %s, server: %s", err, sc.client(), s.name)
			_ = writeResponse(sc.c, http.StatusBadRequest, nil, errorPage(http.StatusBadRequest), true)
			_ = sc.c.Close()
			return
		}
		_ = sc.c.SetReadDeadline(time.Time{})
		s.requests.Add(1)
		if !s.handle(sc, req) {
			return
		}
		if req.Close { // "Connection: close", or HTTP/1.0 without keep-alive

			_ = sc.c.Close()
			return
		}
	}
}

// unreadBytes is the number of bytes waiting in c's receive queue (FIONREAD).
func unreadBytes(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
		return 0, err
	}
	return n, ierr
}

// close stops accepting, closes every open connection and waits for all
// goroutines.
func (s *connServer) close() error {
	s.mu.Lock()
	s.closed = true
	err := s.ln.Close()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// writeResponse writes a complete HTTP/1.1 response with Content-Length.
// hdr holds extra header lines as name, value pairs. With closeConn the
// response announces "Connection: close", otherwise "Connection: keep-alive".
func writeResponse(w io.Writer, status int, hdr []string, body []byte, closeConn bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().UTC().Format(http.TimeFormat))
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	if closeConn {
		b.WriteString("Connection: close\r\n\r\n")
	} else {
		b.WriteString("Connection: keep-alive\r\n\r\n")
	}
	buf := append([]byte(b.String()), body...)
	_, err := w.Write(buf)
	return err
}

// errorPage is nginx's built-in error page for status.
func errorPage(status int) []byte {
	t := fmt.Sprintf("%d %s", status, http.StatusText(status))
	return []byte("<html>\r\n<head><title>" + t + "</title></head>\r\n<body>\r\n<center><h1>" + t +
		"</h1></center>\r\n<hr><center>nginx (rstscope lab-peer)</center>\r\n</body>\r\n</html>\r\n")
}

// syscallText renders a socket error the way nginx does:
// "recv() failed (104: Connection reset by peer)".
func syscallText(call string, err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return fmt.Sprintf("%s() failed (%d: %s)", call, int(errno), errnoText(errno))
	}
	return fmt.Sprintf("%s() failed (%v)", call, err)
}

// errnoText is strerror(3) with glibc's capitalisation, which nginx prints.
func errnoText(e syscall.Errno) string {
	s := e.Error()
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
