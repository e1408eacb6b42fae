// Package cause is rstscope's catalogue of why TCP connections get reset:
// one entry per cause, with its plain-words explanation, the packet signature
// that proves it, what applications see, the kernel's reasons that go with it,
// and concrete advice.
//
// The catalogue is data, not code: the rules that recognise a cause in
// packets live in internal/diagnose, the error-message map in internal/why;
// both refer to causes by ID. To add a cause, add an entry here, a rule
// there, and a lab scenario that makes it happen.
package cause

// ID names a cause. IDs are part of rstscope's JSON output: never rename one.
type ID string

// The causes, in the order reports list them.
const (
	Refused         ID = "refused"           // SYN answered by RST: nothing listens
	UpstreamFailure ID = "upstream-failure"  // a proxy's 502/503/504 caused by a failed upstream connection
	StaleKeepalive  ID = "stale-keepalive"   // request on a pooled connection the server had already closed
	KeepaliveRace   ID = "keepalive-race"    // request crossed the server's idle-close FIN in flight
	UnreadDataClose ID = "unread-data-close" // close() with unread received data: RST instead of FIN
	AbortiveClose   ID = "abortive-close"    // RST without FIN and nothing unread: SO_LINGER 0, abort
	DataAfterClose  ID = "data-after-close"  // data sent to a side that had already closed
	NoConnection    ID = "no-connection"     // RST from a host with no state for the connection
	Middlebox       ID = "middlebox"         // RST forged by a third party
	ListenOverflow  ID = "listen-overflow"   // handshake completed, then RST: accept queue full
	UnansweredSYN   ID = "unanswered-syn"    // SYNs with no answer at all
	Unknown         ID = "unknown"           // a reset whose packets allow no verdict
)

// Cause is one catalogue entry.
type Cause struct {
	ID          ID
	Title       string   // a few words, for summaries
	Explanation string   // what happened, in plain words
	Signature   string   // what the packets show
	AppSees     []string // how applications report it
	Kernel      []string // the kernel's sk_rst_reason names that go with it (tcp:tcp_send_reset)
	Advice      []string // what to change, most useful first
}

