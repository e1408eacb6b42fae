package conntrack

import (
	mbits "math/bits"

	"github.com/rstscope/rstscope/internal/decode"
)

// Zeek history flags recorded once per endpoint.
const (
	histSYN uint16 = 1 << iota
	histFIN
	histRST
	histFINRST
	histData
	histAck
	histMulti
)

// add updates c with packet p of direction dir.
func (c *Conn) add(p *decode.Parsed, dir Dir, num uint64, ts int64, t *Tracker) {
	if ep, peer := c.ends(dir); plain(p, ep) {
		c.addPlain(p, ep, peer, dir, num, ts, t)
	} else {
		c.addAny(p, ep, peer, dir, num, ts, t)
	}
}

// ends returns the endpoint that sent a packet of direction dir and its
// peer. A swap, not &c.Ep[dir]: indexing by an Endpoint's size (320
// bytes, not a power of two) costs a multiply and a bounds check.
func (c *Conn) ends(dir Dir) (ep, peer *Endpoint) {
	ep, peer = &c.Ep[0], &c.Ep[1]
	if dir != FromClient {
		ep, peer = peer, ep
	}
	return ep, peer
}

// plain reports whether addPlain can take packet p from ep: an ACK
// without SYN, FIN or RST, ep in a state from SynSent to Closed (neither
// Inactive nor Reset). An endpoint past Inactive has sent (seqInit):
// updateState moves ep only after addAny has set up ep's sequence space,
// and the peer only from a state it had already.
func plain(p *decode.Parsed, ep *Endpoint) bool {
	return p.Flags&(decode.SYN|decode.FIN|decode.RST|decode.ACK) == decode.ACK &&
		ep.State-SynSent <= Closed-SynSent
}

// addPlain updates c with a packet of the kind most of a capture is made
// of (see plain): an ACK, with or without data, without SYN, FIN or RST,
// from an endpoint that has sent before and has not been reset (on the
// bench capture, 86% of the packets). Of addAny's work, then, there is no
// sequence space to set up, no SYN, FIN or RST to note, no window scale
// to learn, no state to change (updateState moves an endpoint only on
// SYN, FIN and RST, or out of Inactive), and so no end of the connection
// to detect: none of what bothEnded reads changes, so its answer is the
// one of the connection's previous packet (kept in endsAgain when it
// matters). What remains is addAny's code for such a packet without the
// tests that cannot fail.
//
// What is rare (a new history letter, a zero window, a first
// acknowledgement, a content gap, a retransmission, the records past the
// Conn's own to be taken) is noted in a mask and done by one call,
// plainRare, after the rest: none of the rest depends on it, and with no
// call but that one and sniffHTTP's the common packet keeps its values in
// registers (the compiler saved eleven of them on the stack for every
// packet when each rare case had its call where it arises).
func (c *Conn) addPlain(p *decode.Parsed, ep, peer *Endpoint, dir Dir, num uint64, ts int64, t *Tracker) {
	var rare uint8
	// ep has sent before (seqInit), so the connection has a packet
	// already: the time since the last one is a gap.
	idle := ts - c.Last
	if idle > c.MaxGap {
		c.MaxGap = idle
	}
	c.TotalPkts++
	if ts > c.Last {
		c.Last = ts
	}

	plen := p.PayloadLen
	end := p.Seq + uint32(plen)
	// History: D or A, each once per endpoint.
	if plen > 0 {
		if ep.hist&histData == 0 {
			rare |= rareLetter
		}
	} else if ep.hist&histAck == 0 {
		rare |= rareLetter
	}

	win := uint32(p.Window) * ep.winMul
	if win > ep.MaxWin {
		ep.MaxWin = win
	}
	if win == 0 && peer.State != Closed {
		rare |= rareZeroWindow
	}
	ep.NonRstPkts++
	// A TTL equal to both bounds (a side's TTL seldom changes) changes
	// neither: two compares instead of four and their loads.
	if ttl := p.TTL; ttl != ep.TTLMin || ttl != ep.TTLMax {
		if ep.TTLMin == 0 || ttl < ep.TTLMin {
			ep.TTLMin = ttl
		}
		if ttl > ep.TTLMax {
			ep.TTLMax = ttl
		}
	}
	if p.Opts.HasTS {
		ep.TSOptPkts++
	}

	// The acknowledgement: ackPeer's common case.
	if ack := p.Ack; !peer.seqInit {
		peer.initFromAck(ack)
	} else if peer.State != Inactive {
		if !peer.ackInit {
			rare |= rareFirstAck
		} else {
			if int32(ack-peer.ackSeq) > 0 {
				if ack < peer.ackSeq {
					peer.ackWraps++
				}
				peer.ackSeq = ack
			}
			expect := peer.dataEnd
			if peer.FinPkt != 0 && peer.FinSeq == expect {
				expect++
			}
			if int32(ack-expect) > 0 {
				rare |= rareGap
			}
		}
	}

	if int32(end-ep.lastSeq) > 0 {
		if end < ep.lastSeq {
			ep.seqWraps++
		}
		ep.lastSeq = end
	} else if plen > 0 {
		rare |= rareRetrans
	}

	ep.Pkts++
	ep.PayloadBytes += uint64(plen)
	if ep.FirstTS == 0 {
		ep.FirstTS = ts
	}
	ep.LastTS = ts
	if plen > 0 {
		ep.LastDataTS, ep.LastDataPkt = ts, num
		if int32(end-ep.dataEnd) > 0 {
			ep.dataEnd = end
		}
	}

	if c.endsAgain {
		rare |= rareEndAgain
	}
	if c.more == nil && c.nrec >= inlineRecs {
		rare |= rareMoreRecs
	}
	if rare != 0 {
		c.plainRare(rare, p, ep, peer, dir, ts, t)
	}

	c.nextSlot().set(p, dir, num, ts)
	if plen > 0 {
		c.sniffHTTP(dir, p.Payload, num, ts, idle, &t.store)
	}
	// No FIN: ep.FinPkt is not this packet's number (numbers are unique),
	// so FinPending stays.
}

