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

// add updates c with one packet.
func (c *Conn) add(p *decode.Parsed, dir Dir, num uint64, ts int64, t *Tracker) {
	// A swap, not &c.Ep[dir]: indexing by an Endpoint's size (320 bytes,
	// not a power of two) costs a multiply and a bounds check per packet.
	ep, peer := &c.Ep[0], &c.Ep[1]
	if dir != FromClient {
		ep, peer = peer, ep
	}
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
			peer.ISN = p.Ack - 1
			peer.lastSeq = p.Ack - 1
			peer.dataEnd = p.Ack // the peer's data starts here: no false content gap
			peer.seqInit = true
		} else if flags&decode.RST == 0 && peer.State != Inactive {
			if !peer.ackInit || int32(p.Ack-peer.ackSeq) > 0 {
				if peer.ackInit && p.Ack < peer.ackSeq {
					peer.ackWraps++
				} else if !peer.ackInit {
					peer.ackWraps = 0
					if p.Ack < peer.ISN && int32(p.Ack-peer.ISN) > 0 {
						peer.ackWraps = 1 // past 2^32 relative to the ISN
					}
				}
				peer.ackSeq = p.Ack
				peer.ackInit = true
			}
			// A content gap: the peer's data acknowledged here was never
			// seen (Zeek's reassembler flags it; not on FIN/SYN packets).
			expect := peer.dataEnd
			if peer.FinPkt != 0 && peer.FinSeq == expect {
				expect++
			}
			if int32(p.Ack-expect) > 0 && flags&(decode.FIN|decode.SYN) == 0 {
				peer.Gaps++
				c.scaled(&peer.gapThresh, peer.Gaps, !isOrig, 'G')
				peer.dataEnd = p.Ack
				peer.advance(p.Ack)
			}
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
		ep.Retrans++
		t.stats.Retransmits++
		c.scaled(&ep.rxmtThresh, ep.Retrans, isOrig, 'T')
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
	if c.closedAt == 0 && c.bothEnded() {
		c.closedAt = ts
		t.ended = append(t.ended, ref{c: c, id: c.ID, at: ts})
	}

	// Keep the packet.
	r := c.nextRec(&t.store)
	bits := uint8(dir)
	if p.Opts.HasTS {
		bits |= recHasTS
	}
	*r = record{num: num, ts: ts, seq: p.Seq, ack: p.Ack, lenTTL: uint32(min(p.PayloadLen, recLenMax))<<8 | uint32(p.TTL),
		win: p.Window, flags: flags, bits: bits}
	if p.PayloadLen > 0 && flags&decode.RST == 0 {
		c.sniffHTTP(dir, p.Payload, num, ts, idle, &t.store)
	}
	if ep.FinPkt == num {
		// After the sniffing: a response carried by the FIN answers.
		ep.FinPending = c.reqPending
	}
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
	if n := int(c.nrec); n < headPkts+tailPkts {
		c.nrec++
		if n < inlineRecs {
			return &c.recs[n]
		}
		if c.more == nil {
			c.more = st.getRecs()
		}
		return &c.more[n-inlineRecs]
	}
	i := headPkts + int(c.ring)
	if c.ring++; c.ring == tailPkts {
		c.ring = 0
	}
	return c.recAt(i)
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