// Catalogue lists every cause, in report order.
var Catalogue = []Cause{
	{
		ID:    Refused,
		Title: "connection refused",
		Explanation: "The client's SYN reached a host where nothing listens on that port, " +
			"so the host's kernel answered with RST at once: the connection was refused.",
		Signature: "SYN from the client, then [R.] seq 0 ack ISN+1 win 0 from the server within one round trip; no SYN-ACK. Zeek: REJ.",
		AppSees: []string{"ECONNREFUSED", "connection refused", "java.net.ConnectException: Connection refused",
			"curl: (7) Failed to connect", "nginx: connect() failed (111: Connection refused) while connecting to upstream"},
		Kernel: []string{"NO_SOCKET"},
		Advice: []string{
			"Check that the server process is running and listening on that address and port (`ss -lntp`, or `rstscope probe HOST:PORT`).",
			"A service bound to 127.0.0.1 cannot be reached on another address; bind to the address clients use (or 0.0.0.0 / [::]).",
			"If a firewall answers with `REJECT --reject-with tcp-reset`, the RST comes from it, not the server: compare TTLs.",
		},
	},
	{
		ID:    UpstreamFailure,
		Title: "proxy error from a failed upstream",
		Explanation: "A reverse proxy answered the client with a 5xx (typically 502 Bad Gateway) because its own " +
			"connection to the upstream server failed: the upstream refused the connection (process down), " +
			"reset it, or closed it before answering.",
		Signature: "On the client leg, an HTTP 502/503/504 response; at the same time on the upstream leg, SYN->RST (refused), an RST, or a FIN before any response.",
		AppSees: []string{"HTTP 502 Bad Gateway", "nginx: connect() failed (111: Connection refused) while connecting to upstream",
			"nginx: upstream prematurely closed connection while reading response header from upstream",
			"nginx: recv() failed (104: Connection reset by peer) while reading response header from upstream",
			"envoy: upstream connect error or disconnect/reset before headers"},
		Kernel: []string{"NO_SOCKET"},
		Advice: []string{
			"Find out why the upstream process stopped: a dead or missing upstream is the root of most 502s (check its logs, OOM kills, restarts, health checks).",
			"Give the proxy more than one upstream server, or health checks (nginx `max_fails`/`fail_timeout`, `proxy_next_upstream`), so one dead backend does not fail requests.",
			"If the upstream closed a kept-alive connection, make the upstream's idle timeout longer than the proxy's upstream `keepalive_timeout` (nginx default 60 s).",
		},
	},
	{
		ID:    StaleKeepalive,
		Title: "stale pooled keep-alive connection",
		Explanation: "The server closed an idle keep-alive connection after its idle timeout (it sent FIN, and the " +
			"client's kernel acknowledged it), but the client's connection pool did not notice and later sent a " +
			"request on that connection. The server no longer had it open, so its kernel answered the request with RST. " +
			"The client reads end-of-stream or a reset instead of a response.",
		Signature: "Idle gap; server FIN; client ACK; later a client request on the same connection; server [R] win 0.",
		AppSees: []string{"java.io.IOException: unexpected end of stream on Connection{...} (okhttp)",
			"java.io.EOFException: \\n not found: limit=0", "java.net.SocketException: Connection reset",
			"Go: http: server closed idle connection / EOF", "Python: RemoteDisconnected('Remote end closed connection without response')",
			"Apache HttpClient: NoHttpResponseException", "Node: ECONNRESET / socket hang up"},
		Kernel: []string{"TCP_TIMEWAIT_SOCKET", "TCP_ABORT_ON_DATA", "NO_SOCKET"},
		Advice: []string{
			"Make the client's pool idle timeout shorter than the server's keep-alive timeout, so the client closes idle connections first: " +
				"okhttp `ConnectionPool(5, 30, TimeUnit.SECONDS)` (default 5 min); Go `http.Transport.IdleConnTimeout` (default 90 s); " +
				"Java HttpClient `-Djdk.httpclient.keepalive.timeout` (1200 s, 30 s since JDK 20); Apache HttpClient `evictIdleConnections`; " +
				"Node `http.Agent({keepAlive: true, timeout})` / undici `keepAliveTimeout` (4 s).",
			"Retry requests that are safe to repeat when a reused connection fails: okhttp `retryOnConnectionFailure(true)` (the default); " +
				"Go retries idempotent requests on reused connections by itself; Python urllib3 `Retry(allowed_methods=...)`.",
			"Or lengthen the server's idle timeout (nginx `keepalive_timeout`, default 75 s, stock nginx.conf 65 s) beyond the client's pool timeout.",
		},
	},
	{
		ID:    KeepaliveRace,
		Title: "request crossed the server's idle close",
		Explanation: "The server closed an idle keep-alive connection at the moment the client sent a new request on it: " +
			"the request and the server's FIN crossed in flight, so the client could not have known. The server's kernel " +
			"answered the request with RST.",
		Signature: "Server FIN and a client request sent before the client could have seen the FIN (its ACK does not cover the FIN), then server RST; or, when the request arrived just before the server's close(), no FIN at all: an RST right after the request on an idle keep-alive connection.",
		AppSees:   []string{"unexpected end of stream", "ECONNRESET", "Connection reset", "EOF"},
		Kernel:    []string{"TCP_TIMEWAIT_SOCKET", "TCP_ABORT_ON_DATA", "NO_SOCKET", "TCP_ABORT_ON_CLOSE"},
		Advice: []string{
			"Keep the client's pool idle timeout a few seconds below the server's keep-alive timeout, so the client always closes first.",
			"Retry idempotent requests when a reused connection fails (okhttp `retryOnConnectionFailure(true)`, Go does it for idempotent requests).",
		},
	},
	{
		ID:    UnreadDataClose,
		Title: "closed with unread data",
		Explanation: "One side closed its socket while data it had received was still unread in its receive buffer. " +
			"Linux then sends RST instead of FIN (RFC 2525), which also discards what the peer had not yet read - " +
			"typically a server that answers early (401, 413) without reading a request body, or a client that cancels.",
		Signature: "Data towards the resetting side that it never acknowledged as read (or a request body shorter than its Content-Length), then [R.] with a non-zero window and usually the timestamp option; no FIN before it.",
		AppSees:   []string{"ECONNRESET", "Connection reset by peer", "java.net.SocketException: Connection reset", "broken pipe (EPIPE) on write"},
		Kernel:    []string{"TCP_ABORT_ON_CLOSE"},
		Advice: []string{
			"Read (drain) the request body before closing, or close only the write side first (shutdown(SHUT_WR)) and keep reading for a while: nginx `lingering_close`/`lingering_time`, Go's server drains up to 256 KiB.",
			"For early rejections (413, 401), send `Connection: close` and let the server linger; clients should send `Expect: 100-continue` for large uploads.",
		},
	},
	{
		ID:    AbortiveClose,
		Title: "abortive close (SO_LINGER 0)",
		Explanation: "One side reset the connection on purpose with nothing unread: it closed with SO_LINGER {on, 0} " +
			"(or aborted the socket), which makes the kernel send RST instead of FIN. Load testers, HAProxy " +
			"`option nolinger`, Java `setSoLinger(true, 0)` and Go `SetLinger(0)` do this to skip TIME_WAIT.",
		Signature: "[R.] with a real window and the timestamp option, started by the host itself, with no FIN before it and no data waiting.",
		AppSees:   []string{"ECONNRESET", "Connection reset by peer", "java.net.SocketException: Connection reset"},
		Kernel:    []string{"TCP_STATE", "TCP_ABORT_ON_LINGER", "TCP_DISCONNECT_WITH_DATA"},
		Advice: []string{
			"Find the code or setting that closes with linger 0 (HAProxy `option nolinger`, `setSoLinger(true, 0)`, `SetLinger(0)`) and close normally unless skipping TIME_WAIT is really needed.",
			"If the resetting side is a client or load tester, the reset is expected: treat it as the end of the conversation.",
		},
	},
	{
		ID:    DataAfterClose,
		Title: "data sent after the peer closed",
		Explanation: "One side had already closed the connection (sent FIN and closed its socket), and the other side " +
			"sent more data anyway. The closed side's kernel has nowhere to deliver it and answers with RST.",
		Signature: "FIN from one side, then data from the other side, then RST from the side that closed; not an idle keep-alive close.",
		AppSees:   []string{"ECONNRESET", "EPIPE / broken pipe", "Connection reset by peer"},
		Kernel:    []string{"TCP_ABORT_ON_DATA", "TCP_TIMEWAIT_SOCKET"},
		Advice: []string{
			"Honour the peer's close: check for EOF before writing, and honour `Connection: close` in HTTP responses.",
			"If a server closes after a response without saying so, make it send `Connection: close` so clients do not reuse the connection.",
		},
	},
	{
		ID:    NoConnection,
		Title: "peer has no such connection",
		Explanation: "The RST came from a host that had no state for this connection: the peer process or host " +
			"restarted, the socket was already gone, or a NAT, firewall or load balancer in between forgot an idle " +
			"flow and the packet ended up on a host that never knew it.",
		Signature: "Data or an ACK on an established connection answered by [R] win 0 with no options (a reply RST), with no FIN before it.",
		AppSees:   []string{"ECONNRESET", "Connection reset by peer", "java.net.SocketException: Connection reset"},
		Kernel:    []string{"NO_SOCKET", "TCP_FLAGS"},
		Advice: []string{
			"Check whether the peer restarted at that time (process, container, host).",
			"If the connection was idle for long, a NAT or load balancer idle timeout may have dropped it (AWS NLB 350 s, GCP 600 s): enable TCP keepalive more often than that, or lower the pool's idle timeout.",
		},
	},
	{
		ID:    Middlebox,
		Title: "reset forged by a middlebox",
		Explanation: "The RST does not look like it came from the peer's own TCP stack: its TTL, IP ID or options differ " +
			"from the peer's packets. A firewall, IDS, load balancer or NAT in the path sent it on the peer's behalf.",
		Signature: "An RST whose TTL differs from the peer's earlier packets (different hop count), or an IP ID pattern unlike the peer's, often without the options the peer uses.",
		AppSees:   []string{"ECONNRESET", "Connection reset by peer"},
		Kernel:    []string{},
		Advice: []string{
			"Capture on both ends: a forged RST appears on the receiver but was never sent by the peer (and the peer's kernel logs no tcp_send_reset for it).",
			"Check firewall REJECT rules, IDS/IPS policies, and load balancer or NAT idle timeouts on the path.",
		},
	},
	{
		ID:    ListenOverflow,
		Title: "accept queue overflow",
		Explanation: "The three-way handshake completed, but the server's accept queue was full, and with " +
			"net.ipv4.tcp_abort_on_overflow=1 the kernel reset the new connection instead of dropping the ACK. " +
			"The server application is not accepting connections fast enough.",
		Signature: "SYN, SYN-ACK, ACK (possibly with data), then [R] from the server right away.",
		AppSees:   []string{"ECONNRESET right after connect", "Connection reset by peer"},
		Kernel:    []string{"INVALID_SYN", "TCP_FLAGS"},
		Advice: []string{
			"Raise the listen backlog (the application's listen() argument and net.core.somaxconn) and accept faster (more workers).",
			"Watch `nstat -az TcpExtListenOverflows TcpExtListenDrops` and `ss -lnt` (Recv-Q vs Send-Q on the listener).",
			"Consider tcp_abort_on_overflow=0 (the default): clients then retry instead of being reset.",
		},
	},
	{
		ID:    UnansweredSYN,
		Title: "no answer to SYN",
		Explanation: "The client's SYNs were never answered: no SYN-ACK and no RST. A firewall dropped them, the host " +
			"is down or unreachable, or the server's SYN queue was full. This is not a reset: the application sees a " +
			"connect timeout.",
		Signature: "SYN retransmitted at about 1, 3, 7 s ... with no reply. Zeek: S0.",
		AppSees:   []string{"ETIMEDOUT", "connect timed out", "java.net.SocketTimeoutException: connect timed out", "curl: (28)", "nginx 504 Gateway Timeout"},
		Kernel:    []string{},
		Advice: []string{
			"Check firewalls and security groups (a DROP rule gives silence, a REJECT rule an RST), routing, and whether the host is up.",
			"Capture on the server too: if SYNs arrive there but get no SYN-ACK, look at SYN queue overflows (`nstat TcpExtListenDrops`).",
		},
	},
	{
		ID:          Unknown,
		Title:       "reset with no verdict",
		Explanation: "rstscope could not match this reset to a known cause from the packets it saw; the facts it found are listed.",
		Signature:   "",
		AppSees:     []string{},
		Kernel:      []string{},
		Advice: []string{
			"Capture on both ends and, as root on Linux 6.10+, run `rstscope watch` to get the kernel's own reason for each RST.",
		},
	},
}

