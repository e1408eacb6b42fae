package conntrack

import (
	"net/netip"
	"testing"
)

type want struct{ state, history string }

// Expected states and histories follow Zeek's rules as the package
// documents them: upper case for the originator, lower for the responder;
// S = SYN, H = SYN-ACK, A = pure ACK, D = payload, F = FIN, R = RST,
// T = retransmitted payload and W = zero window at counts 1, 10, 100...,
// each of S/H/A/D/F/R once per direction (again for S/F/R at a new
// sequence number), ^ = roles flipped.
func TestStateAndHistory(t *testing.T) {
	tests := []struct {
		name   string
		a, b   netip.AddrPort
		script func(v *conv)
		want   []want
	}{
		{"SF", cli, srv, func(v *conv) {
			v.handshake()
			v.c(PSH|ACK, "GET / HTTP/1.1\r\n\r\n")
			v.s(ACK, "")
			v.s(PSH|ACK, "HTTP/1.1 200 OK\r\n\r\n")
			v.c(FIN|ACK, "")
			v.s(FIN|ACK, "")
			v.c(ACK, "")
		}, []want{{"SF", "ShADadFf"}}},
		{"REJ", cli, srv, func(v *conv) {
			v.c(SYN, "")
			v.s(RST|ACK, "")
		}, []want{{"REJ", "Sr"}}},
		{"S0", cli, srv, func(v *conv) { v.c(SYN, "") }, []want{{"S0", "S"}}},
		{"S0 SYN retransmitted within the attempt timeout", cli, srv, func(v *conv) {
			v.c(SYN, "")
			v.aSeq--
			v.ts += 3 * sec
			v.c(SYN, "")
		}, []want{{"S0", "S"}}},
		{"SYN retransmitted after the attempt timeout", cli, srv, func(v *conv) {
			v.c(SYN, "")
			v.aSeq--
			v.ts += 6 * sec
			v.c(SYN, "")
		}, []want{{"S0", "S"}, {"S0", "S"}}},
		// Zeek re-initialises the endpoint on a SYN with a new sequence
		// number (SYN_seq_jump) before computing the relative sequence
		// number, so the second SYN is at relative 0 again: no new S.
		{"new SYN with another ISN within the attempt", cli, srv, func(v *conv) {
			v.c(SYN, "")
			v.aSeq += 5000
			v.c(SYN, "")
		}, []want{{"S0", "S"}}},
		{"S1", cli, srv, func(v *conv) { v.handshake() }, []want{{"S1", "ShA"}}},
		{"S2", cli, srv, func(v *conv) { v.handshake(); v.c(FIN|ACK, "") }, []want{{"S2", "ShAF"}}},
		{"S3", cli, srv, func(v *conv) { v.handshake(); v.s(FIN|ACK, "") }, []want{{"S3", "ShAf"}}},
		{"SH", cli, srv, func(v *conv) { v.c(SYN, ""); v.c(FIN, "") }, []want{{"SH", "SF"}}},
		{"RSTO", cli, srv, func(v *conv) {
			v.handshake()
			v.c(PSH|ACK, "hello")
			v.s(ACK, "")
			v.c(RST|ACK, "")
		}, []want{{"RSTO", "ShADaR"}}},
		{"RSTR", cli, srv, func(v *conv) { v.handshake(); v.s(RST, "") }, []want{{"RSTR", "ShAr"}}},
		{"RSTOS0", cli, srv, func(v *conv) { v.c(SYN, ""); v.c(RST, "") }, []want{{"RSTOS0", "SR"}}},
		{"two RSTs at different seqs", cli, srv, func(v *conv) {
			v.handshake()
			v.s(RST, "")
			v.bSeq += 100
			v.s(RST, "")
		}, []want{{"RSTR", "ShArr"}}},
		{"SYN-ACK first from port 80: flipped", srv, cli, func(v *conv) {
			v.c(SYN|ACK, "") // a is the server here
			v.s(ACK, "")
		}, []want{{"S1", "^hA"}}},
		{"SHR", srv, cli, func(v *conv) { v.c(SYN|ACK, ""); v.c(FIN|ACK, "") }, []want{{"SHR", "^hf"}}},
		{"RSTRH", srv, cli, func(v *conv) { v.c(SYN|ACK, ""); v.c(RST, "") }, []want{{"RSTRH", "^hr"}}},
		{"midstream from the client", cli, srv, func(v *conv) {
			v.c(PSH|ACK, "more request bytes")
			v.s(ACK, "")
			v.c(PSH|ACK, "and more")
			v.s(PSH|ACK, "response bytes")
		}, []want{{"OTH", "Dad"}}},
		{"midstream from the server port", srv, cli, func(v *conv) {
			v.c(PSH|ACK, "response bytes") // a is the server
			v.s(ACK, "")
		}, []want{{"OTH", "^dA"}}},
		{"midstream between high ports: no guess", netip.MustParseAddrPort("10.0.0.1:50000"), netip.MustParseAddrPort("10.0.0.2:40000"), func(v *conv) {
			v.c(PSH|ACK, "x")
		}, []want{{"OTH", "D"}}},
		{"midstream 443 to 8080: flipped", netip.MustParseAddrPort("10.0.0.1:443"), netip.MustParseAddrPort("10.0.0.2:8080"), func(v *conv) {
			v.c(ACK, "")
		}, []want{{"OTH", "^a"}}},
		{"midstream 8080 to 443: not flipped", netip.MustParseAddrPort("10.0.0.1:8080"), netip.MustParseAddrPort("10.0.0.2:443"), func(v *conv) {
			v.c(ACK, "")
		}, []want{{"OTH", "A"}}},
		{"retransmissions", cli, srv, func(v *conv) {
			v.handshake()
			v.c(PSH|ACK, "0123456789")
			for range 10 { // retransmissions 1..10: T at 1 and 10
				v.aSeq -= 10
				v.c(PSH|ACK, "0123456789")
			}
			v.s(PSH|ACK, "reply")
			v.bSeq -= 5
			v.s(PSH|ACK, "reply")
		}, []want{{"S1", "ShADTTdt"}}},
		{"zero window", cli, srv, func(v *conv) {
			v.handshake()
			v.c(PSH|ACK, "data")
			v.win = 0
			v.s(ACK, "")
		}, []want{{"S1", "ShADaw"}}},
		{"FIN and RST together", cli, srv, func(v *conv) { v.handshake(); v.c(FIN|RST|ACK, "") }, []want{{"RSTO", "ShAI"}}},
		{"SYN and FIN together", cli, srv, func(v *conv) { v.c(SYN|FIN, "") }, []want{{"SH", "Q"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			v := h.conv(tc.a, tc.b, 1_000_000, 5_000_000, 100*sec)
			tc.script(v)
			got := h.flush()
			if len(got) != len(tc.want) {
				t.Fatalf("%d connections, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				if got[i].State != w.state || got[i].History != w.history {
					t.Errorf("conn %d: %s %q, want %s %q", i, got[i].State, got[i].History, w.state, w.history)
				}
			}
		})
	}
}
