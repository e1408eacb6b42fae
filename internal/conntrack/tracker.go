package conntrack

import (
	"net/netip"
	"unsafe"

	"github.com/rstscope/rstscope/internal/decode"
)

// Config tunes the tracker. The zero value gives the defaults.
type Config struct {
	// MaxConns caps live (not yet finished) connections; beyond it the
	// oldest is released early and counted in Stats.Evicted. Default
	// DefaultMaxConns.
	MaxConns int
	// Linger is how long (capture time) an ended connection is kept for late
	// packets (final ACKs, retransmitted FINs) before it is finished.
	// Default 5 s, as Zeek's tcp_close_delay.
	Linger int64
	// Inactive finishes a connection with no packet for this long (capture
	// time). Default 0: kept until the end of input or eviction.
	Inactive int64
}

// DefaultMaxConns is Config.MaxConns when it is not set.
const DefaultMaxConns = 200000

// Stats counts what the tracker saw.
type Stats struct {
	Packets     uint64 // TCP packets given to Add
	Conns       uint64 // connections created
	Live        int    // connections in the table now
	PeakLive    int
	Evicted     uint64 // connections released early because the table was full
	Finished    uint64 // connections handed to the done callback
	Reused      uint64 // a new SYN on an ended 4-tuple started a new connection
	Retransmits uint64
}

// Add adds the counters of o (another tracker's, e.g. another shard's) to
// s. Live and PeakLive are summed too: for shards tracked side by side the
// peak is then an upper bound of the peak of their union.
func (s *Stats) Add(o Stats) {
	s.Packets += o.Packets
	s.Conns += o.Conns
	s.Live += o.Live
	s.PeakLive += o.PeakLive
	s.Evicted += o.Evicted
	s.Finished += o.Finished
	s.Reused += o.Reused
	s.Retransmits += o.Retransmits
}

// key identifies a 4-tuple regardless of direction: the smaller endpoint
// (by address, then port) is a. It has no pointers, so map hashing is a
// plain memory hash.
type key struct {
	ahi, alo, bhi, blo uint64
	pa, pb             uint16
}

// same reports whether k and o name the same 4-tuple (field by field: the
// compiler's struct compare calls memequal).
func (k *key) same(o *key) bool {
	return k.alo == o.alo && k.pa == o.pa && k.pb == o.pb && k.blo == o.blo && k.ahi == o.ahi && k.bhi == o.bhi
}

// cacheBits gives the number of slots of the direct-mapped cache in front
// of the table: packets of a few hundred busy connections interleave, and
// a slot compare is cheaper than a map probe.
const (
	cacheBits = 10
	cacheSize = 1 << cacheBits
)

// set makes k the key of p's 4-tuple and reports whether src is the key's
// a side. It fills k in place: a key returned by value was copied with
// wide loads of memory just written in narrow stores, which the CPU
// cannot forward (a stall on every packet).
func (k *key) set(p *decode.Parsed) bool {
	shi, slo := p.SrcWords[0], p.SrcWords[1]
	dhi, dlo := p.DstWords[0], p.DstWords[1]
	srcFirst := shi < dhi || (shi == dhi && (slo < dlo || (slo == dlo && p.SrcPort <= p.DstPort)))
	if srcFirst {
		k.ahi, k.alo, k.bhi, k.blo, k.pa, k.pb = shi, slo, dhi, dlo, p.SrcPort, p.DstPort
	} else {
		k.ahi, k.alo, k.bhi, k.blo, k.pa, k.pb = dhi, dlo, shi, slo, p.DstPort, p.SrcPort
	}
	return srcFirst
}

// slot picks k's cache slot and returns its tag (see cacheTag).
func (k *key) slot() (int, uint64) {
	h := cacheTag(k.alo, k.blo, k.pa, k.pb)
	return int(h >> (64 - cacheBits)), h
}

// cacheTag hashes the ports and the low address bits of a 4-tuple, the
// same whichever end is given first (sums): its top cacheBits bits pick
// the slot, and all of it is the slot's tag. It is not seeded: input made
// to collide in the cache only sends its packets to the table.
func cacheTag(alo, blo uint64, pa, pb uint16) uint64 {
	h := (alo + blo) ^ (uint64(pa)+uint64(pb))<<40
	return h * 0x9e3779b97f4a7c15
}