// What addPlain leaves to plainRare.
const (
	rareLetter     = 1 << iota // the first D or A of ep
	rareZeroWindow             // a zero window
	rareFirstAck               // the first acknowledgement of peer's data
	rareGap                    // a content gap in peer's data
	rareRetrans                // a retransmission
	rareEndAgain               // c ended at time 0 and ends again (see endsAgain)
	rareMoreRecs               // the records past the Conn's own are to be taken
)

// plainRare does what addPlain left to it in rare, in addAny's order (the
// history letters come in the order of the code that adds them).
func (c *Conn) plainRare(rare uint8, p *decode.Parsed, ep, peer *Endpoint, dir Dir, ts int64, t *Tracker) {
	isOrig := dir == FromClient
	if rare&rareLetter != 0 {
		if p.PayloadLen > 0 {
			c.checkHistory(ep, histData, 'D', isOrig)
		} else {
			c.checkHistory(ep, histAck, 'A', isOrig)
		}
	}
	if rare&rareZeroWindow != 0 {
		ep.ZeroWindows++
		c.scaled(&ep.zwThresh, ep.ZeroWindows, isOrig, 'W')
	}
	if rare&rareFirstAck != 0 {
		c.ackPeer(peer, p.Ack, !isOrig, true)
	}
	if rare&rareGap != 0 {
		c.contentGap(peer, p.Ack, !isOrig)
	}
	if rare&rareRetrans != 0 {
		c.retransmitted(ep, isOrig, t)
	}
	if rare&rareEndAgain != 0 {
		// Not bothEnded: what it reads is as it was after the last packet.
		c.closedAt = ts
		t.ended = append(t.ended, ref{c: c, id: c.ID, at: ts})
		c.endsAgain = ts == 0
	}
	if rare&rareMoreRecs != 0 {
		c.more = t.store.getRecs()
	}
}

