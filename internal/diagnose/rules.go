package diagnose

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/human"
)

// The rules: each recognises one cause of the catalogue (internal/cause) in
// a connection's packets. diagnoseReset tries them in order, most specific
// first; every verdict carries the facts it was based on.

// keepaliveMinIdle is the shortest silence before a server's FIN that counts
// as an idle keep-alive close (rather than a close right after a response).
const keepaliveMinIdle = 100e6 // 100 ms

func diagnoseReset(c *conntrack.Conn, s *Snapshot) *Incident {
	rb, _ := c.ResetBy()
	x, y := &c.Ep[rb], &c.Ep[rb^1]
	inc := &Incident{Kind: KindReset, Time: x.RstTS, ResetBy: Side(rb), Conn: s, Facts: map[string]any{}}
	inc.Facts["rst_packet"] = x.RstPkt
	inc.Facts["rst_flags"] = x.RstFlags.String()
	inc.Facts["rst_window"] = x.RstWin
	inc.Facts["rst_ttl"] = x.RstTTL
	inc.Facts["rst_timestamp_option"] = x.RstHasTS
	reply := x.RstFlags&decode.ACK == 0 || (x.RstWin == 0 && !x.RstHasTS)
	if reply {
		inc.Facts["rst_shape"] = "reply (no socket: window 0, no options)"
	} else {
		inc.Facts["rst_shape"] = "active (started by the host: real window)"
	}
	if kr := kernelReason(s, x.RstPkt); kr != "" {
		inc.KernelReason = kr
		inc.Facts["kernel_reason"] = kr
	}
	if len(x.RstPayload) >= 2 {
		if d := rstDiagnostic(x.RstPayload); d != "" {
			inc.Facts["rst_diagnostic"] = d
		}
	}
	who, other := Side(rb), Side(rb^1)
	xAddr, yAddr := x.Addr.String(), y.Addr.String()

	switch {
	case rb == conntrack.FromServer && !x.SawSYN && c.Ep[conntrack.FromClient].SawSYN && x.NonRstPkts == 0:
		refused(c, s, inc)
	case isMiddlebox(x, inc):
		inc.Cause = cause.Middlebox
		inc.Summary = fmt.Sprintf("An RST claiming to come from the %s %s does not look like the %s's own packets (%s): a firewall, NAT or load balancer in the path probably forged it.",
			who, xAddr, who, inc.Facts["middlebox_evidence"])
		inc.Packets = []uint64{x.RstPkt}
	case rb == conntrack.FromServer && listenOverflow(c, s, inc):
	case x.FinPkt != 0 && x.FinPkt < x.RstPkt:
		afterClose(c, s, inc, rb)
	case reply && x.NonRstPkts > 0:
		p := lastFrom(s, rb^1, x.RstPkt)
		inc.Cause = cause.NoConnection
		what := "a packet"
		if p != nil {
			what = describe(s, p)
			inc.Packets = []uint64{p.Num, x.RstPkt}
		} else {
			inc.Packets = []uint64{x.RstPkt}
		}
		inc.Summary = fmt.Sprintf("The %s %s answered %s from the %s with a bare RST: it no longer had this connection (process or host restarted, or a NAT/load balancer forgot the flow).",
			who, xAddr, what, other)
		if gap := s.MaxGap; gap > 30e9 {
			inc.Facts["idle_gap_s"] = seconds(gap)
		}
	case reply && x.NonRstPkts == 0:
		inc.Cause = cause.NoConnection
		inc.Packets = []uint64{x.RstPkt}
		if y.Pkts == 0 {
			inc.Summary = fmt.Sprintf("The %s %s sent a lone RST on a connection whose other packets are not in this capture; its shape (window 0, no options) is a kernel's answer for a connection it has no state for.", who, xAddr)
		} else {
			inc.Summary = fmt.Sprintf("The %s %s answered the %s's packets with RST without ever having taken part in the connection in this capture: it has no such connection.", who, xAddr, other)
		}
	default:
		unreadOrAbort(c, s, inc, rb, x, y, yAddr)
	}
	kernelCheck(inc)
	explain(inc)
	tailorAdvice(inc)
	return inc
}

