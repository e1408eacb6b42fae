package labpeer

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// BackendBody is the page a Backend serves.
const BackendBody = "hello from backend\n"

// Mode selects how a Backend (mis)behaves; each mode reproduces one cause of
// reset from the catalogue.
type Mode string

// Backend modes. The client-visible outcome is what Pool reports.
const (
	// ModeNormal serves every request with BackendBody over HTTP/1.1
	// keep-alive and closes an idle connection with a FIN after the idle
	// timeout, like nginx's keepalive_timeout. A client that reuses the
	// connection after that gets an RST (stale keep-alive, cause 3).
	ModeNormal Mode = "normal"
	// ModeUnreadDataClose reads only the headers of a request with a body,
	// answers 413 and close()s with the body still unread in the receive
	// buffer, so the kernel sends an RST instead of a FIN (cause 5,
	// TCP_ABORT_ON_CLOSE). Requests without a body are served normally.
	ModeUnreadDataClose Mode = "unread-data-close"
	// ModeAbortiveClose answers (announcing keep-alive) and then closes with
	// SO_LINGER {1,0}: an RST and never a FIN (cause 6, TCP_STATE). The
	// client sees the error on its next request on that connection.
	ModeAbortiveClose Mode = "abortive-close"
	// ModeDataAfterClose answers (announcing keep-alive, not
	// "Connection: close") and closes right away with a FIN, so the client's
	// next request on the connection arrives after the close and draws an
	// RST (cause 7, TCP_ABORT_ON_DATA). It is the stale keep-alive with no
	// idle time.
	ModeDataAfterClose Mode = "data-after-close"
	// ModeCloseBeforeResponse reads the request and closes with a FIN
	// without answering (a crashing or restarting backend). A proxy logs
	// "upstream prematurely closed connection".
	ModeCloseBeforeResponse Mode = "close-before-response"
	// ModeResetBeforeResponse reads the request and closes with SO_LINGER
	// {1,0} without answering. A proxy logs "recv() failed (104: Connection
	// reset by peer) while reading response header from upstream".
	ModeResetBeforeResponse Mode = "reset-before-response"
	// ModeResetMidResponse sends the status line, headers and half the body,
	// then closes with SO_LINGER {1,0}: the reader gets ECONNRESET mid-body.
	ModeResetMidResponse Mode = "reset-mid-response"
	// ModeListenOverflow listens with a tiny backlog (BackendConfig.Backlog,
	// default 1) and TCP_DEFER_ACCEPT and never accepts. With
	// net.ipv4.tcp_abort_on_overflow=1 (see SetAbortOnOverflow) a handshake
	// that completes while the accept queue is full is answered with an RST
	// (cause 8); with the default 0 the segment is dropped and nothing is
	// reset. ProvokeListenOverflow drives a client into that state; see
	// ListenOverflow for why TCP_DEFER_ACCEPT.
	ModeListenOverflow Mode = "listen-overflow"
)

// Modes lists every Mode, for flag help and validation.
var Modes = []Mode{ModeNormal, ModeUnreadDataClose, ModeAbortiveClose, ModeDataAfterClose,
	ModeCloseBeforeResponse, ModeResetBeforeResponse, ModeResetMidResponse, ModeListenOverflow}

// ParseMode returns the Mode named s ("" means ModeNormal).
func ParseMode(s string) (Mode, error) {
	if s == "" {
		return ModeNormal, nil
	}
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	names := make([]string, len(Modes))
	for i, m := range Modes {
		names[i] = string(m)
	}
	return "", fmt.Errorf("unknown backend mode %q (want one of %s)", s, strings.Join(names, ", "))
}

// BackendConfig configures a Backend.
type BackendConfig struct {
	Listen      string        // address to listen on, e.g. "127.0.0.10:8080" (port 0: any)
	Mode        Mode          // "" is ModeNormal
	IdleTimeout time.Duration // keep-alive idle timeout; 0 means DefaultIdleTimeout
	Backlog     int           // listen backlog for ModeListenOverflow; 0 means 1
	// IdleCloseDelay, if set, makes the Backend wait this long between its
	// idle timeout firing and close(), like a busy server. A request that
	// arrives in that gap is unread at close(), so the kernel sends an RST
	// instead of a FIN and the client reads "Connection reset": the
	// keep-alive race, made deterministic on loopback.
	IdleCloseDelay time.Duration
	Log            io.Writer // nginx-like log lines; nil discards them
}