// addAny updates c with any packet from ep (to peer).
func (c *Conn) addAny(p *decode.Parsed, ep, peer *Endpoint, dir Dir, num uint64, ts int64, t *Tracker) {
	isOrig := dir == FromClient

	// Idle gaps.
	if c.TotalPkts > 0 {
		if gap := ts - c.Last; gap > c.MaxGap {
			c.MaxGap = gap
		}
	}
	idle := ts - c.Last
	if c.TotalPkts == 0 {
		idle = 0
	}
	c.TotalPkts++
	if ts > c.Last {
		c.Last = ts
	}

	flags := p.Flags
	segLen := p.SegLen()
	if flags&decode.RST != 0 {
		segLen -= uint32(p.PayloadLen) // RST payload is not stream data
	}
	end := p.Seq + segLen

	// Sequence bookkeeping (Zeek's init_endpoint / update_last_seq).
	if !ep.seqInit || (flags&decode.SYN != 0 && ep.State != Reset && p.Seq != ep.ISN && ep.State != Closed) {
		if flags&decode.SYN != 0 {
			ep.ISN = p.Seq
			ep.SawSYN = true
			ep.lastSeq = end
			ep.dataEnd = p.Seq + 1
		} else {
			ep.ISN = p.Seq - 1
			ep.lastSeq = p.Seq
			ep.dataEnd = p.Seq
		}
		// Wraps count passes of 2^32 from zero: a segment that crosses it
		// already at initialisation has wrapped once relative to the ISN.
		ep.seqWraps = 0
		if ep.lastSeq < ep.ISN {
			ep.seqWraps = 1
		}
		ep.ackInit, ep.ackWraps = false, 0
		ep.seqInit = true
		ep.FirstTS = ts
	}
	relSeq := uint64(p.Seq - ep.ISN)

	c.updateHistory(ep, isOrig, flags, relSeq, p.PayloadLen)

	if flags&decode.SYN != 0 && p.Opts.WScale >= 0 {
		ep.WScale = p.Opts.WScale
	} else if flags&decode.SYN != 0 && flags&decode.ACK != 0 {
		// No window scale on the SYN-ACK: not negotiated for either side.
		ep.WScale, peer.WScale = 0, 0
	}
	if flags&decode.SYN != 0 {
		ep.winMul, peer.winMul = winMul(ep, peer), winMul(peer, ep)
	}
	win := uint32(p.Window)
	if flags&decode.SYN == 0 && ep.WScale > 0 && peer.WScale >= 0 {
		win <<= uint(ep.WScale)
	}
	if flags&decode.RST == 0 {
		// SYN windows are never scaled and are often rescinded: like
		// Zeek, leave them out of the window history.
		if win > ep.MaxWin && flags&decode.SYN == 0 {
			ep.MaxWin = win
		}
		if win == 0 && flags&(decode.SYN|decode.FIN) == 0 && peer.State != Closed && ep.State != Reset {
			ep.ZeroWindows++
			c.scaled(&ep.zwThresh, ep.ZeroWindows, isOrig, 'W')
		}
		ep.NonRstPkts++
		if ep.TTLMin == 0 || p.TTL < ep.TTLMin {
			ep.TTLMin = p.TTL
		}
		if p.TTL > ep.TTLMax {
			ep.TTLMax = p.TTL
		}
		if p.Opts.HasTS {
			ep.TSOptPkts++
		}
	}

	// ACK bookkeeping for the peer's sequence space (Zeek's init_peer and
	// update_ack_seq: an endpoint that never sent is sized 0).
	if flags&decode.ACK != 0 {
		if !peer.seqInit {
			peer.initFromAck(p.Ack)
		} else if flags&decode.RST == 0 && peer.State != Inactive {
			c.ackPeer(peer, p.Ack, !isOrig, flags&(decode.FIN|decode.SYN) == 0)
		}
	}

	// update_last_seq: retransmissions.
	delta := int32(end - ep.lastSeq)
	switch {
	case flags&(decode.SYN|decode.RST) != 0 && (delta > 1<<20 || delta < -(1<<20)):
	case ep.State == Reset:
	case delta > 0:
		ep.advance(end)
	case p.PayloadLen > 0:
		c.retransmitted(ep, isOrig, t)
	}

	ep.Pkts++
	ep.PayloadBytes += uint64(p.PayloadLen)
	if ep.FirstTS == 0 {
		ep.FirstTS = ts
	}
	ep.LastTS = ts
	if p.PayloadLen > 0 && flags&decode.RST == 0 {
		ep.LastDataTS, ep.LastDataPkt = ts, num
		if e := p.Seq + uint32(p.PayloadLen); int32(e-ep.dataEnd) > 0 {
			ep.dataEnd = e
		}
	}
	if flags&decode.FIN != 0 && ep.FinPkt == 0 {
		ep.FinPkt, ep.FinTS, ep.FinSeq = num, ts, p.Seq+uint32(p.PayloadLen)
	}
	if flags&decode.RST != 0 {
		ep.RstCount++
		if ep.RstPkt == 0 {
			ep.RstPkt, ep.RstTS, ep.RstSeq = num, ts, p.Seq
			ep.RstFlags, ep.RstWin, ep.RstTTL, ep.RstHasTS = flags, p.Window, p.TTL, p.Opts.HasTS
			if len(p.Payload) > 0 {
				n := min(len(p.Payload), rstPayloadN)
				ep.RstPayload = append(ep.RstPayload[:0], p.Payload[:n]...)
			}
		}
	}

	c.updateState(ep, peer, isOrig, flags, p, delta)
	ended := c.closedAt == 0 && c.bothEnded()
	if ended {
		c.closedAt = ts
		t.ended = append(t.ended, ref{c: c, id: c.ID, at: ts})
	}
	// An end at capture time 0 leaves closedAt 0: then the next packet,
	// plain or not, ends the connection again.
	c.endsAgain = ended && ts == 0

	// Keep the packet.
	c.nextRec(&t.store).set(p, dir, num, ts)
	if p.PayloadLen > 0 && flags&decode.RST == 0 {
		c.sniffHTTP(dir, p.Payload, num, ts, idle, &t.store)
	}
	if ep.FinPkt == num {
		// After the sniffing: a response carried by the FIN answers.
		ep.FinPending = c.reqPending
	}
}

