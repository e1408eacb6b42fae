// Package probe connects to a TCP address and tells apart the three answers a
// SYN can get: a SYN-ACK (open), an RST (refused: nothing listens, or a
// firewall rejects), or nothing at all (filtered or dropped). When the address
// belongs to this machine it also reads /proc, as `ss -lntp` does, to show
// what listens where and which process owns it, and names the near misses
// that most "connection refused" reports come down to: a service bound to
// 127.0.0.1 asked on another address, a neighbouring port, IPv6 only.
package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/rstscope/rstscope/internal/cause"
)

// State is what a connection attempt got back.
type State string

// The states, as they appear in JSON output.
const (
	Open        State = "open"        // SYN-ACK: something accepted the handshake
	Refused     State = "refused"     // RST (or ICMP port unreachable) to the SYN
	NoAnswer    State = "no-answer"   // nothing before the timeout: dropped or filtered
	Unreachable State = "unreachable" // ICMP host/network unreachable, or no route
	Failed      State = "error"       // anything else (address family unsupported, ...)
)

// Attempt is one connection attempt.
type Attempt struct {
	State   State         `json:"state"`
	Elapsed time.Duration `json:"-"`
	Ms      float64       `json:"ms"` // Elapsed in milliseconds, for JSON
	Err     string        `json:"error,omitempty"`
}

// MaxAddrs bounds how many resolved addresses are probed.
const MaxAddrs = 8

// MaxCount bounds attempts per address.
const MaxCount = 100

// Dial makes one attempt to connect to addr within timeout and classifies the
// result. An open connection is closed at once (with a normal FIN).
func Dial(ctx context.Context, addr netip.AddrPort, timeout time.Duration) Attempt {
	d := net.Dialer{Timeout: timeout}
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", addr.String())
	el := time.Since(start)
	a := Attempt{Elapsed: el, Ms: float64(el.Microseconds()) / 1000}
	if err == nil {
		c.Close()
		a.State = Open
		return a
	}
	a.Err = err.Error()
	a.State = Classify(err)
	return a
}

// Classify maps a dial error to a State.
func Classify(err error) State {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return Unreachable
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT),
		errors.As(err, &ne) && ne.Timeout():
		return NoAnswer
	}
	return Failed
}

// Options configure Run.
type Options struct {
	Timeout  time.Duration // per attempt; 0 means 3 s
	Count    int           // attempts per address; 0 means 1
	ProcRoot string        // "" means /proc; tests point it at fixtures
	// Local forces the local analysis on or off; nil decides by address.
	Local *bool
}

// Report is the outcome of probing one HOST:PORT.
type Report struct {
	Target  string       `json:"target"`
	Results []AddrResult `json:"results"`
}

// AddrResult is the outcome for one resolved address.
type AddrResult struct {
	Addr     netip.AddrPort `json:"addr"`
	Verdict  State          `json:"verdict"` // the last attempt's state
	Attempts []Attempt      `json:"attempts"`
	Cause    cause.ID       `json:"cause,omitempty"` // catalogue entry for a refused or unanswered SYN
	Local    bool           `json:"local"`           // the address belongs to this machine
	// Listeners is, when Local, who listens on this port and would accept
	// the connection.
	Listeners []ListenerInfo `json:"listeners,omitempty"`
	// NearMisses are listeners that almost match (only when nothing matches).
	NearMisses []NearMiss `json:"near_misses,omitempty"`
	Hints      []string   `json:"hints,omitempty"` // plain-words conclusions
	ProcErr    string     `json:"proc_error,omitempty"`
}

// ListenerInfo is a listener in a report.
type ListenerInfo struct {
	Addr  netip.AddrPort `json:"addr"`
	IPv6  bool           `json:"ipv6_socket"`
	Queue uint64         `json:"accept_queue"`
	Procs []Process      `json:"procs,omitempty"`
}

func info(l Listener) ListenerInfo {
	return ListenerInfo{Addr: l.Local, IPv6: l.IPv6, Queue: l.Queue, Procs: l.Procs}
}