func refused(c *conntrack.Conn, s *Snapshot, inc *Incident) {
	srv := &c.Ep[conntrack.FromServer]
	inc.Cause = cause.Refused
	var syns []uint64
	var first int64
	for _, p := range s.Packets {
		if p.Dir == conntrack.FromClient && p.Flags&decode.SYN != 0 {
			if first == 0 {
				first = p.TS
			}
			syns = append(syns, p.Num)
		}
	}
	inc.Packets = append(syns, srv.RstPkt)
	inc.Facts["syn_count"] = len(syns)
	if first != 0 {
		inc.Facts["answer_ms"] = math.Round(float64(srv.RstTS-first)/1e3) / 1e3
	}
	inc.Summary = fmt.Sprintf("The client %s sent SYN to %s and got RST back after %s: nothing was listening there, the connection was refused.",
		s.Client, s.Server, dur(srv.RstTS-first))
}

// isMiddlebox looks for an RST whose IP-level fingerprint differs from the
// claimed sender's own packets.
func isMiddlebox(x *conntrack.Endpoint, inc *Incident) bool {
	if x.NonRstPkts < 2 {
		return false
	}
	var ev []string
	if x.RstTTL < x.TTLMin || x.RstTTL > x.TTLMax {
		ev = append(ev, fmt.Sprintf("TTL %d where the sender's packets had %s", x.RstTTL, ttlRange(x)))
	}
	if !x.RstHasTS && x.TSOptPkts == x.NonRstPkts && x.RstWin != 0 {
		ev = append(ev, "no timestamp option and a non-zero window, where every other packet of the sender had timestamps")
	}
	if len(ev) == 0 {
		return false
	}
	inc.Facts["middlebox_evidence"] = strings.Join(ev, "; ")
	return true
}

func ttlRange(x *conntrack.Endpoint) string {
	if x.TTLMin == x.TTLMax {
		return fmt.Sprint(x.TTLMin)
	}
	return fmt.Sprintf("%d-%d", x.TTLMin, x.TTLMax)
}

// listenOverflow: the handshake completed and the server reset the
// connection at once, having sent nothing.
func listenOverflow(c *conntrack.Conn, s *Snapshot, inc *Incident) bool {
	srv, cli := &c.Ep[conntrack.FromServer], &c.Ep[conntrack.FromClient]
	if !srv.SawSYN || !cli.SawSYN || srv.PayloadBytes > 0 || srv.FinPkt != 0 {
		return false
	}
	// Find the client's first non-SYN packet (the handshake's ACK).
	var synack, ack *conntrack.Pkt
	for i := range s.Packets {
		p := &s.Packets[i]
		if p.Dir == conntrack.FromServer && p.Flags&decode.SYN != 0 && synack == nil {
			synack = p
		}
		if p.Dir == conntrack.FromClient && p.Flags&decode.SYN == 0 && ack == nil {
			ack = p
		}
	}
	if synack == nil || ack == nil || srv.RstTS-ack.TS > 1e9 || srv.RstTS < ack.TS {
		return false
	}
	// Any server packet besides the SYN-ACK(s) before the RST means the
	// server accepted and talked.
	for _, p := range s.Packets {
		if p.Dir == conntrack.FromServer && p.Num < srv.RstPkt && p.Flags&decode.SYN == 0 {
			return false
		}
	}
	inc.Cause = cause.ListenOverflow
	inc.Packets = []uint64{synack.Num, ack.Num, srv.RstPkt}
	inc.Facts["reset_after_handshake_ms"] = float64(srv.RstTS-ack.TS) / 1e6
	inc.Summary = fmt.Sprintf("The server %s completed the handshake with %s and reset the connection %s later without sending anything: its accept queue was full (tcp_abort_on_overflow).",
		s.Server, s.Client, dur(srv.RstTS-ack.TS))
	return true
}