// winMul returns what e's windows are multiplied by (see Endpoint.winMul).
func winMul(e, peer *Endpoint) uint32 {
	if e.WScale > 0 && peer.WScale >= 0 {
		return uint32(1) << uint(e.WScale)
	}
	return 1
}

// initFromAck sets up e's sequence space from an acknowledgement of it,
// e having sent nothing yet (Zeek's init_peer): e is sized 0 so far.
func (e *Endpoint) initFromAck(ack uint32) {
	e.ISN = ack - 1
	e.lastSeq = ack - 1
	e.dataEnd = ack // the peer's data starts here: no false content gap
	e.seqInit = true
}

// ackPeer records an acknowledgement of peer's data (Zeek's
// update_ack_seq), peer's sequence space being set up, and with gaps a
// content gap: peer's data acknowledged here was never seen (Zeek's
// reassembler flags it; not on FIN or SYN packets).
func (c *Conn) ackPeer(peer *Endpoint, ack uint32, peerIsOrig, gaps bool) {
	if peer.ackInit {
		if int32(ack-peer.ackSeq) > 0 {
			if ack < peer.ackSeq {
				peer.ackWraps++
			}
			peer.ackSeq = ack
		}
	} else {
		peer.ackWraps = 0
		if ack < peer.ISN && int32(ack-peer.ISN) > 0 {
			peer.ackWraps = 1 // past 2^32 relative to the ISN
		}
		peer.ackSeq = ack
		peer.ackInit = true
	}
	expect := peer.dataEnd
	if peer.FinPkt != 0 && peer.FinSeq == expect {
		expect++
	}
	if gaps && int32(ack-expect) > 0 {
		c.contentGap(peer, ack, peerIsOrig)
	}
}

