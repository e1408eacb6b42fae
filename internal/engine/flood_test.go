package engine_test

import (
	"encoding/binary"
	"io"
	"runtime"
	"testing"

	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/engine"
	"github.com/rstscope/rstscope/internal/source"
)

// floodSource yields n SYNs from distinct source ports and addresses, one
// microsecond apart: a capture that is one long SYN flood.
type floodSource struct {
	n, i int
	buf  [54]byte
}

func (s *floodSource) Next(f *source.Frame) error {
	if s.i == s.n {
		return io.EOF
	}
	b := s.buf[:]
	copy(b[12:], []byte{0x08, 0x00, 0x45})
	binary.BigEndian.PutUint16(b[16:], 40)
	b[22], b[23] = 64, 6
	binary.BigEndian.PutUint32(b[26:], 0x0a000000|uint32(s.i>>16)) // 10.0.x.x
	binary.BigEndian.PutUint32(b[30:], 0x0a0000fe)
	binary.BigEndian.PutUint16(b[34:], uint16(s.i))
	binary.BigEndian.PutUint16(b[36:], 80)
	binary.BigEndian.PutUint32(b[38:], uint32(s.i)*7919)
	b[46] = 5 << 4
	b[47] = 0x02 // SYN
	*f = source.Frame{Timestamp: int64(s.i) * 1000, LinkType: source.LinkEthernet, OrigLen: 54, Data: b}
	s.i++
	return nil
}

func (s *floodSource) Close() error { return nil }

func TestSYNFloodBoundedMemory(t *testing.T) {
	const n, limit = 400000, 10000
	var live int
	src := &floodSource{n: n}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, st, err := engine.Run(src, engine.Options{
		Track:    conntrack.Config{MaxConns: limit},
		Diagnose: diagnose.Options{MaxIncidents: 1000},
		OnConn:   func(c *conntrack.Conn) { live++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if st.Track.PeakLive > limit {
		t.Errorf("peak live %d over the cap %d", st.Track.PeakLive, limit)
	}
	if st.Track.Conns != n || live != n {
		t.Errorf("%d connections created, %d finished; want %d", st.Track.Conns, live, n)
	}
	// The flood's SYNs are unanswered attempts; most were evicted before the
	// capture ended, and each one is counted.
	if st.Track.Evicted < n-2*limit {
		t.Errorf("evicted %d, want about %d", st.Track.Evicted, n-limit)
	}
	// Single SYNs evicted milliseconds after they were seen are not yet
	// "unanswered" (the rule wants a retransmission or a second of silence).
	t.Logf("%d SYNs: peak live %d, evicted %d, incidents %v (%d not detailed), heap in use after %.1f MiB",
		n, st.Track.PeakLive, st.Track.Evicted, st.Incidents, st.NotDetailed, float64(after.HeapInuse)/(1<<20))
	if after.HeapInuse > 200<<20 {
		t.Errorf("heap in use %d MiB after the flood", after.HeapInuse>>20)
	}
}
