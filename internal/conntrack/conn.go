// Package conntrack rebuilds TCP connections from decoded packets.
//
// Each connection keeps, per direction, what the diagnosis needs (packet and
// byte counts, sequence space, FIN and RST details, window, TTL, retransmits,
// idle gaps), a bounded record of its packets for timelines, and the HTTP/1.x
// request and status lines seen in its payload. Its one-line summary follows
// Zeek's conn.log: conn_state and history are derived from Zeek's own
// endpoint state machine (TCPSessionAdapter) and history rules, so both tools
// can be compared field by field.
//
// Memory is bounded: finished connections are handed to a callback and
// recycled, live ones are capped (oldest evicted first, and counted).
package conntrack

import (
	"net/netip"

	"github.com/rstscope/rstscope/internal/decode"
)

// Dir is a packet's direction within its connection.
type Dir uint8

const (
	FromClient Dir = 0 // originator to responder (Zeek's "orig")
	FromServer Dir = 1 // responder to originator
)

// EndpointState is Zeek's per-endpoint TCP state.
type EndpointState uint8

const (
	Inactive EndpointState = iota
	SynSent
	SynAckSent
	Partial
	Established
	Closed
	Reset
)

// Pkt is one packet as kept for timelines and evidence.
type Pkt struct {
	Num   uint64 // 1-based packet number in the capture (Wireshark's frame number)
	TS    int64  // Unix ns
	Seq   uint32 // absolute
	Ack   uint32 // absolute
	Len   uint32 // payload length from the IP header
	Win   uint16 // raw window
	Flags decode.Flags
	Dir   Dir
	TTL   uint8
	HasTS bool // timestamp option present
	// HTTP is the index in Conn.HTTP() of the message starting in this
	// packet, -1 if none (or not kept).
	HTTP int32
	Note int16 // index into Conn.Notes (e.g. the kernel's reset reason), or -1
}

// record is a packet as the tracker keeps it: a Pkt in 32 bytes, two to a
// cache line. The message and note of a packet are found by its number
// when Packets expands the records.
type record struct {
	num    uint64
	ts     int64
	seq    uint32
	ack    uint32
	lenTTL uint32 // payload length (at most recLenMax) << 8 | TTL
	win    uint16
	flags  decode.Flags
	bits   uint8 // recFromServer, recHasTS
}

const (
	recFromServer = 1 << iota
	recHasTS
	recLenMax = 1<<24 - 1
)

func (r *record) dir() Dir { return Dir(r.bits & recFromServer) }

// pkt expands r (HTTP and Note still to be resolved).
func (r *record) pkt() Pkt {
	return Pkt{Num: r.num, TS: r.ts, Seq: r.seq, Ack: r.ack, Len: r.lenTTL >> 8, Win: r.win,
		Flags: r.flags, Dir: r.dir(), TTL: uint8(r.lenTTL), HasTS: r.bits&recHasTS != 0, HTTP: -1, Note: -1}
}

// HTTPMsg is a request or status line seen at the start of a segment.
type HTTPMsg struct {
	Dir           Dir
	Pkt           uint64 // packet number
	TS            int64
	Method        string // requests
	Target        string // requests (truncated to 200 bytes)
	Status        int    // responses
	Reason        string // responses
	ContentLength int64  // -1 if absent
	Close         bool   // "Connection: close" seen
	KeepAliveS    int    // "Keep-Alive: timeout=N" in a response, 0 if absent
	IdleBefore    int64  // ns since the connection's previous packet
	BodySeen      int64  // payload bytes in this direction after the headers, until the next message
}