// contentGap counts a content gap in peer's data, up to ack.
func (c *Conn) contentGap(peer *Endpoint, ack uint32, peerIsOrig bool) {
	peer.Gaps++
	c.scaled(&peer.gapThresh, peer.Gaps, peerIsOrig, 'G')
	peer.dataEnd = ack
	peer.advance(ack)
}

// retransmitted counts a segment of ep's whose data was seen before.
func (c *Conn) retransmitted(ep *Endpoint, isOrig bool, t *Tracker) {
	ep.Retrans++
	t.stats.Retransmits++
	c.scaled(&ep.rxmtThresh, ep.Retrans, isOrig, 'T')
}

// set makes r the record of packet p. The fields are stored one by one:
// a composite literal was built on the stack and copied.
func (r *record) set(p *decode.Parsed, dir Dir, num uint64, ts int64) {
	bits := uint8(dir)
	if p.Opts.HasTS {
		bits |= recHasTS
	}
	r.num, r.ts, r.seq, r.ack = num, ts, p.Seq, p.Ack
	r.lenTTL = uint32(min(p.PayloadLen, recLenMax))<<8 | uint32(p.TTL)
	r.win, r.flags, r.bits = p.Window, p.Flags, bits
}

// bothEnded is Zeek's close_complete: an RST from either side, a FIN from
// both, or a FIN from one side while the other never sent anything.
func (c *Conn) bothEnded() bool {
	a, b := &c.Ep[0], &c.Ep[1]
	return a.RstPkt != 0 || b.RstPkt != 0 || (a.FinPkt != 0 && b.FinPkt != 0) ||
		(a.FinPkt != 0 && b.State == Inactive) || (b.FinPkt != 0 && a.State == Inactive)
}

// nextRec returns the slot for the next packet record (the first headPkts
// and a ring of the last tailPkts are kept), which the caller overwrites.
func (c *Conn) nextRec(st *storage) *record {
	if c.nrec >= inlineRecs && c.more == nil {
		c.more = st.getRecs()
	}
	return c.nextSlot()
}

// nextSlot is nextRec once the records past the Conn's own are there, or
// not needed yet. It makes no call, so it is inlined: on the bench
// capture half the packets are of connections past headPkts+tailPkts,
// whose records go round the ring.
func (c *Conn) nextSlot() *record {
	i := uint(c.nrec)
	if i < headPkts+tailPkts {
		c.nrec++
	} else {
		i = headPkts + uint(c.ring)
		if c.ring++; c.ring == tailPkts {
			c.ring = 0
		}
	}
	if i < inlineRecs {
		return &c.recs[i]
	}
	return &c.more[i-inlineRecs]
}

// letter returns code in upper case for the originator, lower otherwise.
func letter(code byte, isOrig bool) byte {
	if isOrig {
		return code
	}
	return code + 32
}

func (c *Conn) addHistory(code byte, isOrig bool) {
	if len(c.history) < maxHistory {
		c.history = append(c.history, letter(code, isOrig))
	}
}

// checkHistory records code once per endpoint; it returns true if the flag
// had already been recorded (Zeek's CheckHistory).
func (c *Conn) checkHistory(ep *Endpoint, mask uint16, code byte, isOrig bool) bool {
	if ep.hist&mask != 0 {
		return true
	}
	ep.hist |= mask
	c.addHistory(code, isOrig)
	return false
}

// scaled records code at counts 1, 10, 100, ... (Zeek's ScaledHistoryEntry).
func (c *Conn) scaled(thresh *uint32, n uint32, isOrig bool, code byte) bool {
	if *thresh == 0 {
		*thresh = 1
	}
	if n == *thresh {
		c.addHistory(code, isOrig)
		*thresh *= 10
		return true
	}
	return false
}

