package watch

import (
	"net/netip"
	"slices"

	"github.com/rstscope/rstscope/internal/bpfilter"
	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/kjoin"
	"github.com/rstscope/rstscope/internal/ktrace"
)

// KernelReset is a reset the kernel reported (tcp:tcp_send_reset or
// tcp:tcp_receive_reset) that no captured RST accounts for: the connection
// was outside the capture filter, on another interface than the one captured,
// in another network namespace (the tracepoints see the whole host), or the
// packet was dropped by the capture.
type KernelReset struct {
	Time int64 // Unix ns
	// Sent and Received say which events were seen: the host's stack sent
	// the RST, a socket of the host received it, or both (a reset between
	// two local sockets, e.g. over loopback).
	Sent, Received bool
	// Local is the host's socket (the sender for Sent, the receiver
	// otherwise); Remote the other end.
	Local, Remote netip.AddrPort
	Reason        string // sk_rst_reason for Sent ("" when only received)
	State         string // socket state for Sent, "" if none
	// InFilter says whether the connection matches the capture filter
	// (--port, --host): if it does, the capture should have seen the RST
	// (another interface or namespace, or a capture drop).
	InFilter bool
	// Causes are the catalogue causes that usually go with Reason.
	Causes []cause.ID
	PID    int
	Comm   string
}

// kernelSide keeps the kernel's events until each is either tied to a
// captured RST or old enough to be reported as a KernelReset. Send events
// live in a kjoin.Joiner (which hands each to at most one RST); receive
// events, which kjoin does not match, are kept here.
type kernelSide struct {
	join   kjoin.Joiner
	recv   []heldRecv
	filter bpfilter.Options
	// matched counts captured RSTs given a kernel reason.
	matched uint64
}

type heldRecv struct {
	ev   ktrace.Event
	used bool
}

const maxHeldRecv = 65536

func (k *kernelSide) add(ev ktrace.Event) {
	switch ev.Kind {
	case ktrace.Send:
		k.join.Add(ev)
	case ktrace.Receive:
		if len(k.recv) >= maxHeldRecv {
			n := copy(k.recv, k.recv[len(k.recv)/2:])
			clear(k.recv[n:])
			k.recv = k.recv[:n]
		}
		k.recv = append(k.recv, heldRecv{ev: ev})
	}
}

// claimRecv marks the receive event of an RST sent from src to dst at ts as
// accounted for by a captured packet.
func (k *kernelSide) claimRecv(src, dst netip.AddrPort, ts int64) bool {
	for i := range k.recv {
		h := &k.recv[i]
		if !h.used && h.ev.Src == dst && h.ev.Dst == src && abs(h.ev.Time-ts) <= kjoin.Window {
			h.used = true
			return true
		}
	}
	return false
}

// flush reports the events older than cutoff that no captured RST claimed,
// and forgets every event older than cutoff.
func (k *kernelSide) flush(cutoff int64, report func(KernelReset)) {
	for _, ev := range k.join.Unmatched() {
		if ev.Time >= cutoff {
			continue
		}
		kr := KernelReset{Time: ev.Time, Sent: true, Local: ev.Src, Remote: ev.Dst, Reason: ev.Reason,
			State: ev.State, PID: ev.PID, Comm: ev.Comm}
		// Both ends local (loopback, containers): the receiving socket's
		// event is the same reset; report them once.
		for i := range k.recv {
			h := &k.recv[i]
			if !h.used && h.ev.Src == ev.Dst && h.ev.Dst == ev.Src && abs(h.ev.Time-ev.Time) <= kjoin.Window {
				h.used = true
				kr.Received = true
				break
			}
		}
		report(k.finish(kr))
	}
	k.join.Expire(cutoff + kjoin.Window)
	i := 0
	for ; i < len(k.recv) && k.recv[i].ev.Time < cutoff; i++ {
		h := &k.recv[i]
		if h.used {
			continue
		}
		report(k.finish(KernelReset{Time: h.ev.Time, Received: true, Local: h.ev.Src, Remote: h.ev.Dst,
			PID: h.ev.PID, Comm: h.ev.Comm}))
	}
	if i > 0 {
		n := copy(k.recv, k.recv[i:])
		clear(k.recv[n:])
		k.recv = k.recv[:n]
	}
}

func (k *kernelSide) finish(kr KernelReset) KernelReset {
	kr.InFilter = matchesFilter(k.filter, kr.Local, kr.Remote)
	if kr.Reason != "" {
		kr.Causes = slices.Clone(cause.KernelReasonCauses[kr.Reason])
	}
	return kr
}

// matchesFilter applies the capture filter's selection to a connection, as
// the BPF program does to its packets.
func matchesFilter(o bpfilter.Options, a, b netip.AddrPort) bool {
	if len(o.Ports) > 0 && !slices.Contains(o.Ports, a.Port()) && !slices.Contains(o.Ports, b.Port()) {
		return false
	}
	if len(o.Hosts) > 0 {
		ok := false
		for _, h := range o.Hosts {
			h = h.Unmap().WithZone("")
			if h == a.Addr().Unmap().WithZone("") || h == b.Addr().Unmap().WithZone("") {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