// Endpoint is one side of a connection.
//
// The fields every packet reads or writes come first and fill two cache
// lines; the rest (addresses, FIN and RST details, thresholds) after, and
// the struct is padded to whole lines so that in Conn.Ep both endpoints'
// hot lines start on a line (see Conn). On the bench capture a packet
// touched nearly all of the 13 lines of a Conn before.
type Endpoint struct {
	Pkts             uint64
	PayloadBytes     uint64 // sum of payload lengths (retransmissions included)
	FirstTS, LastTS  int64
	LastDataTS       int64 // time of the last payload-carrying packet
	LastDataPkt      uint64
	FinPkt           uint64 // packet number of the first FIN, 0 if none
	RstPkt           uint64 // packet number of the first RST, 0 if none
	ISN              uint32 // initial sequence number (or first seq - 1 when no SYN was seen)
	lastSeq          uint32 // highest seq one past a segment
	seqWraps         uint32 // times lastSeq wrapped around 2^32
	ackSeq           uint32 // highest ack received from the peer for this side's data
	ackWraps         uint32
	dataEnd          uint32 // one past the highest payload byte seen
	MaxWin           uint32
	NonRstPkts       uint32
	TSOptPkts        uint32 // non-RST packets carrying the timestamp option
	FinSeq           uint32
	hist             uint16 // Zeek history flags recorded (once-per-direction letters)
	State, PrevState EndpointState
	seqInit          bool
	ackInit          bool
	SawSYN           bool
	WScale           int8  // negotiated shift; -1 unknown
	TTLMin, TTLMax   uint8 // over non-RST packets
	// winMul scales this side's windows outside SYNs: 1<<WScale when
	// both sides negotiated scaling and WScale > 0, else 1 (0 for a shift
	// past 31, as the shift would give). A product, kept up to date where
	// WScale changes, instead of the tests and the guarded variable shift
	// on every packet.
	winMul uint32

	// Below: what only some packets touch.
	Addr        netip.AddrPort
	Retrans     uint32
	ZeroWindows uint32
	Gaps        uint32
	FinTS       int64
	// FinPending: when this side sent its FIN, the last HTTP message seen
	// on the connection was a request still waiting for its response.
	FinPending bool
	// ProxyErrors counts the 502, 503 and 504 responses this side sent (all
	// of them, kept or not): the diagnosis looks for proxy errors only where
	// there are some.
	ProxyErrors uint32
	RstTS       int64
	RstSeq      uint32
	RstFlags    decode.Flags
	RstWin      uint16
	RstTTL      uint8
	RstHasTS    bool
	RstCount    uint32
	RstPayload  []byte // first bytes of an RST's payload (diagnostic payload), nil if none
	histLastSYN uint64
	histLastFIN uint64
	histLastRST uint64
	rxmtThresh  uint32
	zwThresh    uint32
	gapThresh   uint32
	_           [endpointPad]byte
}

// endpointPad makes an Endpoint a whole number of cache lines.
const endpointPad = 48

// Size is the payload byte count as Zeek computes it (from sequence numbers,
// so retransmissions are not counted twice).
func (e *Endpoint) Size() uint64 {
	if !e.seqInit {
		return 0
	}
	last := int64(e.seqWraps)<<32 + int64(e.lastSeq)
	if e.ackInit {
		if ack := int64(e.ackWraps)<<32 + int64(e.ackSeq); ack > last {
			last = ack
		}
	}
	n := last - int64(e.ISN)
	if n > 0 {
		n-- // the SYN (or the pretend SYN of a partial connection)
	}
	if e.FinPkt != 0 && n > 0 {
		n-- // the FIN
	}
	if n < 0 {
		n = 0
	}
	return uint64(n)
}

// RelSeq returns s relative to this endpoint's ISN (0 = the SYN).
func (e *Endpoint) RelSeq(s uint32) uint32 { return s - e.ISN }

// Note is a remark attached to a packet, such as the kernel's reset reason.
type Note struct {
	Pkt  uint64
	Text string
}

// Limits on what one connection keeps.
const (
	headPkts    = 8  // the first packets (handshake, first request)
	tailPkts    = 24 // the last packets (the end, where resets are)
	inlineRecs  = 16 // records held in the Conn itself; the rest in Conn.more
	headHTTP    = 2
	tailHTTP    = 14
	maxHistory  = 64
	maxNotes    = 32
	rstPayloadN = 64
)

