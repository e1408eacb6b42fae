package conntrack

import (
	"math/rand/v2"
	"testing"
)

// The table against a map, over random inserts and removals of many keys,
// some of them forced onto the same home slot so that removal has chains
// to shift back, through growing and shrinking.
func TestTableAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tb := newTable()
	model := map[key]*Conn{}
	var live []*Conn
	check := func(step int) {
		t.Helper()
		if tb.n != len(model) {
			t.Fatalf("step %d: table holds %d, map %d", step, tb.n, len(model))
		}
		if 2*tb.n > len(tb.slots) {
			t.Fatalf("step %d: %d entries in %d slots: more than half full", step, tb.n, len(tb.slots))
		}
	}
	for step := 0; step < 200000; step++ {
		grow := step < 100000 // then mostly shrink, so the table gives memory back
		if len(live) == 0 || (rng.IntN(3) != 0) == grow {
			k := key{ahi: rng.Uint64(), alo: rng.Uint64(), pa: uint16(rng.Uint32()), pb: 80}
			if _, dup := model[k]; dup {
				continue
			}
			c := &Conn{}
			c.key = k
			c.hash = tb.hash(&k)
			if rng.IntN(4) == 0 {
				// Same home slot as another live connection (for any
				// table size): a collision chain.
				if len(live) > 0 {
					c.hash = live[rng.IntN(len(live))].hash
				}
			}
			if got := tb.find(&k, c.hash); got != nil {
				t.Fatalf("step %d: found %v before insert", step, got.key)
			}
			tb.insert(c)
			model[k] = c
			live = append(live, c)
		} else {
			i := rng.IntN(len(live))
			c := live[i]
			live[i] = live[len(live)-1]
			live = live[:len(live)-1]
			tb.remove(c)
			delete(model, c.key)
			if got := tb.find(&c.key, c.hash); got != nil {
				t.Fatalf("step %d: removed connection still found", step)
			}
		}
		if step%1000 == 0 {
			check(step)
			for k, c := range model {
				if got := tb.find(&k, c.hash); got != c {
					t.Fatalf("step %d: key lost after %d operations", step, step)
				}
			}
		}
	}
	check(-1)
	if len(tb.slots) > 4*minTableSlots && 8*tb.n < len(tb.slots) {
		t.Errorf("%d entries left in %d slots: not shrunk", tb.n, len(tb.slots))
	}
	tb.remove(&Conn{}) // not in the table: no effect
	check(-2)
}

// Keys differing in one field hash apart, and the hash depends on the seed.
func TestTableHash(t *testing.T) {
	a, b := newTable(), newTable()
	k := key{ahi: 1, alo: 2, bhi: 3, blo: 4, pa: 5, pb: 6}
	seen := map[uint64]bool{a.hash(&k): true}
	for i, f := range []func(*key){
		func(k *key) { k.ahi++ }, func(k *key) { k.alo++ }, func(k *key) { k.bhi++ },
		func(k *key) { k.blo++ }, func(k *key) { k.pa++ }, func(k *key) { k.pb++ },
	} {
		o := k
		f(&o)
		h := a.hash(&o)
		if seen[h] {
			t.Errorf("field %d: hash collides", i)
		}
		seen[h] = true
	}
	if a.hash(&k) == b.hash(&k) {
		t.Error("two tables hash alike: the seed is not used")
	}
	if a.hash(&key{}) == 0 {
		t.Error("hash 0 marks an empty slot")
	}
}