// afterClose: the resetting side had sent FIN first.
func afterClose(c *conntrack.Conn, s *Snapshot, inc *Incident, rb conntrack.Dir) {
	x := &c.Ep[rb]
	who, other := Side(rb), Side(rb^1)
	// The first data from the other side that reached x after its close:
	// sent after the FIN, or crossing it in flight (captured before the FIN,
	// but not acknowledged by it).
	var fin *conntrack.Pkt
	for i := range s.Packets {
		if s.Packets[i].Num == x.FinPkt {
			fin = &s.Packets[i]
		}
	}
	var late *conntrack.Pkt
	for i := range s.Packets {
		p := &s.Packets[i]
		if p.Dir != rb^1 || p.Len == 0 || p.Num >= x.RstPkt {
			continue
		}
		crossing := fin != nil && fin.Flags&decode.ACK != 0 && int32(p.Seq+p.Len-fin.Ack) > 0
		if p.Num > x.FinPkt || crossing {
			late = p
			break
		}
	}
	if late == nil {
		inc.Cause = cause.AbortiveClose
		inc.Packets = []uint64{x.FinPkt, x.RstPkt}
		inc.Summary = fmt.Sprintf("The %s %s closed (FIN) and then reset the connection without new data from the %s: an abort after close (linger timeout or SO_LINGER 0).", who, x.Addr, other)
		return
	}
	prev := lastBefore(s, min(x.FinPkt, late.Num))
	idleBeforeFin := int64(0)
	if prev != nil {
		idleBeforeFin = x.FinTS - prev.TS
	}
	finAck := x.FinSeq + 1
	crossed := int32(late.Ack-finAck) < 0
	inc.Facts["fin_packet"] = x.FinPkt
	inc.Facts["late_data_packet"] = late.Num
	inc.Facts["idle_before_fin_s"] = seconds(idleBeforeFin)
	inc.Facts["data_after_fin_s"] = seconds(late.TS - x.FinTS)
	inc.Facts["late_data_acked_fin"] = !crossed
	inc.Packets = []uint64{x.FinPkt}
	if ack := ackOf(s, rb^1, x.FinPkt, finAck); ack != nil && ack.Num < late.Num {
		inc.Packets = append(inc.Packets, ack.Num)
	}
	inc.Packets = append(inc.Packets, late.Num, x.RstPkt)
	slices.Sort(inc.Packets)
	lastResp := lastResponseBefore(s, x.FinPkt)
	announcedClose := lastResp != nil && lastResp.Close
	req := ""
	if late.HTTP >= 0 && int(late.HTTP) < len(s.HTTP) && s.HTTP[late.HTTP].Method != "" {
		m := s.HTTP[late.HTTP]
		req = m.Method + " " + m.Target
		inc.Facts["request"] = req
	}
	if rb == conntrack.FromServer && idleBeforeFin >= keepaliveMinIdle && !announcedClose {
		inc.Facts["server_idle_timeout_s"] = seconds(idleBeforeFin)
		if name, ok := knownTimeout(idleBeforeFin); ok {
			inc.Facts["idle_timeout_matches"] = name
		}
		what := "data"
		if req != "" {
			what = req
		}
		if crossed {
			inc.Cause = cause.KeepaliveRace
			inc.Summary = fmt.Sprintf("The server %s closed the keep-alive connection after %s idle, and the client's %s crossed its FIN in flight (sent %s after it, before the FIN arrived); the server answered with RST.",
				s.Server, dur(idleBeforeFin), what, dur(late.TS-x.FinTS))
		} else {
			inc.Cause = cause.StaleKeepalive
			inc.Summary = fmt.Sprintf("The server %s closed the idle keep-alive connection after %s (FIN); the client's pool reused it %s later for %s and the server answered with RST: the client sees \"unexpected end of stream\" or a reset.",
				s.Server, dur(idleBeforeFin), dur(late.TS-x.FinTS), what)
		}
		return
	}
	inc.Cause = cause.DataAfterClose
	why := ""
	if announcedClose {
		why = " although the last response said Connection: close"
	}
	when := dur(late.TS-x.FinTS) + " later"
	if late.Num < x.FinPkt {
		when = "at the same moment (the data and the FIN crossed)"
	}
	inc.Summary = fmt.Sprintf("The %s %s had closed the connection (FIN), the %s sent more data %s%s, and the %s answered it with RST.",
		who, x.Addr, other, when, why, who)
}