// Conn is one TCP connection.
//
// Its state (connState) comes first: the fields every packet touches in
// three cache lines, then the two endpoints on lines of their own (whose
// hot fields come first, see Endpoint). Then the first inlineRecs packet
// records, which a recycled Conn does not clear: they are written before
// they are read. A Conn is exactly the 1408-byte size class, whose objects
// start on a line, and a connection of up to 16 packets (most of them, on
// a busy server: a short request, answered and closed) needs no other
// memory for its records. Memory taken from the pools for a new
// connection was last touched when the connection before it lingered
// seconds ago: it is cold, and every line of it costs a miss.
type Conn struct {
	connState
	recs [inlineRecs]record
}

// connState is what a recycled Conn starts again from zero.
type connState struct {
	key   key
	hash  uint64 // key's hash in the tracker's table
	Last  int64
	Start int64
	// TotalPkts counts every packet of the connection; the packets kept
	// are at most headPkts+tailPkts of them (see Packets).
	TotalPkts  uint64
	MaxGap     int64    // longest silence between two packets of this connection, ns
	closedAt   int64    // when both sides ended (FIN/RST), 0 while open
	more       []record // records past inlineRecs (from the tracker's storage), or nil
	http       []HTTPMsg
	history    []byte
	nrec       int32 // records kept, at most headPkts+tailPkts
	ring       int32 // next overwrite position within the tail, once full
	httpRing   int
	HTTPTotal  int
	clientIsA  bool // the client (Ep[0]) is the key's a side
	done       bool
	reqPending bool // the last HTTP message was a request without a final response yet
	Flipped    bool // roles were swapped from "first sender is the client" (Zeek's ^)
	Evicted    bool // released because the table was full, not because it ended
	endsAgain  bool // bothEnded with closedAt 0 (an end at time 0): the next packet ends c again
	// ID is the number of the connection's first packet (as given to
	// Tracker.Add): unique in a capture, in order of first packet, and the
	// same however the capture is split between trackers.
	ID    uint64
	Notes []Note
	// histBuf holds history while it is short: a connection's own
	// memory, not an allocation of its own on another line.
	histBuf [16]byte
	_       [connPad - 16]byte
	Ep      [2]Endpoint
}

// connPad puts Ep on a cache line.
const connPad = 32

// Client returns the originator's address.
func (c *Conn) Client() netip.AddrPort { return c.Ep[FromClient].Addr }

// Server returns the responder's address.
func (c *Conn) Server() netip.AddrPort { return c.Ep[FromServer].Addr }

// Packets returns the kept packets in capture order, with Pkt.HTTP as an
// index into HTTP() and Pkt.Note into Notes. The slice is freshly
// allocated; the connection is recycled after the done callback returns.
func (c *Conn) Packets() []Pkt {
	n := int(c.nrec)
	out := make([]Pkt, 0, n)
	if n < headPkts+tailPkts || c.ring == 0 {
		for i := 0; i < n; i++ {
			out = append(out, c.recAt(i).pkt())
		}
	} else {
		for i := 0; i < headPkts; i++ {
			out = append(out, c.recAt(i).pkt())
		}
		for i := 0; i < tailPkts; i++ {
			out = append(out, c.recAt(headPkts+(int(c.ring)+i)%tailPkts).pkt())
		}
	}
	// A message and a note belong to the packet of their number (one
	// message at most starts in a packet; a packet's first note wins).
	k := int32(0)
	c.EachHTTP(func(m *HTTPMsg) bool {
		if i := findPkt(out, m.Pkt); i >= 0 {
			out[i].HTTP = k
		}
		k++
		return true
	})
	for j := range c.Notes {
		if i := findPkt(out, c.Notes[j].Pkt); i >= 0 && out[i].Note < 0 {
			out[i].Note = int16(j)
		}
	}
	return out
}

// findPkt returns the index of packet num in ps (in capture order), or -1.
func findPkt(ps []Pkt, num uint64) int {
	for i := range ps {
		if ps[i].Num == num {
			return i
		}
	}
	return -1
}