// Lookup returns the catalogue entry for id, or nil.
func Lookup(id ID) *Cause {
	for i := range Catalogue {
		if Catalogue[i].ID == id {
			return &Catalogue[i]
		}
	}
	return nil
}

// Valid reports whether id is in the catalogue.
func Valid(id ID) bool { return Lookup(id) != nil }

// KernelReasonCauses is the documented map from the kernel's reset reason
// (tcp:tcp_send_reset's sk_rst_reason name) to the causes it is consistent
// with. The lab's tests check rstscope's verdict against it.
var KernelReasonCauses = map[string][]ID{
	"NO_SOCKET":                {Refused, UpstreamFailure, NoConnection, StaleKeepalive, KeepaliveRace},
	"TCP_TIMEWAIT_SOCKET":      {StaleKeepalive, KeepaliveRace, DataAfterClose},
	"TCP_ABORT_ON_DATA":        {DataAfterClose, StaleKeepalive, KeepaliveRace},
	"TCP_ABORT_ON_CLOSE":       {UnreadDataClose, KeepaliveRace},
	"TCP_STATE":                {AbortiveClose},
	"TCP_ABORT_ON_LINGER":      {AbortiveClose},
	"TCP_DISCONNECT_WITH_DATA": {AbortiveClose},
	"TCP_FLAGS":                {NoConnection, ListenOverflow},
	"INVALID_SYN":              {ListenOverflow},
	"TCP_KEEPALIVE_TIMEOUT":    {NoConnection},
	"TCP_ABORT_ON_MEMORY":      {Unknown},
}

