package conntrack

import (
	"math/rand/v2"
)

// table maps 4-tuples to live connections. It replaces a Go map because a
// busy capture creates and ends connections at a high rate (the bench
// capture: 314,000 in 8.1 million packets, most of them ten packets long),
// and the map's lookup of a key it does not hold, its insert and its
// delete each touched cold memory: together they cost a third of a short
// connection's time.
//
// It is open addressing with linear probing over slots of 16 bytes, a
// seeded hash and a pointer, kept at most half full; a removal shifts the
// following entries back, so there are no tombstones. The hash is kept
// in the connection too (Conn.hash), so the slot of a connection's
// 4-tuple is known without hashing again, and lookup, removal and the
// insert of the next connection on the same 4-tuple (a client port
// reused) touch the same line.
type table struct {
	slots []tslot
	n     int
	mask  uint64
	seed  uint64
}

// tslot is one slot: h is 0 when the slot is empty.
type tslot struct {
	h uint64
	c *Conn
}

const minTableSlots = 1024

func newTable() table {
	return table{slots: make([]tslot, minTableSlots), mask: minTableSlots - 1, seed: rand.Uint64() | 1}
}

// hash returns k's hash under the table's seed, never 0. The seed is
// random, so that a capture made to collide (the input is untrusted)
// cannot be crafted in advance.
func (t *table) hash(k *key) uint64 {
	h := t.seed
	h = mix(h ^ k.alo)
	h = mix(h ^ k.blo)
	h = mix(h ^ k.ahi ^ k.bhi<<1 ^ uint64(k.pa)<<32 ^ uint64(k.pb)<<48)
	return h | 1
}

// mix is a 64-bit finaliser (Stafford's variant 13 of MurmurHash3's).
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// find returns the connection with key k (whose hash is h), or nil.
func (t *table) find(k *key, h uint64) *Conn {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.h == 0 {
			return nil
		}
		if s.h == h && s.c.key.same(k) {
			return s.c
		}
	}
}

// insert adds c, whose key is not in the table, under c.hash.
func (t *table) insert(c *Conn) {
	if 2*(t.n+1) > len(t.slots) {
		t.resize(2 * len(t.slots))
	}
	t.put(c)
	t.n++
}

func (t *table) put(c *Conn) {
	i := c.hash & t.mask
	for t.slots[i].h != 0 {
		i = (i + 1) & t.mask
	}
	t.slots[i] = tslot{h: c.hash, c: c}
}

// remove takes c out if it is there.
func (t *table) remove(c *Conn) {
	i := c.hash & t.mask
	for {
		s := &t.slots[i]
		if s.h == 0 {
			return
		}
		if s.c == c {
			break
		}
		i = (i + 1) & t.mask
	}
	// Shift back the entries after i that probed past it.
	for j := (i + 1) & t.mask; ; j = (j + 1) & t.mask {
		s := t.slots[j]
		if s.h == 0 {
			break
		}
		home := s.h & t.mask
		// s may move to i if i lies cyclically in [home, j).
		if (j-home)&t.mask >= (j-i)&t.mask {
			t.slots[i] = s
			i = j
		}
	}
	t.slots[i] = tslot{}
	t.n--
	if len(t.slots) > minTableSlots && 8*t.n < len(t.slots) {
		t.resize(len(t.slots) / 2) // give back what a burst took
	}
}

func (t *table) resize(n int) {
	old := t.slots
	t.slots = make([]tslot, n)
	// Written before put reads it (see touchPages): a read of fresh
	// memory maps the zero page, and put's first write then faults again
	// and flushes the other CPUs' TLBs.
	clear(t.slots)
	t.mask = uint64(n - 1)
	for _, s := range old {
		if s.h != 0 {
			t.put(s.c)
		}
	}
}
