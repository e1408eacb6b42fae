package conntrack

// The tracker's per-packet code as it was before the fast paths for the
// common packet (commit 0589851), kept as the reference that
// FuzzTrackerMatchesReference compares Tracker.Add with. The helpers both
// share (updateHistory, updateState, newConn, finish, ...) are the package's.

import "github.com/rstscope/rstscope/internal/decode"

// refAdd is Tracker.Add as it was before the fast path for cache hits
// (commit 0589851).
func (t *Tracker) refAdd(p *decode.Parsed, num uint64, ts int64) *Conn {
	t.stats.Packets++
	if ts > t.now {
		t.now = ts
	}
	if t.now >= t.nextSweep {
		t.sweep()
		t.nextSweep = t.now + 1e9
	}
	var k key
	srcIsA := k.set(p) // unchanged since
	slot, tag := k.refSlot()
	cs := &t.cache[slot]
	c := cs.c
	var h uint64
	if cs.tag != tag || c == nil || c.done || !c.key.same(&k) {
		h = t.table.hash(&k)
		c = t.table.find(&k, h)
	}
	if c != nil && c.refExpired(ts, t.cfg.Linger) {
		t.finish(c)
		c = nil
	}
	if c != nil && c.closedAt != 0 && p.Flags&(decode.SYN|decode.ACK|decode.RST) == decode.SYN {
		// A new SYN on an ended 4-tuple starts a new connection (Zeek
		// does the same: a client retrying after RST is a new attempt).
		t.finish(c)
		t.stats.Reused++
		c = nil
	}
	if c == nil {
		if h == 0 {
			h = t.table.hash(&k)
		}
		c = t.newConn(k, h, srcIsA, p, num, ts)
	}
	*cs = cacheSlot{tag, c}
	c.refConnAdd(p, c.refDirOf(p, srcIsA), num, ts, t)
	return c
}

// refConnAdd is Conn.add as it was before the plain-packet path (commit
// 0589851): the reference the fuzz target compares the tracker with.
func (c *Conn) refConnAdd(p *decode.Parsed, dir Dir, num uint64, ts int64, t *Tracker) {
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
	r := c.refNextRec(&t.store)
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

// slot picks a cache slot from the ports and the low address bits, and
// returns the whole product as the slot's tag.
func (k *key) refSlot() (int, uint64) {
	h := uint64(k.pa)<<16 | uint64(k.pb)
	h ^= k.alo ^ k.blo<<7
	h *= 0x9e3779b97f4a7c15
	return int(h >> (64 - 10)), h
}

// expired reports whether a packet at ts no longer belongs to c: c ended and
// lingered long enough, or c is an unanswered attempt past its timeout.
func (c *Conn) refExpired(ts, linger int64) bool {
	if c.closedAt != 0 {
		// An ended connection is not an unanswered attempt: its client
		// sent FIN or RST, or its server answered.
		return ts > c.Last+linger
	}
	return c.Ep[FromClient].State == SynSent && c.Ep[FromServer].State == Inactive && ts > c.Start+attemptTimeout
}

// dirOf returns the direction of p, whose source is the key's a side iff
// srcIsA.
func (c *Conn) refDirOf(p *decode.Parsed, srcIsA bool) Dir {
	if c.key.self() {
		if p.SrcPort == c.Ep[0].Addr.Port() && p.Src == c.Ep[0].Addr.Addr() {
			return FromClient
		}
		return FromServer
	}
	if srcIsA == c.clientIsA {
		return FromClient
	}
	return FromServer
}

// nextRec returns the slot for the next packet record (the first headPkts
// and a ring of the last tailPkts are kept), which the caller overwrites.
func (c *Conn) refNextRec(st *storage) *record {
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

// self reports whether both ends of k are the same address and port (a
// socket connected to itself): the key's orientation then says nothing
// about a packet's direction.
func (k *key) self() bool {
	return k.alo == k.blo && k.ahi == k.bhi && k.pa == k.pb
}