// cacheSlot is a cache entry: the tag spares a look at a connection that is
// not the packet's (a new connection's slot holds another one, whose
// memory is cold by then).
type cacheSlot struct {
	tag uint64
	c   *Conn
}

// ref is a queue entry. Conns are recycled, so an entry is only valid while
// the connection it was made for (same ID) is live.
type ref struct {
	c  *Conn
	id uint64
	at int64 // ended queue: the time the entry was queued
}

func (r ref) live() bool { return r.c != nil && !r.c.done && r.c.ID == r.id }

// Tracker rebuilds connections. It is not safe for concurrent use.
type Tracker struct {
	cfg   Config
	table table
	done  func(*Conn)
	stats Stats
	// order holds live connections in creation order, for eviction.
	order []ref
	head  int
	// ended holds connections in the order they ended, for the linger sweep.
	ended     []ref
	endedHead int
	free      []*Conn
	now       int64
	nextSweep int64
	cache     [cacheSize]cacheSlot
	store     storage
	slab      connSlab // where new Conns come from when free is empty
	sink      uint64   // what warm read, kept so that its loads are not dropped
}

// New returns a tracker that calls done for every connection once it has
// finished (or been evicted, or at Flush). The *Conn is recycled after done
// returns: copy what you keep.
func New(cfg Config, done func(*Conn)) *Tracker {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 5e9
	}
	return &Tracker{cfg: cfg, table: newTable(), done: done}
}

// Stats returns the counters so far.
func (t *Tracker) Stats() Stats { s := t.stats; s.Live = t.table.n; return s }

// Add processes one TCP packet (p.Status must be decode.OK). num is its
// 1-based packet number and ts its capture time (Unix ns). It returns the
// connection the packet belongs to; the pointer is valid until the next
// call to Add or Flush.
func (t *Tracker) Add(p *decode.Parsed, num uint64, ts int64) *Conn {
	t.stats.Packets++
	if ts > t.now {
		t.now = ts
	}
	if t.now >= t.nextSweep {
		t.sweep()
		t.nextSweep = t.now + 1e9
	}
	// A cache hit is found from the packet's fields as they are: the tag
	// does not depend on the direction, and the cached connection's key is
	// compared with the packet's source and destination both ways round.
	// Sorting them into a key first (and storing it) was 35 of the 130
	// instructions of a hit.
	shi, slo := p.SrcWords[0], p.SrcWords[1]
	dhi, dlo := p.DstWords[0], p.DstWords[1]
	sp, dp := p.SrcPort, p.DstPort
	tag := cacheTag(slo, dlo, sp, dp)
	cs := &t.cache[tag>>(64-cacheBits)]
	c := cs.c
	// Calls that return what Add returns: the hit path keeps no value
	// across them (the compiler saved four of them on every packet for a
	// lookup call here).
	if cs.tag != tag || c == nil {
		return t.addMiss(p, num, ts)
	}
	// The key's a side is the smaller end (see key): the source when the
	// packet matches the key as it is; Ep[0] is the a side iff clientIsA.
	var dir Dir
	switch k := &c.key; {
	case k.pa == sp && k.pb == dp && k.alo == slo && k.blo == dlo && k.ahi == shi && k.bhi == dhi:
		if !c.clientIsA {
			dir = FromServer
		}
		if sp == dp && selfKey(p) {
			dir = c.dirOf(p, true, true)
		}
	case k.pa == dp && k.pb == sp && k.alo == dlo && k.blo == slo && k.ahi == dhi && k.bhi == shi:
		if c.clientIsA {
			dir = FromServer
		}
	default:
		return t.addMiss(p, num, ts)
	}
	if c.closedAt != 0 || c.Ep[FromClient].State == SynSent {
		// Ended, or an attempt: it may have expired, or a SYN start a new
		// connection. (A cached connection is never done: finish takes it
		// out of the cache.)
		return t.addRecheck(c, p, tag, num, ts)
	}
	// c.add, inlined by hand (it is too big for the compiler to).
	if ep, peer := c.ends(dir); plain(p, ep) {
		c.addPlain(p, ep, peer, dir, num, ts, t)
	} else {
		c.addAny(p, ep, peer, dir, num, ts, t)
	}
	return c
}

