package why

import (
	"regexp"

	"github.com/rstscope/rstscope/internal/cause"
)

// Rule recognises one error message. When its pattern matches, each cause in
// Causes gains Weight; Fit is the sentence that says why the cause fits this
// message. Rules are checked in order; all matching rules add up, so a stack
// trace that shows both okhttp's "unexpected end of stream" and its
// "\n not found: limit=0" counts twice for stale-keepalive.
type Rule struct {
	Name    string         // what was recognised, e.g. `okhttp "unexpected end of stream"`
	Pattern *regexp.Regexp // matched against the whole text
	Causes  []Weighted
	// Proxy: the message comes from a proxy about its upstream, so the
	// capture belongs on the proxy host.
	Proxy bool
	// Supersedes names rules that a match of this one makes redundant (a
	// specific nginx line contains the generic "Connection refused").
	Supersedes []string
}

// Weighted is one cause a rule points at.
type Weighted struct {
	ID     cause.ID
	Weight int
	Fit    string
}

func re(s string) *regexp.Regexp { return regexp.MustCompile(s) }

// The sentences shared by several rules.
const (
	fitRefused     = "A refusal is an RST in answer to the SYN: nothing listened on that address and port (or a firewall rejected)."
	fitStaleRead   = "End of stream before any response byte is what a client reads when it reuses a pooled connection the server had already closed after its idle timeout."
	fitRace        = "If the failure came right at the server's idle timeout, the request and the server's closing FIN crossed in flight."
	fitResetPool   = "Resets on reused connections are most often a pool keeping idle connections longer than the server does."
	fitResetUnread = "A server that answers early (401, 413) or a process that closes with unread data resets instead of closing cleanly."
	fitResetPeer   = "If the peer restarted or a NAT or load balancer forgot an idle connection, the next packet gets an RST from a host with no state for it."
	fitResetLinger = "Load balancers, HAProxy `option nolinger` and code using SO_LINGER 0 reset connections on purpose."
	fitResetMbox   = "A firewall or IDS in the path can forge the RST; only a capture on both ends tells."
	fitUpstream    = "The message is the proxy's report of its own connection to the upstream failing; clients get a 502/503/504."
	fitTimeout     = "A timeout with no RST means the SYNs (or the answers) were dropped: a firewall, a down host, or a full listen queue."
)

// genericReset is what a bare "connection reset" supports.
func genericReset(pool int) []Weighted {
	return []Weighted{
		{cause.StaleKeepalive, pool, fitResetPool},
		{cause.NoConnection, 5, fitResetPeer},
		{cause.UnreadDataClose, 4, fitResetUnread},
		{cause.AbortiveClose, 3, fitResetLinger},
		{cause.Middlebox, 2, fitResetMbox},
	}
}