// Run resolves target (HOST:PORT), probes every address and, for addresses
// of this machine, adds what /proc says about listeners.
func Run(ctx context.Context, target string, o Options) (*Report, error) {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("want HOST:PORT (e.g. localhost:8080, [::1]:443): %v", err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		if p, err2 := net.DefaultResolver.LookupPort(ctx, "tcp", portStr); err2 == nil && p > 0 {
			port = uint64(p)
		} else {
			return nil, fmt.Errorf("bad port %q", portStr)
		}
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if o.Count <= 0 {
		o.Count = 1
	}
	if o.Count > MaxCount {
		o.Count = MaxCount
	}
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a.Unmap()}
	} else {
		if host == "" {
			host = "localhost"
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err = net.DefaultResolver.LookupNetIP(rctx, "ip", host)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %v", host, err)
		}
	}
	if len(addrs) > MaxAddrs {
		addrs = addrs[:MaxAddrs]
	}
	rep := &Report{Target: target}
	var listeners []Listener
	var procErr error
	procRead := false
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a.Unmap(), uint16(port))
		r := AddrResult{Addr: ap, Local: IsLocal(ap.Addr())}
		if o.Local != nil {
			r.Local = *o.Local
		}
		// Read the listener table before connecting, so the probe's own
		// connection does not show up in a listener's accept queue.
		if r.Local && !procRead {
			listeners, procErr = ReadListeners(o.ProcRoot)
			procRead = true
		}
		for i := 0; i < o.Count; i++ {
			if ctx.Err() != nil {
				break
			}
			at := Dial(ctx, ap, o.Timeout)
			r.Attempts = append(r.Attempts, at)
		}
		if len(r.Attempts) > 0 {
			r.Verdict = r.Attempts[len(r.Attempts)-1].State
		}
		switch r.Verdict {
		case Refused:
			r.Cause = cause.Refused
		case NoAnswer:
			r.Cause = cause.UnansweredSYN
		}
		if r.Local {
			if procErr != nil {
				r.ProcErr = procErr.Error()
			} else {
				analyzeLocal(&r, listeners)
			}
		}
		rep.Results = append(rep.Results, r)
	}
	return rep, nil
}

// IsLocal reports whether a is an address of this machine: loopback,
// unspecified, or assigned to one of its interfaces.
func IsLocal(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() || a.IsUnspecified() {
		return true
	}
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range ifaddrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil && p.Addr().Unmap() == a {
			return true
		}
	}
	return false
}

// analyzeLocal fills Listeners, NearMisses and Hints from the listener table.
func analyzeLocal(r *AddrResult, ls []Listener) {
	var exact []Listener
	for _, l := range ls {
		if l.Local.Port() == r.Addr.Port() && Accepts(l, r.Addr.Addr()) {
			exact = append(exact, l)
			r.Listeners = append(r.Listeners, info(l))
		}
	}
	switch {
	case len(exact) == 0:
		r.NearMisses = NearMisses(r.Addr, ls)
		if r.Verdict == Refused {
			r.Hints = append(r.Hints, fmt.Sprintf("Nothing on this machine listens on %s: the kernel answered the SYN with RST.", r.Addr))
		}
	case r.Verdict == Refused:
		if onlyV6Wildcard(exact) && r.Addr.Addr().Is4() {
			r.NearMisses = append(r.NearMisses, NearMiss{Kind: IPv6Only, Listener: info(exact[0]),
				Text: fmt.Sprintf("%s is an IPv6 socket that does not take IPv4 (IPV6_V6ONLY); connect to [::1]:%d or listen on 0.0.0.0 too", exact[0].Local, r.Addr.Port())})
		} else {
			r.Hints = append(r.Hints, "A process listens here, yet the SYN was refused: a firewall rule rejects it (iptables/nft REJECT --reject-with tcp-reset), or the service just restarted.")
		}
	case r.Verdict == NoAnswer:
		r.Hints = append(r.Hints, fmt.Sprintf("A process listens here but did not complete the handshake: its accept queue is probably full (%d connections wait to be accepted; watch `nstat -az TcpExtListenOverflows`), or a firewall drops the SYNs.", exact[0].Queue))
	}
}

func onlyV6Wildcard(ls []Listener) bool {
	for _, l := range ls {
		if !(l.IPv6 && l.Local.Addr().Is6() && l.Local.Addr().IsUnspecified()) {
			return false
		}
	}
	return len(ls) > 0
}