// Agrees reports whether a verdict is consistent with the kernel's reason.
// An unknown reason (or NOT_SPECIFIED) agrees with everything.
func Agrees(reason string, id ID) bool {
	ids, ok := KernelReasonCauses[reason]
	if !ok {
		return true
	}
	for _, c := range ids {
		if c == id {
			return true
		}
	}
	return false
}

// Setting is one client or server knob that decides idle-connection behaviour.
type Setting struct {
	Stack   string // e.g. "okhttp"
	Setting string // the knob
	Default string // its default
	Advice  string // what to do with it
}

// IdleSettings are the idle-timeout defaults of common stacks
// (../shared/notes/reset-causes.md), used by stale-keepalive advice and by
// `rstscope keepalive`.
var IdleSettings = []Setting{
	{"okhttp", "ConnectionPool(maxIdle, keepAlive, unit); retryOnConnectionFailure", "5 idle, 5 min; retry true", "keepAlive below the server's idle timeout"},
	{"Go net/http", "Transport.IdleConnTimeout", "90 s (retries idempotent requests on reused connections)", "IdleConnTimeout below the server's"},
	{"Java HttpClient", "-Djdk.httpclient.keepalive.timeout", "1200 s; 30 s since JDK 20", "set below the server's"},
	{"Apache HttpClient", "evictIdleConnections / validateAfterInactivity", "4.4+: validate after 2 s; 5.x keep-alive 3 min", "evict idle connections below the server's timeout"},
	{"Node http.Agent", "keepAlive, timeout (freeSocketTimeout)", "keep-alive on since v19, 5 s", "below the server's; servers behind a 60 s LB: keepAliveTimeout > 60 s"},
	{"Node undici / fetch", "keepAliveTimeout", "4 s", "below the server's"},
	{"Python urllib3/requests", "(no idle timeout); Retry(allowed_methods=...)", "none", "retry idempotent requests"},
	{"nginx (server)", "keepalive_timeout", "75 s (stock nginx.conf 65 s)", "longer than clients' pool idle timeouts"},
	{"nginx (upstream)", "upstream { keepalive_timeout }", "60 s", "below the backend's idle timeout"},
	{"AWS ALB", "idle timeout", "60 s", "targets' keep-alive must exceed it"},
	{"AWS NLB", "TCP idle timeout", "350 s", "TCP keepalive more often than 350 s"},
	{"GCP external LB", "backend keep-alive", "client 610 s, backend 600 s", "backend keep-alive > 600 s"},
}

// KnownIdleTimeouts are idle timeouts (seconds) common enough that an
// observed idle gap close to one names a likely culprit.
var KnownIdleTimeouts = []struct {
	Seconds float64
	Who     string
}{
	{4, "undici keepAliveTimeout"}, {5, "Node.js server keepAliveTimeout (or a server set to 5 s, as in the article)"}, {30, "a common pool/LB setting"},
	{60, "nginx upstream keepalive_timeout / AWS ALB"}, {65, "stock nginx.conf keepalive_timeout"},
	{75, "nginx keepalive_timeout default"}, {90, "Go http.Transport IdleConnTimeout"},
	{300, "okhttp ConnectionPool keep-alive"}, {350, "AWS NLB / NAT gateway"},
	{600, "GCP LB backend"}, {610, "GCP LB client"}, {3600, "Envoy idle_timeout"},
}
