package conntrack

import (
	"fmt"
	"testing"

	"github.com/rstscope/rstscope/internal/decode"
)

// A long connection keeps its first headPkts packets and its last
// tailPkts, in order, expanded with every field; notes and HTTP messages
// are found on their packets, also after the tail ring wrapped and after
// a flip of the roles.
func TestPacketRecords(t *testing.T) {
	for _, n := range []int{1, headPkts, inlineRecs - 1, inlineRecs, inlineRecs + 1, headPkts + tailPkts, 100, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			h := newHarness(t, Config{})
			var sent []decode.Parsed
			h.tap = func(p decode.Parsed, ts int64) { sent = append(sent, p) }
			v := h.conv(cli, srv, 1000, 5000, sec)
			var c *Conn
			for i := 0; i < n; i++ {
				switch {
				case i == 0:
					c = v.s(SYN|ACK, "") // the first packet is a SYN-ACK: its sender is the server
				case i%7 == 3:
					c = v.c(PSH|ACK, "GET /x HTTP/1.1\r\n\r\n")
				case i%7 == 4:
					c = v.s(PSH|ACK, "HTTP/1.1 200 OK\r\n\r\n")
				default:
					c = v.c(ACK, "")
				}
				if i%5 == 0 {
					c.AddNote(h.num, fmt.Sprint("note ", h.num))
				}
				if i == 1 {
					c.AddNote(h.num-1, "second note") // the packet's first note wins
				}
			}
			got := h.flush()[0]
			var want []uint64
			for i := 1; i <= n; i++ {
				if i <= headPkts || i > n-tailPkts {
					want = append(want, uint64(i))
				}
			}
			if len(got.Pkts) != len(want) {
				t.Fatalf("%d records, want %d", len(got.Pkts), len(want))
			}
			for i, p := range got.Pkts {
				s := sent[p.Num-1]
				if p.Num != want[i] || p.Seq != s.Seq || p.Ack != s.Ack || p.Flags != s.Flags || p.Win != s.Window ||
					p.Len != uint32(s.PayloadLen) || p.TTL != s.TTL || p.HasTS != s.Opts.HasTS || p.TS != sec+int64(p.Num-1)*ms {
					t.Fatalf("record %d: %+v, sent %d: %+v", i, p, want[i], s)
				}
				fromClient := s.SrcPort == cli.Port()
				if (p.Dir == FromClient) != fromClient {
					t.Errorf("packet %d: direction %d", p.Num, p.Dir)
				}
				first := -1
				for j, nt := range got.Notes {
					if nt.Pkt == p.Num {
						first = j
						break
					}
				}
				if int(p.Note) != first {
					t.Errorf("packet %d: note %d, want %d", p.Num, p.Note, first)
				}
				if s.PayloadLen > 0 {
					if p.HTTP >= 0 && got.HTTP[p.HTTP].Pkt != p.Num {
						t.Errorf("packet %d: HTTP index %d is message of packet %d", p.Num, p.HTTP, got.HTTP[p.HTTP].Pkt)
					}
					kept := false
					for _, m := range got.HTTP {
						kept = kept || m.Pkt == p.Num
					}
					if kept != (p.HTTP >= 0) {
						t.Errorf("packet %d: HTTP index %d, message kept %v", p.Num, p.HTTP, kept)
					}
				} else if p.HTTP >= 0 {
					t.Errorf("packet %d without payload: HTTP index %d", p.Num, p.HTTP)
				}
			}
		})
	}
}

// A flip of the roles after packets were kept turns their directions too.
func TestFlipTurnsRecords(t *testing.T) {
	h := newHarness(t, Config{})
	v := h.conv(cli, srv, 1000, 5000, sec)
	v.handshake()
	c := v.s(ACK, "")
	dirs := []Dir{}
	for _, p := range c.Packets() {
		dirs = append(dirs, p.Dir)
	}
	c.flip()
	for i, p := range c.Packets() {
		if p.Dir != dirs[i]^1 {
			t.Errorf("packet %d: direction %d after the flip, %d before", p.Num, p.Dir, dirs[i])
		}
	}
}
