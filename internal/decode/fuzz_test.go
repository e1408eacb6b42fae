package decode

import (
	"testing"

	"github.com/rstscope/rstscope/internal/source"
)

var fuzzLinks = []uint32{source.LinkNull, source.LinkEthernet, source.LinkRaw, source.LinkLoop,
	source.LinkSLL, source.LinkIPv4, source.LinkIPv6, source.LinkSLL2, 12, 14}

// FuzzDecode decodes arbitrary bytes as every link type. The seed corpus
// (testdata/fuzz/FuzzDecode) holds valid frames of each kind and
// truncations of them.
func FuzzDecode(f *testing.F) {
	f.Add(ether(0x0800, v4pkt))
	f.Add(v6pkt)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, link := range fuzzLinks {
			var p Parsed
			p.Decode(link, data)
			checkInvariants(t, link, data, &p)
		}
	})
}

func checkInvariants(t *testing.T, link uint32, data []byte, p *Parsed) {
	t.Helper()
	if p.Status > BadLinkType {
		t.Fatalf("link %d: status %d out of range", link, p.Status)
	}
	switch p.IPVersion {
	case 0:
		if p.Src.IsValid() || p.Dst.IsValid() || p.Status == OK || p.Status == NotTCP || p.Status == Fragment {
			t.Fatalf("link %d: %v without IP fields: %+v", link, p.Status, p)
		}
	case 4:
		if !p.Src.Is4() || !p.Dst.Is4() {
			t.Fatalf("link %d: IPv4 with %v %v", link, p.Src, p.Dst)
		}
	case 6:
		if !p.Src.Is6() || !p.Dst.Is6() || p.IPID != 0 || p.DF {
			t.Fatalf("link %d: IPv6 with %v %v id %d df %v", link, p.Src, p.Dst, p.IPID, p.DF)
		}
	default:
		t.Fatalf("link %d: IP version %d", link, p.IPVersion)
	}
	if p.IPVersion != 0 && (words(p.Src) != p.SrcWords || words(p.Dst) != p.DstWords) {
		t.Fatalf("link %d: address words %x %x for %v %v", link, p.SrcWords, p.DstWords, p.Src, p.Dst)
	}
	// The sharded engine routes frames by PeekFlow: it must name the flow
	// Decode finds whenever both succeed.
	if f := (Flow{}); PeekFlow(&f, link, data) && p.Status == OK && f != p.Flow() {
		t.Fatalf("link %d: PeekFlow %+v, Decode %+v", link, f, p.Flow())
	}
	if p.Status != OK {
		if p.Payload != nil || p.PayloadLen != 0 || p.Truncated || p.Tunneled || p.SrcPort != 0 || p.Flags != 0 {
			t.Fatalf("link %d: %v with TCP fields: %+v", link, p.Status, p)
		}
		return
	}
	if p.PayloadLen < 0 || len(p.Payload) > p.PayloadLen {
		t.Fatalf("link %d: payload %d bytes, PayloadLen %d", link, len(p.Payload), p.PayloadLen)
	}
	if !within(data, p.Payload) {
		t.Fatalf("link %d: payload not inside the input", link)
	}
	if p.Truncated != (len(p.Payload) < p.PayloadLen) {
		t.Fatalf("link %d: Truncated %v with %d of %d bytes", link, p.Truncated, len(p.Payload), p.PayloadLen)
	}
	if p.PayloadLen > len(data) && !p.Truncated {
		t.Fatalf("link %d: PayloadLen %d beyond a %d-byte frame, not truncated", link, p.PayloadLen, len(data))
	}
	if p.Opts.WScale < -1 || p.Opts.WScale > 14 {
		t.Fatalf("link %d: wscale %d", link, p.Opts.WScale)
	}
	if p.Tunneled && p.IPVersion != 6 {
		t.Fatalf("link %d: tunneled IPv%d", link, p.IPVersion)
	}
}

// TestDecodeInvariantsOnCases runs the fuzz invariants on every table case
// and every prefix of it, so they hold in plain `go test` too.
func TestDecodeInvariantsOnCases(t *testing.T) {
	var all []decodeCase
	all = append(all, linkCases()...)
	all = append(all, decodeCase{"teredo", source.LinkRaw, teredo(3544, 1, true, true, v6pkt), Parsed{}})
	for _, tc := range all {
		for n := 0; n <= len(tc.frame); n++ {
			for _, link := range fuzzLinks {
				var p Parsed
				p.Decode(link, tc.frame[:n])
				checkInvariants(t, link, tc.frame[:n], &p)
			}
		}
	}
}