// Rules is the error-message map. Order matters only for the "recognised"
// list in reports; scores decide the ranking.
var Rules = []Rule{
	// --- nginx error.log: the proxy's view of its upstream ---
	{Name: "nginx: connect() to upstream refused (111)", Proxy: true,
		Pattern:    re(`connect\(\) (?:to \S+ )?failed \(111: Connection refused\) while connecting to upstream`),
		Supersedes: []string{"connection refused"},
		Causes: []Weighted{
			{cause.UpstreamFailure, 12, "nginx could not connect to the upstream: the upstream process is down or not listening, so nginx returns 502."},
			{cause.Refused, 9, "The upstream host answered nginx's SYN with RST: nothing listens on the upstream address and port."},
		}},
	{Name: "nginx: upstream prematurely closed connection", Proxy: true,
		Pattern: re(`upstream prematurely closed connection`),
		Causes: []Weighted{
			{cause.UpstreamFailure, 12, "The upstream closed the connection (FIN) before sending a full response: it crashed, was killed or restarted mid-request, or closed an idle pooled connection."},
			{cause.StaleKeepalive, 7, "With `keepalive` in the upstream block, nginx reuses idle upstream connections: if the backend's idle timeout is shorter than nginx's upstream keepalive_timeout (60 s), nginx sends requests on connections the backend already closed."},
			{cause.KeepaliveRace, 5, fitRace},
		}},
	{Name: "nginx: recv() failed (104: Connection reset by peer) from upstream", Proxy: true,
		Pattern:    re(`\(104: Connection reset by peer\)[^\n]*upstream`),
		Supersedes: []string{"connection reset"},
		Causes: []Weighted{
			{cause.UpstreamFailure, 12, "The upstream reset nginx's connection while nginx waited for the response: nginx returns 502."},
			{cause.StaleKeepalive, 7, "With upstream `keepalive`, the reset often answers a request sent on an idle upstream connection the backend had already closed."},
			{cause.UnreadDataClose, 4, fitResetUnread},
			{cause.AbortiveClose, 3, fitResetLinger},
		}},
	{Name: "nginx: upstream timed out (110)", Proxy: true,
		Pattern: re(`upstream timed out \(110: Connection timed out\)`),
		Causes: []Weighted{
			{cause.UpstreamFailure, 10, "nginx gave up on the upstream (504): it did not answer in time."},
			{cause.UnansweredSYN, 8, fitTimeout},
		}},
	{Name: "nginx: no live upstreams", Proxy: true,
		Pattern: re(`no live upstreams while connecting to upstream`),
		Causes: []Weighted{
			{cause.UpstreamFailure, 12, "nginx had marked every upstream server as failed (max_fails) and did not even try: earlier connects failed."},
			{cause.Refused, 5, "The earlier failures are usually refused connections to a stopped upstream."},
		}},

	// --- Envoy ---
	{Name: "Envoy: upstream connect error or disconnect/reset before headers", Proxy: true,
		Pattern: re(`upstream connect error or disconnect/reset before headers`),
		Causes: []Weighted{
			{cause.UpstreamFailure, 11, "Envoy could not get a response from the upstream (503): the connection failed or was reset or closed before response headers."},
		}},
	{Name: "Envoy reset reason: connection termination", Proxy: true,
		Pattern: re(`reset reason: (?:remote )?connection termination`),
		Causes: []Weighted{
			{cause.StaleKeepalive, 9, "\"connection termination\" means the upstream closed a connection Envoy had pooled: the backend's idle timeout is shorter than Envoy's upstream idle_timeout (1 h by default)."},
			{cause.KeepaliveRace, 6, fitRace},
		}},
	{Name: "Envoy reset reason: connection failure", Proxy: true,
		Pattern: re(`reset reason: (?:remote |local )?connection failure|delayed connect error: 111|transport failure reason:[^\n]*(?:111|Connection refused)`),
		Causes: []Weighted{
			{cause.Refused, 10, "\"connection failure\" means Envoy's connect to the upstream failed, most often refused: the upstream is down or listens elsewhere."},
			{cause.UnansweredSYN, 3, fitTimeout},
		}},
	{Name: "Envoy reset reason: overflow", Proxy: true,
		Pattern: re(`reset reason: overflow`),
		Causes: []Weighted{
			{cause.UpstreamFailure, 6, "\"overflow\" is Envoy's own circuit breaker (max connections/requests/pending) refusing the request: not a TCP reset at all."},
		}},

	// --- okhttp / Java ---
	{Name: `okhttp: "unexpected end of stream"`,
		Pattern: re(`unexpected end of stream on`),
		Causes: []Weighted{
			{cause.StaleKeepalive, 12, fitStaleRead + " okhttp's pool keeps idle connections 5 min by default and checks health only for non-GET requests."},
			{cause.KeepaliveRace, 7, fitRace},
			{cause.DataAfterClose, 3, "The server may have closed the connection after its last response without sending `Connection: close`."},
		}},
	{Name: `okio: "\n not found: limit=0"`,
		Pattern: re(`\\n not found: limit=0`),
		Causes: []Weighted{
			{cause.StaleKeepalive, 4, "okio found no status line at all (limit=0): the connection was already at end of stream when the request was sent."},
		}},
	{Name: "Apache HttpClient: NoHttpResponseException",
		Pattern: re(`NoHttpResponseException|failed to respond`),
		Causes: []Weighted{
			{cause.StaleKeepalive, 11, fitStaleRead},
			{cause.KeepaliveRace, 6, fitRace},
		}},
	{Name: "Java: ConnectException: Connection refused",
		Pattern:    re(`java\.net\.ConnectException: Connection refused|Failed to connect to \S+/[0-9a-fA-F.:\[\]]+:\d+`),
		Supersedes: []string{"connection refused"},
		Causes:     []Weighted{{cause.Refused, 12, fitRefused}},
	},
	{Name: "Java: connect timed out",
		Pattern: re(`(?i)SocketTimeoutException: connect timed out|ConnectTimeoutException|HttpConnectTimeoutException`),
		Causes:  []Weighted{{cause.UnansweredSYN, 12, fitTimeout}},
	},

	// --- Go ---
	{Name: `Go: "http: server closed idle connection"`,
		Pattern: re(`server closed idle connection`),
		Causes: []Weighted{
			{cause.StaleKeepalive, 12, "Go's transport noticed the server closed a pooled idle connection just as it reused it; it retries idempotent requests, so this surfaces for POST and other non-replayable requests."},
			{cause.KeepaliveRace, 8, fitRace},
		}},
	{Name: `Go: "EOF" from an HTTP request`,
		Pattern: re(`(?m)(?:^|": |: )(?:unexpected )?EOF\s*$`),
		Causes: []Weighted{
			{cause.StaleKeepalive, 9, fitStaleRead + " Go reports it as a bare EOF."},
			{cause.KeepaliveRace, 6, fitRace},
			{cause.UpstreamFailure, 3, "A proxy in front that closes the client connection when its upstream fails also gives EOF."},
		}},
	{Name: "Go: dial tcp ... i/o timeout",
		Pattern: re(`dial tcp [^\n]*(?:i/o timeout|connection timed out)`),
		Causes:  []Weighted{{cause.UnansweredSYN, 12, fitTimeout}},
	},

	// --- Node ---
	{Name: `Node: "socket hang up"`,
		Pattern: re(`socket hang up`),
		Causes: []Weighted{
			{cause.StaleKeepalive, 10, "Node reports \"socket hang up\" when the connection ends before a response: typically a keep-alive socket (on by default since Node 19) the server had closed."},
			{cause.KeepaliveRace, 7, fitRace},
			{cause.UpstreamFailure, 3, "A proxy in front may have closed the connection because its upstream failed."},
		}},
	{Name: "Node: connect ECONNREFUSED",
		Pattern:    re(`connect ECONNREFUSED`),
		Supersedes: []string{"connection refused"},
		Causes:     []Weighted{{cause.Refused, 12, fitRefused}},
	},

	// --- Python ---
	{Name: "Python: RemoteDisconnected",
		Pattern: re(`RemoteDisconnected|Remote end closed connection without response`),
		Causes: []Weighted{
			{cause.StaleKeepalive, 11, fitStaleRead + " requests/urllib3 have no pool idle timeout at all."},
			{cause.KeepaliveRace, 6, fitRace},
		}},
	{Name: "Python: ConnectionRefusedError / NewConnectionError",
		Pattern:    re(`ConnectionRefusedError|Errno 111\]|Failed to establish a new connection: \[Errno 111\]`),
		Supersedes: []string{"connection refused"},
		Causes:     []Weighted{{cause.Refused, 12, fitRefused}},
	},

	// --- curl ---
	{Name: "curl (7): failed to connect",
		Pattern:    re(`curl: \(7\)|Failed to connect to \S+ port \d+`),
		Supersedes: []string{"connection refused"},
		Causes: []Weighted{
			{cause.Refused, 12, "curl error 7 is a failed connect; with \"Connection refused\" (or after 0 ms) the SYN was answered by RST: nothing listens there, or a firewall rejects."},
			{cause.UnansweredSYN, 3, "If it took seconds and says \"timed out\" or \"Couldn't connect\", the SYNs were dropped instead."},
		}},
	{Name: "curl (52): empty reply from server",
		Pattern: re(`curl: \(52\)|Empty reply from server`),
		Causes: []Weighted{
			{cause.UpstreamFailure, 7, "The server accepted the request and closed the connection without a byte: a proxy whose upstream failed, or a server that crashed handling it."},
			{cause.DataAfterClose, 4, "The server closed its side right after the connection opened (or after the request) without answering."},
			{cause.Middlebox, 3, "A firewall or proxy in the path may have cut the connection."},
		}},
	{Name: "curl (56): recv failure",
		Pattern:    re(`curl: \(56\)|Recv failure: Connection reset by peer`),
		Supersedes: []string{"connection reset"},
		Causes: []Weighted{
			// curl's command line opens a fresh connection: a stale pool is unlikely.
			{cause.UnreadDataClose, 7, "curl opens a fresh connection, so a stale pool is unlikely: " + fitResetUnread},
			{cause.AbortiveClose, 6, fitResetLinger},
			{cause.NoConnection, 5, fitResetPeer},
			{cause.Middlebox, 4, fitResetMbox},
			{cause.ListenOverflow, 3, "A reset right after connecting also happens when the server's accept queue is full (tcp_abort_on_overflow=1)."},
		}},
	{Name: "curl (28): timeout",
		Pattern: re(`curl: \(28\)`),
		Causes:  []Weighted{{cause.UnansweredSYN, 10, fitTimeout}},
	},

	// --- generic, any language ---
	{Name: "connection reset",
		Pattern: re(`(?i)connection reset|ECONNRESET|Errno 104|ConnectionResetError|\(104: Connection reset by peer\)|WSAECONNRESET|forcibly closed by the remote host`),
		Causes:  genericReset(7),
	},
	{Name: "connection refused",
		Pattern: re(`(?i)connection refused|ECONNREFUSED|actively refused`),
		Causes:  []Weighted{{cause.Refused, 10, fitRefused}},
	},
	{Name: "broken pipe",
		Pattern: re(`(?i)broken pipe|EPIPE`),
		Causes: []Weighted{
			{cause.DataAfterClose, 8, "Broken pipe is a write to a connection the peer had already closed or reset."},
			{cause.StaleKeepalive, 6, fitResetPool},
			{cause.UnreadDataClose, 3, fitResetUnread},
		}},
	{Name: "timeout",
		Pattern: re(`(?i)ETIMEDOUT|connection timed out|connect timed out`),
		Causes:  []Weighted{{cause.UnansweredSYN, 8, fitTimeout}},
	},
	{Name: "HTTP 502/503/504 from a proxy",
		Pattern: re(`\b50[234] (?:Bad Gateway|Service Unavailable|Gateway Time-?out)\b`),
		Causes: []Weighted{
			{cause.UpstreamFailure, 8, "A 502/503/504 is a proxy or load balancer reporting that its upstream failed; its error log has the TCP-level reason."},
		}},
}
