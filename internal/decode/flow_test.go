package decode

import (
	"testing"

	"github.com/rstscope/rstscope/internal/source"
)

// PeekFlow must succeed on the framings it claims (the sharded engine's fast
// path) and name Decode's flow there; everything else is left to Decode.
func TestPeekFlow(t *testing.T) {
	peeked := map[string]bool{}
	for _, c := range linkCases() {
		var f Flow
		ok := PeekFlow(&f, c.link, c.frame)
		var p Parsed
		p.Decode(c.link, c.frame)
		if ok && p.Status == OK && f != p.Flow() {
			t.Errorf("%s: PeekFlow %+v, Decode %+v", c.name, f, p.Flow())
		}
		// Every framing of a plain TCP segment is peeked.
		plain := p.Status == OK
		if plain != ok {
			t.Errorf("%s: PeekFlow ok=%v, want %v", c.name, ok, plain)
		}
		peeked[c.name] = ok
	}
	if !peeked["ethernet/ipv4"] || !peeked["sll2/ipv6"] || !peeked["null-be/ipv6-30"] || !peeked["ethernet/qinq-9100/ipv6"] {
		t.Errorf("common framings not peeked: %v", peeked)
	}
	for _, c := range []struct {
		name  string
		frame []byte
	}{
		{"udp", ether(0x0800, ipv4(v4a, v4b, 17, nil, make([]byte, 40)))},
		{"ipv4 fragment", ether(0x0800, setU16(v4pkt, 6, 0x0010))},
		{"ipv6 hop-by-hop", ether(0x86dd, ipv6(v6a, v6b, nil, 0, cat([]byte{6, 0, 0, 0, 0, 0, 0, 0}, dataSeg.bytes())))},
		{"cut before the ports", ether(0x0800, v4pkt[:21])},
		{"nine tags", ether(0x8100, cat(tag(1, 0x8100), tag(2, 0x8100), tag(3, 0x8100), tag(4, 0x8100), tag(5, 0x8100), tag(6, 0x8100), tag(7, 0x8100), tag(8, 0x8100), tag(9, 0x0800), v4pkt))},
		{"tag cut", ether(0x8100, []byte{0, 1})},
	} {
		if f := (Flow{}); PeekFlow(&f, source.LinkEthernet, c.frame) {
			t.Errorf("%s: PeekFlow ok with %+v, want left to Decode", c.name, f)
		}
	}
}