// recAt returns record slot i (0 to headPkts+tailPkts-1).
func (c *Conn) recAt(i int) *record {
	if i < inlineRecs {
		return &c.recs[i]
	}
	return &c.more[i-inlineRecs]
}

// HTTP returns the kept HTTP messages in order (a fresh slice).
func (c *Conn) HTTP() []HTTPMsg {
	out := make([]HTTPMsg, 0, len(c.http))
	c.EachHTTP(func(m *HTTPMsg) bool { out = append(out, *m); return true })
	return out
}

// EachHTTP calls fn for each kept HTTP message in order, without copying,
// until fn returns false.
func (c *Conn) EachHTTP(fn func(m *HTTPMsg) bool) {
	if len(c.http) < headHTTP+tailHTTP || c.httpRing == 0 {
		for i := range c.http {
			if !fn(&c.http[i]) {
				return
			}
		}
		return
	}
	for i := 0; i < headHTTP; i++ {
		if !fn(&c.http[i]) {
			return
		}
	}
	tail := c.http[headHTTP:]
	for i := range tail {
		if !fn(&tail[(c.httpRing+i)%tailHTTP]) {
			return
		}
	}
}

// Dropped reports how many packets are not in Packets().
func (c *Conn) Dropped() uint64 { return c.TotalPkts - uint64(c.nrec) }

// History returns Zeek's history string.
func (c *Conn) History() string { return string(c.history) }

// Duration is the time from the first to the last packet, ns.
func (c *Conn) Duration() int64 { return c.Last - c.Start }

// State returns Zeek's conn_state (scripts/base/protocols/conn/main.zeek).
func (c *Conn) State() string {
	os, rs := c.Ep[FromClient].State, c.Ep[FromServer].State
	oInactive := os == Inactive || os == Partial
	rInactive := rs == Inactive || rs == Partial
	switch {
	case rs == Reset:
		if os == SynSent || os == SynAckSent || (os == Reset && c.Ep[0].Size() == 0 && c.Ep[1].Size() == 0) {
			return "REJ"
		}
		if oInactive {
			return "RSTRH"
		}
		return "RSTR"
	case os == Reset:
		if rInactive {
			if rstos0(c.history) {
				return "RSTOS0"
			}
			return "OTH"
		}
		return "RSTO"
	case rs == Closed && os == Closed:
		return "SF"
	case os == Closed:
		if rInactive {
			return "SH"
		}
		return "S2"
	case rs == Closed:
		if oInactive {
			return "SHR"
		}
		return "S3"
	case os == SynSent && rs == Inactive:
		return "S0"
	case os == Established && rs == Established:
		return "S1"
	}
	return "OTH"
}

// rstos0 matches Zeek's /\^?S[^HAFGIQ]*R.*/ on the history.
func rstos0(h []byte) bool {
	i := 0
	if i < len(h) && h[i] == '^' {
		i++
	}
	if i >= len(h) || h[i] != 'S' {
		return false
	}
	for i++; i < len(h); i++ {
		switch h[i] {
		case 'R':
			return true
		case 'H', 'A', 'F', 'G', 'I', 'Q':
			return false
		}
	}
	return false
}

// Ended reports whether both sides are done (FIN or RST each, or an RST).
func (c *Conn) Ended() bool { return c.closedAt != 0 }

// ResetBy returns the direction whose side sent the first RST, and false if
// there was none.
func (c *Conn) ResetBy() (Dir, bool) {
	a, b := c.Ep[0].RstPkt, c.Ep[1].RstPkt
	switch {
	case a == 0 && b == 0:
		return 0, false
	case b == 0 || (a != 0 && a < b):
		return FromClient, true
	default:
		return FromServer, true
	}
}

// AddNote attaches a remark to packet num (bounded).
func (c *Conn) AddNote(num uint64, text string) {
	if len(c.Notes) >= maxNotes {
		return
	}
	c.Notes = append(c.Notes, Note{Pkt: num, Text: text})
}
