// Package kjoin ties the kernel's reset events (internal/ktrace) to the RST
// packets a capture saw, so each captured RST can carry the kernel's own
// reason. The reason travels as a pcapng packet comment in a fixed form that
// `rstscope analyze` reads back (see Comment and internal/diagnose).
package kjoin

import (
	"net/netip"
	"strings"

	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/ktrace"
)

// Window is how far apart (ns) a packet's capture time and the event's time
// may be: both come from the kernel's clock, converted to wall time.
const Window = 100e6

// Joiner holds recent send events and hands each to at most one RST.
type Joiner struct {
	events []held
	// Max bounds the events held (oldest dropped first). Default 65536.
	Max int
}

type held struct {
	ev   ktrace.Event
	used bool
}

// Add records an event. Only Send events carry a reason; Receive events are
// kept too (they tell which side saw the reset).
func (j *Joiner) Add(ev ktrace.Event) {
	max := j.Max
	if max == 0 {
		max = 65536
	}
	if len(j.events) >= max {
		n := copy(j.events, j.events[len(j.events)/2:])
		j.events = j.events[:n]
	}
	j.events = append(j.events, held{ev: ev})
}

// Expire forgets events older than ts - Window.
func (j *Joiner) Expire(ts int64) {
	i := 0
	for i < len(j.events) && j.events[i].ev.Time < ts-Window {
		i++
	}
	if i > 0 {
		n := copy(j.events, j.events[i:])
		j.events = j.events[:n]
	}
}

// Match finds the send event for an RST sent from src to dst at ts. An
// RST sent on behalf of a listening socket (accept queue overflow) is logged
// with the listener's addresses, whose peer is unspecified (0.0.0.0:0): such
// an event matches any RST from the listener's address, when no event names
// the exact peer.
func (j *Joiner) Match(src, dst netip.AddrPort, ts int64) (ktrace.Event, bool) {
	if ev, ok := j.match(src, dst, ts, false); ok {
		return ev, true
	}
	return j.match(src, dst, ts, true)
}

func (j *Joiner) match(src, dst netip.AddrPort, ts int64, listener bool) (ktrace.Event, bool) {
	best := -1
	var bestD int64
	for i := range j.events {
		h := &j.events[i]
		if h.used || h.ev.Kind != ktrace.Send || h.ev.Src != src {
			continue
		}
		if listener {
			if h.ev.Dst.Port() != 0 || !h.ev.Dst.Addr().IsUnspecified() {
				continue
			}
		} else if h.ev.Dst != dst {
			continue
		}
		d := h.ev.Time - ts
		if d < 0 {
			d = -d
		}
		if d <= Window && (best < 0 || d < bestD) {
			best, bestD = i, d
		}
	}
	if best < 0 {
		return ktrace.Event{}, false
	}
	j.events[best].used = true
	return j.events[best].ev, true
}

// MatchPacket is Match for a decoded RST packet.
func (j *Joiner) MatchPacket(p *decode.Parsed, ts int64) (ktrace.Event, bool) {
	if p.Status != decode.OK || p.Flags&decode.RST == 0 {
		return ktrace.Event{}, false
	}
	return j.Match(netip.AddrPortFrom(unmap(p.Src), p.SrcPort), netip.AddrPortFrom(unmap(p.Dst), p.DstPort), ts)
}

func unmap(a netip.Addr) netip.Addr { return a.Unmap() }

// Unmatched returns send events no packet claimed: resets the kernel sent on
// connections the capture did not see (outside its filter or interface).
func (j *Joiner) Unmatched() []ktrace.Event {
	var out []ktrace.Event
	for _, h := range j.events {
		if !h.used && h.ev.Kind == ktrace.Send {
			out = append(out, h.ev)
		}
	}
	return out
}

// CommentPrefix starts every comment rstscope writes for a kernel event.
const CommentPrefix = "rstscope: kernel tcp_send_reset"

// Comment is the pcapng packet comment for a matched event, e.g.
// "rstscope: kernel tcp_send_reset reason=NO_SOCKET state=TCP_CLOSE".
func Comment(ev ktrace.Event) string {
	var b strings.Builder
	b.WriteString(CommentPrefix)
	b.WriteString(" reason=")
	if ev.Reason == "" {
		b.WriteString("NOT_SPECIFIED")
	} else {
		b.WriteString(ev.Reason)
	}
	if ev.State != "" {
		b.WriteString(" state=")
		b.WriteString(ev.State)
	}
	return b.String()
}