// unreadOrAbort tells close-with-unread-data from an abortive close.
func unreadOrAbort(c *conntrack.Conn, s *Snapshot, inc *Incident, rb conntrack.Dir, x, y *conntrack.Endpoint, yAddr string) {
	who, other := Side(rb), Side(rb^1)
	var ev []string
	if y.PayloadBytes > 0 && y.LastDataTS > x.LastDataTS && y.LastDataPkt < x.RstPkt {
		ev = append(ev, fmt.Sprintf("the %s's last data (packet %d) came after the %s's last data and was never answered", other, y.LastDataPkt, who))
	}
	if x.MaxWin > 0 {
		rw := uint32(x.RstWin)
		if x.WScale > 0 {
			rw <<= uint(x.WScale)
		}
		if rw < x.MaxWin && x.MaxWin-rw >= 1024 && y.PayloadBytes > 0 {
			ev = append(ev, fmt.Sprintf("its receive window had shrunk from %d to %d bytes: data sat unread in its buffer", x.MaxWin, rw))
			inc.Facts["window_shrunk_bytes"] = x.MaxWin - rw
		}
	}
	for _, m := range s.HTTP {
		if m.Dir == rb^1 && m.Method != "" && m.ContentLength > 0 && m.BodySeen < m.ContentLength {
			ev = append(ev, fmt.Sprintf("the request %s %s announced a %d-byte body and only %d bytes had arrived", m.Method, m.Target, m.ContentLength, m.BodySeen))
			inc.Facts["content_length"] = m.ContentLength
			inc.Facts["body_bytes_seen"] = m.BodySeen
			break
		}
	}
	inc.Packets = []uint64{}
	if y.LastDataPkt != 0 && y.LastDataPkt < x.RstPkt {
		inc.Packets = append(inc.Packets, y.LastDataPkt)
	}
	if x.LastDataPkt != 0 && x.LastDataPkt < x.RstPkt {
		inc.Packets = append(inc.Packets, x.LastDataPkt)
	}
	inc.Packets = append(inc.Packets, x.RstPkt)
	slices.Sort(inc.Packets)
	if race := keepaliveRaceUnread(c, s, inc, rb, x); race {
		return
	}
	if len(ev) > 0 {
		inc.Cause = cause.UnreadDataClose
		inc.Facts["unread_evidence"] = strings.Join(ev, "; ")
		inc.Summary = fmt.Sprintf("The %s %s closed its socket with data from the %s %s still unread, so its kernel sent RST instead of FIN (%s).",
			who, x.Addr, other, yAddr, ev[0])
		inc.Alternatives = []Alternative{{cause.AbortiveClose, "an abortive close (SO_LINGER 0) gives the same RST, but would not leave the " + other + "'s data unread"}}
		return
	}
	inc.Cause = cause.AbortiveClose
	inc.Summary = fmt.Sprintf("The %s %s reset the connection with no FIN and nothing left unread: an abortive close (SO_LINGER 0 or an aborted socket).", who, x.Addr)
	if y.PayloadBytes > 0 {
		inc.Alternatives = []Alternative{{cause.UnreadDataClose, "if the " + who + " had not read all the " + other + " sent, the kernel resets the same way; its window did not shrink and every request was answered, so this is less likely"}}
	}
}

// kernelCheck lets the kernel's own reason settle a close call, and records
// whether it agrees with the verdict.
func kernelCheck(inc *Incident) {
	kr := inc.KernelReason
	if kr == "" {
		return
	}
	switch {
	case kr == "TCP_ABORT_ON_CLOSE" && inc.Cause == cause.AbortiveClose:
		inc.Cause = cause.UnreadDataClose
		inc.Summary += " The kernel's reason TCP_ABORT_ON_CLOSE says data was unread."
		inc.Alternatives = nil
	case (kr == "TCP_STATE" || kr == "TCP_ABORT_ON_LINGER") && inc.Cause == cause.UnreadDataClose:
		inc.Cause = cause.AbortiveClose
		inc.Summary += " The kernel's reason " + kr + " says the socket was closed with SO_LINGER 0."
		inc.Alternatives = nil
	}
	inc.Facts["kernel_agrees"] = cause.Agrees(kr, inc.Cause)
}

// tailorAdvice puts numbers from this capture into the advice.
func tailorAdvice(inc *Incident) {
	t, ok := inc.Facts["server_idle_timeout_s"].(float64)
	if !ok || (inc.Cause != cause.StaleKeepalive && inc.Cause != cause.KeepaliveRace) {
		return
	}
	safe := math.Floor(t * 0.8)
	if t-safe < 1 && t > 2 {
		safe = math.Floor(t - 1)
	}
	unit := fmt.Sprintf("%.0f s", safe)
	if safe < 1 {
		unit = fmt.Sprintf("%.0f ms", t*800)
	}
	first := fmt.Sprintf("The server closes idle connections after about %s: set the client's pool idle timeout below that, e.g. %s (okhttp `ConnectionPool(5, %s)`, Go `IdleConnTimeout`, undici `keepAliveTimeout`).",
		dur(int64(t*1e9)), unit, okhttpArg(safe, t))
	inc.Advice = append([]string{first}, inc.Advice...)
}