// updateHistory is Zeek's update_history.
func (c *Conn) updateHistory(ep *Endpoint, isOrig bool, f decode.Flags, relSeq uint64, plen int) {
	bits := mbits.OnesCount8(uint8(f & (decode.SYN | decode.FIN | decode.RST)))
	switch {
	case bits > 1:
		if f&decode.FIN != 0 && f&decode.RST != 0 {
			c.checkHistory(ep, histFINRST, 'I', isOrig)
		} else {
			c.checkHistory(ep, histMulti, 'Q', isOrig)
		}
	case bits == 1:
		if f&decode.SYN != 0 {
			code := byte('S')
			if f&decode.ACK != 0 {
				code = 'H'
			}
			if c.checkHistory(ep, histSYN, code, isOrig) && relSeq != ep.histLastSYN {
				c.addHistory(code, isOrig)
			}
			ep.histLastSYN = relSeq
		}
		if f&decode.FIN != 0 {
			s := relSeq + uint64(plen)
			if c.checkHistory(ep, histFIN, 'F', isOrig) && s != ep.histLastFIN {
				c.addHistory('F', isOrig)
			}
			ep.histLastFIN = s
		}
		if f&decode.RST != 0 {
			if c.checkHistory(ep, histRST, 'R', isOrig) && relSeq != ep.histLastRST {
				c.addHistory('R', isOrig)
			}
			ep.histLastRST = relSeq
		}
	default:
		if plen > 0 {
			c.checkHistory(ep, histData, 'D', isOrig)
		} else if f&decode.ACK != 0 {
			c.checkHistory(ep, histAck, 'A', isOrig)
		}
	}
}

func (e *Endpoint) setState(s EndpointState) {
	e.PrevState = e.State
	e.State = s
}

// updateState is Zeek's UpdateStateMachine.
func (c *Conn) updateState(ep, peer *Endpoint, isOrig bool, f decode.Flags, p *decode.Parsed, deltaLast int32) {
	syn, fin, rst, ack := f&decode.SYN != 0, f&decode.FIN != 0, f&decode.RST != 0, f&decode.ACK != 0
	switch ep.State {
	case Inactive:
		if syn {
			if isOrig {
				if ack {
					ep.setState(SynAckSent)
				} else {
					ep.setState(SynSent)
				}
			} else {
				if !ack && peer.State == SynAckSent && p.Seq == ep.ISN {
					// SYN/SYN-ACK reversal: flip the endpoints.
					c.flip()
					// The endpoints moved slots: follow them.
					ep, peer, isOrig = peer, ep, !isOrig
					peer.setState(Established)
				}
				if peer.State == SynSent {
					peer.setState(Established)
				}
				ep.setState(Established)
			}
		}
		if fin {
			ep.setState(Closed)
		}
		if rst {
			ep.setState(Reset)
		}
		if ep.State == Inactive {
			switch {
			case !isOrig && p.PayloadLen == 0 && c.Ep[FromClient].State == SynSent:
				// an ACK before the SYN-ACK: not a partial connection
			case ack && peer.State == Established:
				ep.setState(Established)
			default:
				ep.setState(Partial)
			}
		}
	case SynSent, SynAckSent:
		if fin {
			ep.setState(Closed)
		}
		if rst {
			ep.setState(Reset)
		}
	case Established, Partial:
		if syn && ep.State == Partial && peer.State == Inactive && !ack {
			ep.setState(SynSent)
		}
		if fin && !rst {
			ep.setState(Closed)
			if peer.State == Reset && peer.PrevState == Closed {
				peer.setState(Closed)
			}
		}
		if rst {
			ep.setState(Reset)
		}
	case Closed:
		if rst && peer.State != Closed {
			ep.setState(Reset)
		}
	case Reset:
	}
}

// advance moves the highest sequence number seen forward, counting wraps.
func (e *Endpoint) advance(end uint32) {
	if int32(end-e.lastSeq) <= 0 {
		return
	}
	if end < e.lastSeq {
		e.seqWraps++
	}
	e.lastSeq = end
}
