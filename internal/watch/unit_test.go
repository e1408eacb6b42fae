package watch

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/rstscope/rstscope/internal/bpfilter"
	"github.com/rstscope/rstscope/internal/ktrace"
	"github.com/rstscope/rstscope/internal/source"
)

func frame(ts int64, n int, b byte) *source.Frame {
	return &source.Frame{Timestamp: ts, Data: bytes.Repeat([]byte{b}, n), OrigLen: n}
}

// records returns the seqs and first data bytes held, oldest first.
func records(r *recorder) (seqs []uint64, tags []byte) {
	c := r.begin()
	var f source.Frame
	for {
		seq, ok := r.nextRecord(&c, &f, 1)
		if !ok {
			return
		}
		seqs = append(seqs, seq)
		tags = append(tags, f.Data[0])
	}
}

func TestRecorderWrapsAndEvicts(t *testing.T) {
	r := newRecorder(1<<16, 1e18)
	// 100 records of 1000+24 bytes: the buffer (65536) holds 64.
	for i := 0; i < 100; i++ {
		if _, _, ok := r.add(frame(int64(i), 1000, byte(i)), 1<<62); !ok {
			t.Fatalf("add %d refused", i)
		}
		seqs, tags := records(r)
		if len(seqs) != r.n || seqs[len(seqs)-1] != uint64(i+1) || tags[len(tags)-1] != byte(i) {
			t.Fatalf("after %d: %d records, last seq %d tag %d", i, len(seqs), seqs[len(seqs)-1], tags[len(tags)-1])
		}
		for j := 1; j < len(seqs); j++ {
			if seqs[j] != seqs[j-1]+1 || tags[j] != byte(seqs[j]-1) {
				t.Fatalf("after %d: records out of order or corrupt: %v", i, seqs)
			}
		}
		if r.bytes > len(r.buf) {
			t.Fatalf("bytes %d over size", r.bytes)
		}
	}
	if r.n < 60 || r.n > 64 {
		t.Errorf("holds %d records, want about 64", r.n)
	}
}

func TestRecorderProtectsUnfed(t *testing.T) {
	r := newRecorder(1<<16, 1e18)
	for i := 0; i < 60; i++ {
		r.add(frame(int64(i), 1000, byte(i)), 1)
	}
	// Every record is at or after protect=1: no room may be taken.
	for i := 60; i < 80; i++ {
		if _, _, ok := r.add(frame(int64(i), 1000, byte(i)), 1); !ok {
			if r.first != 1 {
				t.Fatalf("protected record evicted: first=%d", r.first)
			}
			return
		}
	}
	t.Fatal("recorder never refused a record although all were protected")
}

func TestRecorderAgeAndComments(t *testing.T) {
	r := newRecorder(1<<20, 10)
	for i := 0; i < 30; i++ {
		seq, _, _ := r.add(frame(int64(i), 10, byte(i)), 1<<62)
		if i%3 == 0 {
			r.comment(seq, "c"+string(rune('a'+i)))
		}
	}
	seqs, _ := records(r)
	if seqs[0] != 20 || len(seqs) != 11 { // ts 19..29 kept (newest-10 <= ts)
		t.Errorf("kept %v", seqs)
	}
	var f source.Frame
	c := r.begin()
	for {
		seq, ok := r.nextRecord(&c, &f, 1)
		if !ok {
			break
		}
		want := ""
		if (seq-1)%3 == 0 {
			want = "c" + string(rune('a'+seq-1))
		}
		if f.Comment != want {
			t.Errorf("seq %d comment %q want %q", seq, f.Comment, want)
		}
	}
	if len(r.comments) != 3 { // seqs 22, 25, 28
		t.Errorf("%d comments kept, want 3 (older ones go with their records)", len(r.comments))
	}
}

func TestKernelFlush(t *testing.T) {
	ap := netip.MustParseAddrPort
	k := kernelSide{filter: bpfilter.Options{Ports: []uint16{80}}}
	// A reset between two local sockets: both events, reported once.
	k.add(ktrace.Event{Kind: ktrace.Receive, Time: 100, Src: ap("127.0.0.1:5000"), Dst: ap("127.0.0.1:9")})
	k.add(ktrace.Event{Kind: ktrace.Send, Time: 101, Src: ap("127.0.0.1:9"), Dst: ap("127.0.0.1:5000"), Reason: "NO_SOCKET"})
	// A reset the capture saw (joined), and its receive event claimed.
	k.add(ktrace.Event{Kind: ktrace.Send, Time: 200, Src: ap("10.0.0.1:80"), Dst: ap("10.0.0.2:6000"), Reason: "TCP_STATE"})
	if _, ok := k.join.Match(ap("10.0.0.1:80"), ap("10.0.0.2:6000"), 200); !ok {
		t.Fatal("no match")
	}
	// A reset received from a remote peer, matching the filter.
	k.add(ktrace.Event{Kind: ktrace.Receive, Time: 300, Src: ap("10.0.0.1:80"), Dst: ap("10.0.0.3:7000")})
	// Too recent to report yet.
	k.add(ktrace.Event{Kind: ktrace.Send, Time: 2e9, Src: ap("10.0.0.1:80"), Dst: ap("10.0.0.4:1")})

	var got []KernelReset
	k.flush(1e9, func(kr KernelReset) { got = append(got, kr) })
	if len(got) != 2 {
		t.Fatalf("got %d reports: %+v", len(got), got)
	}
	if g := got[0]; !g.Sent || !g.Received || g.Local != ap("127.0.0.1:9") || g.Reason != "NO_SOCKET" || g.InFilter || len(g.Causes) == 0 {
		t.Errorf("local pair: %+v", g)
	}
	if g := got[1]; g.Sent || !g.Received || g.Local != ap("10.0.0.1:80") || !g.InFilter {
		t.Errorf("received: %+v", g)
	}
	got = nil
	k.flush(1e9, func(kr KernelReset) { got = append(got, kr) })
	if len(got) != 0 {
		t.Errorf("reported twice: %+v", got)
	}
	k.flush(3e9, func(kr KernelReset) { got = append(got, kr) })
	if len(got) != 1 || got[0].Remote != ap("10.0.0.4:1") {
		t.Errorf("late event: %+v", got)
	}
}