// Backend is the lab's HTTP/1.1 origin server. Start it with StartBackend
// and stop it with Close.
type Backend struct {
	cfg  BackendConfig
	log  *errLog
	srv  *connServer       // nil in ModeListenOverflow
	ovl  *OverflowListener // only in ModeListenOverflow
	addr string
}

// StartBackend listens on cfg.Listen and serves in the background.
func StartBackend(cfg BackendConfig) (*Backend, error) {
	mode, err := ParseMode(string(cfg.Mode))
	if err != nil {
		return nil, err
	}
	cfg.Mode = mode
	b := &Backend{cfg: cfg, log: newErrLog(cfg.Log)}
	if mode == ModeListenOverflow {
		backlog := cfg.Backlog
		if backlog <= 0 {
			backlog = 1
		}
		ol, err := ListenOverflow(cfg.Listen, backlog)
		if err != nil {
			return nil, err
		}
		b.ovl, b.addr = ol, ol.Addr().String()
		return b, nil
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	b.addr = ln.Addr().String()
	b.srv = newConnServer(ln, cfg.IdleTimeout, cfg.IdleCloseDelay, b.log, b.handle)
	return b, nil
}

// Addr is the address the Backend listens on.
func (b *Backend) Addr() string { return b.addr }

// Mode is the Backend's mode.
func (b *Backend) Mode() Mode { return b.cfg.Mode }

// Stats reports the Backend's counters (all zero in ModeListenOverflow).
func (b *Backend) Stats() Stats {
	if b.srv == nil {
		return Stats{}
	}
	return b.srv.stats()
}

// Close stops the Backend: it closes the listener and every connection and
// waits for its goroutines.
func (b *Backend) Close() error {
	if b.ovl != nil {
		return b.ovl.Close()
	}
	return b.srv.close()
}

// maxDrain bounds how much of a request body the Backend reads and discards.
const maxDrain = 64 << 20

// handle serves one request according to the mode.
func (b *Backend) handle(sc *serverConn, req *http.Request) bool {
	hasBody := req.ContentLength != 0 // -1: chunked
	if b.cfg.Mode == ModeUnreadDataClose && hasBody {
		b.log.printf("error", sc.id, "client intended to send too large body: %d bytes, client: %s, request: \"%s %s %s\"",
			req.ContentLength, sc.client(), req.Method, req.RequestURI, req.Proto)
		_ = writeResponse(sc.c, http.StatusRequestEntityTooLarge, []string{"Server", "rstscope-lab-backend", "Content-Type", "text/html"},
			errorPage(http.StatusRequestEntityTooLarge), true)
		// close() with the body unread: the kernel answers with an RST.
		_ = sc.c.Close()
		return false
	}
	if hasBody {
		_, _ = io.Copy(io.Discard, io.LimitReader(req.Body, maxDrain))
	}
	hdr := []string{"Server", "rstscope-lab-backend", "Content-Type", "text/plain"}
	switch b.cfg.Mode {
	case ModeCloseBeforeResponse:
		_ = sc.c.Close()
		return false
	case ModeResetBeforeResponse:
		sc.abort()
		return false
	case ModeResetMidResponse:
		body := strings.Repeat("hello from backend, cut short\n", 64)
		head := fmt.Sprintf("HTTP/1.1 200 OK\r\nServer: rstscope-lab-backend\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n", len(body))
		_, _ = io.WriteString(sc.c, head+body[:len(body)/2])
		sc.abort()
		return false
	}
	if err := writeResponse(sc.c, http.StatusOK, hdr, []byte(BackendBody), req.Close); err != nil {
		_ = sc.c.Close()
		return false
	}
	switch b.cfg.Mode {
	case ModeAbortiveClose:
		sc.abort()
		return false
	case ModeDataAfterClose:
		_ = sc.c.Close()
		return false
	}
	return true
}