// addMiss is Add for a packet the cache did not answer.
func (t *Tracker) addMiss(p *decode.Parsed, num uint64, ts int64) *Conn {
	c, srcIsA := t.lookup(p, num, ts)
	c.add(p, c.dirOf(p, srcIsA, selfKey(p)), num, ts, t)
	return c
}

// addRecheck is Add for a packet the cache found the connection c of,
// when c has ended or is an attempt: lookup's checks, without the look.
func (t *Tracker) addRecheck(c *Conn, p *decode.Parsed, tag, num uint64, ts int64) *Conn {
	var k key
	srcIsA := k.set(p)
	if h := c.hash; t.supersede(c, p, ts) { // c's hash is the key's
		c = t.newConn(k, h, srcIsA, p, num, ts)
		t.cache[tag>>(64-cacheBits)] = cacheSlot{tag, c}
	}
	c.add(p, c.dirOf(p, srcIsA, selfKey(p)), num, ts, t)
	return c
}

// selfKey reports whether both ends of p are the same address and port (a
// socket connected to itself): the key's orientation then says nothing
// about the direction.
func selfKey(p *decode.Parsed) bool {
	return p.SrcPort == p.DstPort && p.SrcWords == p.DstWords
}

// lookup returns the connection of packet p when the cache did not
// answer, and whether p's source is its key's a side: from the cache, the
// table or new, as expiry and the reuse of a 4-tuple have it.
func (t *Tracker) lookup(p *decode.Parsed, num uint64, ts int64) (*Conn, bool) {
	var k key
	srcIsA := k.set(p)
	slot, tag := k.slot()
	cs := &t.cache[slot]
	c := cs.c
	var h uint64
	if cs.tag != tag || c == nil || c.done || !c.key.same(&k) {
		h = t.table.hash(&k)
		c = t.table.find(&k, h)
	}
	if c != nil && t.supersede(c, p, ts) {
		c = nil
	}
	if c == nil {
		if h == 0 {
			h = t.table.hash(&k)
		}
		c = t.newConn(k, h, srcIsA, p, num, ts)
	}
	*cs = cacheSlot{tag, c}
	return c, srcIsA
}

// supersede finishes c, the connection on packet p's 4-tuple, if p no
// longer belongs to it, and reports whether it did: c lingered or waited
// long enough (expired), or p is a new SYN on c's ended 4-tuple, which
// starts a new connection (Zeek does the same: a client retrying after
// RST is a new attempt; counted in Stats.Reused).
func (t *Tracker) supersede(c *Conn, p *decode.Parsed, ts int64) bool {
	switch {
	case c.expired(ts, t.cfg.Linger):
	case c.closedAt != 0 && p.Flags&(decode.SYN|decode.ACK|decode.RST) == decode.SYN:
		t.stats.Reused++
	default:
		return false
	}
	t.finish(c)
	return true
}

// attemptTimeout is Zeek's tcp_attempt_delay: a SYN unanswered this long
// ends the attempt; later packets on the 4-tuple start a new connection.
const attemptTimeout = 5e9

// expired reports whether a packet at ts no longer belongs to c: c ended and
// lingered long enough, or c is an unanswered attempt past its timeout.
func (c *Conn) expired(ts, linger int64) bool {
	if c.closedAt != 0 {
		// An ended connection is not an unanswered attempt: its client
		// sent FIN or RST, or its server answered.
		return ts > c.Last+linger
	}
	return c.Ep[FromClient].State == SynSent && c.Ep[FromServer].State == Inactive && ts > c.Start+attemptTimeout
}