func okhttpArg(safe, t float64) string {
	if safe < 1 {
		return fmt.Sprintf("%.0f, TimeUnit.MILLISECONDS", t*800)
	}
	return fmt.Sprintf("%.0f, TimeUnit.SECONDS", safe)
}

// unanswered: SYNs with no reply at all, retransmitted or left a second.
// The client must have sent nothing but SYNs: a client that goes on with
// ACKs and data got answers the capture did not see (one direction only).
func unanswered(c *conntrack.Conn, now int64) bool {
	cli, srv := &c.Ep[conntrack.FromClient], &c.Ep[conntrack.FromServer]
	if c.State() != "S0" || !cli.SawSYN || srv.Pkts != 0 || strings.Trim(c.History(), "S") != "" {
		return false
	}
	return cli.Pkts >= 2 || now-c.Start >= 1e9
}

func noAnswer(c *conntrack.Conn, s *Snapshot) *Incident {
	inc := &Incident{Kind: KindNoAnswer, Cause: cause.UnansweredSYN, Time: c.Start, ResetBy: "other", Conn: s, Facts: map[string]any{}}
	for _, p := range s.Packets {
		inc.Packets = append(inc.Packets, p.Num)
	}
	inc.Facts["syn_count"] = c.Ep[conntrack.FromClient].Pkts
	inc.Facts["waited_s"] = seconds(c.Last - c.Start)
	inc.Summary = fmt.Sprintf("The client %s sent %d SYN(s) to %s over %s and got no answer at all: filtered, dropped or host down (a connect timeout, not a reset).",
		s.Client, c.Ep[conntrack.FromClient].Pkts, s.Server, dur(c.Last-c.Start))
	explain(inc)
	return inc
}

// httpError makes an incident of a 502/503/504 response; Finish ties it to
// the upstream connection.
func httpError(c *conntrack.Conn, s *Snapshot, m conntrack.HTTPMsg) *Incident {
	inc := &Incident{Kind: KindHTTPError, Cause: cause.UpstreamFailure, Time: m.TS, ResetBy: "other", Conn: s, Facts: map[string]any{}}
	inc.Facts["status"] = m.Status
	var req *conntrack.HTTPMsg
	for i := range s.HTTP {
		h := &s.HTTP[i]
		if h.TS > m.TS {
			break
		}
		if h.Method != "" && h.Dir == conntrack.FromClient {
			req = h
		}
	}
	reqTS := m.TS
	line := "a request"
	if req != nil {
		reqTS = req.TS
		line = req.Method + " " + req.Target
		inc.Facts["request"] = line
		inc.Packets = append(inc.Packets, req.Pkt)
	}
	inc.Facts["request_time_ns"] = reqTS
	inc.Packets = append(inc.Packets, m.Pkt)
	inc.Summary = fmt.Sprintf("The proxy %s answered %s from %s with %d %s.", s.Server, line, s.Client, m.Status, m.Reason)
	explain(inc)
	return inc
}

// Helpers.

func kernelReason(s *Snapshot, pkt uint64) string {
	for _, n := range s.Notes {
		if n.Pkt != pkt {
			continue
		}
		if i := strings.Index(n.Text, "reason="); i >= 0 {
			r := n.Text[i+7:]
			if j := strings.IndexAny(r, " ,;\n"); j >= 0 {
				r = r[:j]
			}
			return r
		}
	}
	return ""
}

// rstDiagnostic recognises draft-ietf-tcpm-rst-diagnostic-payload (formerly
// draft-boucadair-...): an RST whose payload starts with the magic 0x33AA
// (compact form: shown as the hex bytes that follow, since the field layout
// still moves between draft versions) or 0xF317 (free text, shown cleaned).
func rstDiagnostic(b []byte) string {
	switch {
	case b[0] == 0x33 && b[1] == 0xAA:
		rest := b[2:]
		if len(rest) > 32 {
			rest = rest[:32]
		}
		return fmt.Sprintf("RST diagnostic payload (compact form, magic 0x33AA): % x", rest)
	case b[0] == 0xF3 && b[1] == 0x17:
		txt := strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, strings.ToValidUTF8(string(b[2:]), "?"))
		return "RST diagnostic payload: " + txt
	}
	return ""
}