// Accepts reports whether listener l would normally take a connection to a
// (same port assumed): same address, or the wildcard of a's family. An IPv6
// wildcard socket counts for IPv4 too: that is the Linux default
// (net.ipv6.bindv6only=0), though IPV6_V6ONLY sockets refuse IPv4 and /proc
// does not show the flag.
func Accepts(l Listener, a netip.Addr) bool {
	la := l.Local.Addr().Unmap()
	a = a.Unmap()
	switch {
	case la == a:
		return true
	case la.IsUnspecified() && la.Is4() && a.Is4():
		return true
	case la.IsUnspecified() && la.Is6():
		return true // dual-stack unless IPV6_V6ONLY
	}
	return false
}

// NearMissKind names a near miss in JSON.
type NearMissKind string

// The near misses.
const (
	LoopbackOnly NearMissKind = "loopback-only"     // bound to 127.x/::1, asked on another address
	OtherAddress NearMissKind = "other-address"     // bound to one specific address, asked on another
	IPv6Only     NearMissKind = "ipv6-only"         // IPv6 socket, asked over IPv4
	IPv4Only     NearMissKind = "ipv4-only"         // IPv4 socket, asked over IPv6
	NearPort     NearMissKind = "neighbouring-port" // right address, port a little off
)

// NearMiss is a listener the user probably meant.
type NearMiss struct {
	Kind     NearMissKind `json:"kind"`
	Listener ListenerInfo `json:"listener"`
	Text     string       `json:"text"`
}

// nearPortDistance is how far a port may be from the asked one to count as a
// neighbour; alternatePorts adds the usual pairs further apart.
const nearPortDistance = 10

var alternatePorts = map[uint16][]uint16{
	80: {8080, 8000, 8008}, 8080: {80, 8000, 8008}, 8000: {80, 8080}, 8008: {80, 8080},
	443: {8443}, 8443: {443},
}

// NearMisses lists listeners that almost match target: the same port on
// another address (loopback-only, other-address, ipv6-only, ipv4-only) or a
// neighbouring port on an address that would accept target.
func NearMisses(target netip.AddrPort, ls []Listener) []NearMiss {
	var out []NearMiss
	ta := target.Addr().Unmap()
	tp := target.Port()
	for _, l := range ls {
		la := l.Local.Addr().Unmap()
		lp := l.Local.Port()
		if lp == tp {
			if Accepts(l, ta) {
				continue
			}
			nm := NearMiss{Listener: info(l)}
			switch {
			case ta.Is4() && la.Is6():
				nm.Kind = IPv6Only
				nm.Text = fmt.Sprintf("listens on %s (IPv6 only); you asked %s over IPv4", l.Local, target)
			case ta.Is6() && la.Is4():
				nm.Kind = IPv4Only
				nm.Text = fmt.Sprintf("listens on %s (IPv4 only); you asked %s over IPv6: try %s", l.Local, target, netip.AddrPortFrom(la, lp))
			case la.IsLoopback() && !ta.IsLoopback():
				nm.Kind = LoopbackOnly
				nm.Text = fmt.Sprintf("listens on %s only, reachable from this machine alone; you asked %s: bind to 0.0.0.0 or [::] (or %s)", l.Local, target, ta)
			default:
				nm.Kind = OtherAddress
				nm.Text = fmt.Sprintf("listens on %s only; you asked %s: connect to %s, or bind to the wildcard address", l.Local, target, l.Local)
			}
			out = append(out, nm)
			continue
		}
		if Accepts(l, ta) && nearPort(tp, lp) {
			out = append(out, NearMiss{Kind: NearPort, Listener: info(l),
				Text: fmt.Sprintf("port %d is open on %s: did you mean %s?", lp, l.Local.Addr(), netip.AddrPortFrom(ta, lp))})
		}
	}
	return out
}

func nearPort(want, have uint16) bool {
	d := int(want) - int(have)
	if d < 0 {
		d = -d
	}
	if d > 0 && d <= nearPortDistance {
		return true
	}
	for _, p := range alternatePorts[want] {
		if p == have {
			return true
		}
	}
	return false
}
