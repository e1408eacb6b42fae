package conntrack

// storage is what a tracker reuses from one connection to the next: the
// slices that hold packet records and HTTP messages, by capacity, and the
// string interner. Handing a finished connection's slices to the next one
// that grows makes a busy capture's steady state allocate almost nothing;
// garbage would let the heap reach twice the live connections before the
// collector runs (on the bench capture, 90 MB of slices were allocated
// and dropped per run).
type storage struct {
	intern interner
	pkts   [3][][]Pkt     // capacities 8, 16, 32 (headPkts+tailPkts)
	http   [2][][]HTTPMsg // capacities 4, 16 (headHTTP+tailHTTP)
	// keep bounds how many slices each class holds, so that memory
	// taken by a burst of connections is given back.
	keep int
}

// Capacity classes of the record slices.
var (
	pktCaps  = [3]int{headPkts, 2 * headPkts, headPkts + tailPkts}
	httpCaps = [2]int{4, headHTTP + tailHTTP}
)

// growPkts returns a slice of the next capacity class holding old's
// records, and takes old back.
func (st *storage) growPkts(old []Pkt) []Pkt {
	class := 0
	for class < len(pktCaps)-1 && pktCaps[class] <= cap(old) {
		class++
	}
	var nw []Pkt
	if free := st.pkts[class]; len(free) > 0 {
		nw = free[len(free)-1][:0]
		st.pkts[class] = free[:len(free)-1]
	} else {
		nw = make([]Pkt, 0, pktCaps[class])
	}
	nw = append(nw, old...)
	st.putPkts(old)
	return nw
}

// putPkts takes back a record slice of one of the classes.
func (st *storage) putPkts(s []Pkt) {
	for class, n := range pktCaps {
		if cap(s) == n {
			if len(st.pkts[class]) < st.keep {
				st.pkts[class] = append(st.pkts[class], s[:0])
			}
			return
		}
	}
}

// growHTTP is growPkts for HTTP messages.
func (st *storage) growHTTP(old []HTTPMsg) []HTTPMsg {
	class := 0
	if cap(old) >= httpCaps[0] {
		class = 1
	}
	var nw []HTTPMsg
	if free := st.http[class]; len(free) > 0 {
		nw = free[len(free)-1][:0]
		st.http[class] = free[:len(free)-1]
	} else {
		nw = make([]HTTPMsg, 0, httpCaps[class])
	}
	nw = append(nw, old...)
	st.putHTTP(old)
	return nw
}

// putHTTP takes back a message slice, forgetting its strings.
func (st *storage) putHTTP(s []HTTPMsg) {
	for class, n := range httpCaps {
		if cap(s) == n {
			clear(s) // past len, slots were never written since the last clear
			if len(st.http[class]) < st.keep {
				st.http[class] = append(st.http[class], s[:0])
			}
			return
		}
	}
}