func lastFrom(s *Snapshot, d conntrack.Dir, before uint64) *conntrack.Pkt {
	var out *conntrack.Pkt
	for i := range s.Packets {
		p := &s.Packets[i]
		if p.Num >= before {
			break
		}
		if p.Dir == d {
			out = p
		}
	}
	return out
}

func lastBefore(s *Snapshot, num uint64) *conntrack.Pkt {
	var out *conntrack.Pkt
	for i := range s.Packets {
		if s.Packets[i].Num >= num {
			break
		}
		out = &s.Packets[i]
	}
	return out
}

// ackOf finds the first packet from d after num that acknowledges ack.
func ackOf(s *Snapshot, d conntrack.Dir, after uint64, ack uint32) *conntrack.Pkt {
	for i := range s.Packets {
		p := &s.Packets[i]
		if p.Num > after && p.Dir == d && p.Flags&decode.ACK != 0 && int32(p.Ack-ack) >= 0 {
			return p
		}
	}
	return nil
}

func lastResponseBefore(s *Snapshot, num uint64) *conntrack.HTTPMsg {
	var out *conntrack.HTTPMsg
	for i := range s.HTTP {
		if s.HTTP[i].Pkt >= num {
			break
		}
		if s.HTTP[i].Status != 0 {
			out = &s.HTTP[i]
		}
	}
	return out
}

func describe(s *Snapshot, p *conntrack.Pkt) string {
	if p.HTTP >= 0 && int(p.HTTP) < len(s.HTTP) && s.HTTP[p.HTTP].Method != "" {
		return s.HTTP[p.HTTP].Method + " " + s.HTTP[p.HTTP].Target
	}
	if p.Len > 0 {
		return fmt.Sprintf("%d bytes of data", p.Len)
	}
	return "an ACK"
}

func knownTimeout(ns int64) (string, bool) {
	s := float64(ns) / 1e9
	for _, k := range cause.KnownIdleTimeouts {
		if math.Abs(s-k.Seconds) <= math.Max(0.25, k.Seconds*0.03) {
			return fmt.Sprintf("%g s: %s", k.Seconds, k.Who), true
		}
	}
	return "", false
}

// dur writes a duration for people: "6.0 s", "350 ms", "80 µs".
func dur(ns int64) string { return human.Duration(ns) }

// keepaliveRaceUnread recognises the keep-alive race in its other form: the
// client's request reached the server just before the server closed the
// idle connection, so close() found it unread and the kernel sent RST
// instead of FIN. Signature: a completed response, an idle gap, a new
// request, then an RST from the server with no FIN and no answer.
func keepaliveRaceUnread(c *conntrack.Conn, s *Snapshot, inc *Incident, rb conntrack.Dir, x *conntrack.Endpoint) bool {
	if rb != conntrack.FromServer {
		return false
	}
	var lastResp, req *conntrack.HTTPMsg
	for i := range s.HTTP {
		m := &s.HTTP[i]
		if m.Pkt > x.RstPkt {
			break
		}
		if m.Status != 0 {
			lastResp, req = m, nil
		} else if m.Method != "" && lastResp != nil && req == nil {
			req = m
		}
	}
	if lastResp == nil || req == nil || req.IdleBefore < keepaliveMinIdle || x.RstTS-req.TS > 5e9 {
		return false
	}
	// The server's last activity before the request: its idle timer ran
	// from there to the close that produced the RST.
	prev := lastBefore(s, req.Pkt)
	if prev == nil {
		return false
	}
	idle := x.RstTS - prev.TS
	inc.Cause = cause.KeepaliveRace
	inc.Facts["server_idle_timeout_s"] = seconds(idle)
	inc.Facts["request"] = req.Method + " " + req.Target
	inc.Facts["request_before_close_ms"] = float64(x.RstTS-req.TS) / 1e6
	if name, ok := knownTimeout(idle); ok {
		inc.Facts["idle_timeout_matches"] = name
	}
	inc.Packets = []uint64{req.Pkt, x.RstPkt}
	inc.Summary = fmt.Sprintf("The server %s closed its idle keep-alive connection after about %s, just as the client's %s %s arrived (%s before the close): close() found the request unread, so the kernel sent RST instead of FIN.",
		s.Server, dur(idle), req.Method, req.Target, dur(x.RstTS-req.TS))
	inc.Alternatives = []Alternative{{cause.UnreadDataClose, "the RST is the kernel's answer to a close() with unread data; here the unread data is a new request on an idle keep-alive connection, which is the race"}}
	return true
}
