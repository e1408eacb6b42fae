package kjoin

import (
	"net/netip"
	"testing"

	"github.com/rstscope/rstscope/internal/ktrace"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestMatch(t *testing.T) {
	var j Joiner
	j.Add(ktrace.Event{Kind: ktrace.Receive, Time: 1000, Src: ap("127.0.0.5:80"), Dst: ap("127.0.0.2:4000")})
	j.Add(ktrace.Event{Kind: ktrace.Send, Time: 1000, Src: ap("127.0.0.5:80"), Dst: ap("127.0.0.2:4000"), Reason: "NO_SOCKET"})
	j.Add(ktrace.Event{Kind: ktrace.Send, Time: 5e9, Src: ap("127.0.0.5:80"), Dst: ap("127.0.0.2:4000"), Reason: "TCP_STATE"})
	j.Add(ktrace.Event{Kind: ktrace.Send, Time: 2000, Src: ap("127.0.0.5:80"), Dst: ap("0.0.0.0:0"), Reason: "INVALID_SYN"})

	// The nearest send event with the same addresses, once.
	ev, ok := j.Match(ap("127.0.0.5:80"), ap("127.0.0.2:4000"), 1500)
	if !ok || ev.Reason != "NO_SOCKET" {
		t.Fatalf("got %v %v, want NO_SOCKET", ev.Reason, ok)
	}
	// Used: the next RST at the same time falls back to the listener event.
	ev, ok = j.Match(ap("127.0.0.5:80"), ap("127.0.0.2:4000"), 1500)
	if !ok || ev.Reason != "INVALID_SYN" {
		t.Fatalf("got %v %v, want the listener's INVALID_SYN", ev.Reason, ok)
	}
	// Out of the time window: nothing.
	if ev, ok := j.Match(ap("127.0.0.5:80"), ap("127.0.0.2:4000"), 2e9); ok {
		t.Fatalf("matched %v outside the window", ev)
	}
	// Other addresses: nothing.
	if _, ok := j.Match(ap("127.0.0.9:80"), ap("127.0.0.2:4000"), 5e9); ok {
		t.Fatal("matched another sender")
	}
	if got := j.Unmatched(); len(got) != 1 || got[0].Reason != "TCP_STATE" {
		t.Fatalf("unmatched %v", got)
	}
	j.Expire(10e9)
	if len(j.Unmatched()) != 0 {
		t.Fatal("Expire kept an old event")
	}
}

func TestComment(t *testing.T) {
	got := Comment(ktrace.Event{Reason: "TCP_TIMEWAIT_SOCKET", State: "TCP_TIME_WAIT"})
	if got != "rstscope: kernel tcp_send_reset reason=TCP_TIMEWAIT_SOCKET state=TCP_TIME_WAIT" {
		t.Fatal(got)
	}
	if got := Comment(ktrace.Event{}); got != CommentPrefix+" reason=NOT_SPECIFIED" {
		t.Fatal(got)
	}
}