// dirOf returns the direction of p, whose source is the key's a side iff
// srcIsA, and whose two ends are the same (self, see selfKey) or not.
func (c *Conn) dirOf(p *decode.Parsed, srcIsA, self bool) Dir {
	if self {
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

func (t *Tracker) newConn(k key, h uint64, srcIsA bool, p *decode.Parsed, num uint64, ts int64) *Conn {
	for t.table.n >= t.cfg.MaxConns {
		t.evictOldest()
	}
	var c *Conn
	if n := len(t.free); n > 0 {
		c = t.free[n-1]
		t.free = t.free[:n-1]
		no := c.Notes[:0]
		c.connState = connState{Notes: no}
	} else {
		c = t.slab.get()
	}
	c.history = c.histBuf[:0]
	t.stats.Conns++
	c.ID = num
	c.key, c.hash = k, h
	c.clientIsA = srcIsA // Ep[0] is the source, until a flip
	c.Start, c.Last = ts, ts
	src := netip.AddrPortFrom(p.Src, p.SrcPort)
	dst := netip.AddrPortFrom(p.Dst, p.DstPort)
	c.Ep[0].Addr, c.Ep[1].Addr = src, dst
	c.Ep[0].WScale, c.Ep[1].WScale = -1, -1
	c.Ep[0].winMul, c.Ep[1].winMul = 1, 1
	// Zeek's WantConnection: a connection that starts without a plain SYN
	// is partial; guess the server from the ports.
	if p.Flags&(decode.SYN|decode.ACK) == decode.SYN|decode.ACK {
		// The first packet is a SYN-ACK: its sender is the server.
		c.flip()
	} else if p.Flags&decode.SYN == 0 {
		if likelyServerPort(p.SrcPort) {
			flip := true
			if likelyServerPort(p.DstPort) {
				flip = p.Flags&decode.SYN == 0 && p.SrcPort < p.DstPort
			}
			if flip {
				c.flip()
			}
		}
	}
	t.table.insert(c)
	t.order = append(t.order, ref{c: c, id: c.ID})
	if t.table.n > t.stats.PeakLive {
		t.stats.PeakLive = t.table.n
	}
	return c
}

// flip swaps client and server and records Zeek's '^'.
func (c *Conn) flip() {
	c.Ep[0], c.Ep[1] = c.Ep[1], c.Ep[0]
	c.Flipped = !c.Flipped
	c.clientIsA = !c.clientIsA
	for i := 0; i < int(c.nrec); i++ {
		c.recAt(i).bits ^= recFromServer
	}
	for i := range c.http {
		c.http[i].Dir ^= 1
	}
	c.history = append(c.history, '^')
}

func (t *Tracker) evictOldest() {
	for t.head < len(t.order) {
		r := t.order[t.head]
		t.order[t.head] = ref{}
		t.head++
		if r.live() {
			c := r.c
			c.Evicted = true
			t.stats.Evicted++
			t.finish(c)
			t.compact()
			return
		}
	}
	t.compact()
}

// compact drops the consumed front of the order and ended queues.
func (t *Tracker) compact() {
	if t.head > 4096 && t.head*2 > len(t.order) {
		n := copy(t.order, t.order[t.head:])
		clear(t.order[n:])
		t.order = t.order[:n]
		t.head = 0
	}
	// A long-lived connection at the front keeps the entries of every
	// connection created after it: drop those already finished.
	if n := len(t.order) - t.head; n > 4096 && n > 2*t.table.n {
		k := 0
		for _, r := range t.order[t.head:] {
			if r.live() {
				t.order[k] = r
				k++
			}
		}
		clear(t.order[k:])
		t.order, t.head = t.order[:k], 0
	}
	if t.endedHead > 4096 && t.endedHead*2 > len(t.ended) {
		n := copy(t.ended, t.ended[t.endedHead:])
		clear(t.ended[n:])
		t.ended = t.ended[:n]
		t.endedHead = 0
	}
}

// Advance moves the tracker's clock to ts (capture time, Unix ns) without a
// packet and finishes what has lingered or idled long enough by then. Live
// capture calls it in quiet moments, so ended connections are diagnosed
// without waiting for the next packet; a sharded run calls it often, so
// that rows of finished connections do not come in large bursts. A ts in
// the past is ignored; at the clock's own time it sweeps.
func (t *Tracker) Advance(ts int64) {
	if ts < t.now {
		return
	}
	t.now = ts
	t.sweep()
	t.nextSweep = t.now + 1e9
}

// sweep finishes ended connections whose linger has passed, and inactive
// ones when Config.Inactive is set.
func (t *Tracker) sweep() {
	for t.endedHead < len(t.ended) {
		r := t.ended[t.endedHead]
		if !r.live() {
			t.ended[t.endedHead] = ref{}
			t.endedHead++
			continue
		}
		if r.at+t.cfg.Linger > t.now {
			break
		}
		t.ended[t.endedHead] = ref{}
		t.endedHead++
		if c := r.c; c.Last+t.cfg.Linger > t.now {
			// Packets came after it ended: look again a linger after the
			// last one, without holding back the connections behind it.
			t.ended = append(t.ended, ref{c: c, id: r.id, at: c.Last})
			continue
		}
		t.finish(r.c)
	}
	if t.cfg.Inactive > 0 {
		for i := t.head; i < len(t.order); i++ {
			if r := t.order[i]; r.live() && r.c.Last+t.cfg.Inactive <= t.now {
				t.finish(r.c)
			}
		}
	}
	// Drop finished connections from the front of the creation order.
	for t.head < len(t.order) && !t.order[t.head].live() {
		t.order[t.head] = ref{}
		t.head++
	}
	t.compact()
}

func (t *Tracker) finish(c *Conn) {
	if c.done {
		return
	}
	t.sink += warm(c)
	c.done = true
	t.table.remove(c)
	if s, _ := c.key.slot(); t.cache[s].c == c {
		t.cache[s] = cacheSlot{}
	}
	t.stats.Finished++
	if t.done != nil {
		t.done(c)
	}
	// Recycle: the record slices go back to the storage, the small ones
	// stay with the connection; references in them are forgotten. As many
	// connections are kept for reuse as are live (at least 1024), so that
	// a steady state allocates nothing and a burst is given back (a
	// connection's memory with its slab, once none of the slab is used).
	keep := max(1024, t.table.n)
	t.store.keep = keep
	t.store.putRecs(c.more)
	t.store.putHTTP(c.http)
	c.more, c.http = nil, nil
	clear(c.Notes)
	if len(t.free) < keep {
		t.free = append(t.free, c)
	}
}

// warm reads a word of every cache line of c and one of each of its HTTP
// messages, in one loop of independent loads, and returns their sum. An
// ended connection is finished seconds after it was last touched (a SYN
// reusing its 4-tuple, the linger sweep), when its lines are out of the
// cache: read by finishing it (its state, the diagnosis, the row) one
// after another, their misses came mostly one at a time; loaded together
// first, they overlap. On the bench capture, medians of alternating runs:
// one goroutine 1.11 -> 1.08 s (5 runs each), two 0.645 -> 0.63 s (10).
func warm(c *Conn) uint64 {
	w := (*[unsafe.Sizeof(Conn{}) / 8]uint64)(unsafe.Pointer(c))
	var s uint64
	for i := 0; i < len(w); i += 8 {
		s += w[i]
	}
	for i := range c.http {
		s += c.http[i].Pkt
	}
	// What finishing does not read but the storage hands out again soon
	// (putHTTP clears the messages): loaded without waiting. Alternating
	// runs, medians of 12: two goroutines 0.66 -> 0.64 s.
	prefetchRecs(c.more)
	prefetchHTTP(c.http)
	return s
}

// Flush finishes every live connection (end of input), in creation order.
func (t *Tracker) Flush() {
	for i := t.head; i < len(t.order); i++ {
		if r := t.order[i]; r.live() {
			t.finish(r.c)
		}
	}
	clear(t.order)
	clear(t.ended)
	t.order, t.head, t.ended, t.endedHead = t.order[:0], 0, t.ended[:0], 0
}

// likelyServerPort approximates Zeek's likely_server_ports: ports of the
// protocols its analyzers register, plus the well-known range.
func likelyServerPort(p uint16) bool {
	if p < 1024 {
		return true
	}
	switch p {
	case 1080, 1194, 1433, 1521, 1883, 2049, 2181, 2379, 3128, 3306, 3389, 3544, 5060, 5222, 5432,
		5672, 5900, 6379, 6443, 6666, 6667, 6668, 6669, 8000, 8008, 8080, 8081, 8443, 8888, 9000,
		9042, 9092, 9200, 9300, 11211, 27017:
		return true
	}
	return false
}
