package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/rstscope/rstscope/internal/bpfilter"
	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/kjoin"
	"github.com/rstscope/rstscope/internal/ktrace"
	"github.com/rstscope/rstscope/internal/livecap"
	"github.com/rstscope/rstscope/internal/source"
)

// session captures the lab's own packets on lo (inside its namespace) and,
// where it can, the kernel's reset events, until stop is called.
type session struct {
	h        *livecap.Handle
	tr       *ktrace.Tracer
	frames   []source.Frame
	events   []ktrace.Event
	capErr   error // why there is no capture ("" if there is)
	traceErr error // why there are no kernel reasons
	done     chan struct{}
	evDone   chan struct{}
	mu       sync.Mutex
	drops    uint64
}

// maxFrames bounds what one scenario may capture.
const maxFrames = 200000

func startSession(ctx context.Context) *session {
	s := &session{done: make(chan struct{}), evDone: make(chan struct{})}
	h, err := livecap.Open(livecap.Config{Interface: "lo", Filter: bpfilter.Options{}, SnapLen: 2048,
		PollTimeout: 50 * time.Millisecond, BlockTimeout: 10 * time.Millisecond})
	if err != nil {
		s.capErr = err
		close(s.done)
	} else {
		s.h = h
		go s.readLoop()
	}
	if err := ktrace.Available(); err != nil {
		s.traceErr = err
		close(s.evDone)
	} else if tr, err := ktrace.Open(ctx); err != nil {
		s.traceErr = err
		close(s.evDone)
	} else {
		s.tr = tr
		go func() {
			defer close(s.evDone)
			for ev := range tr.Events() {
				// Tracepoints are global: keep only events that involve
				// the lab's own addresses, not other namespaces' loopback.
				if !labAddr(ev.Src.Addr()) && !labAddr(ev.Dst.Addr()) {
					continue
				}
				s.mu.Lock()
				if len(s.events) < maxFrames {
					s.events = append(s.events, ev)
				}
				s.mu.Unlock()
			}
		}()
	}
	return s
}

func (s *session) readLoop() {
	defer close(s.done)
	var f source.Frame
	for {
		err := s.h.Next(&f)
		if errors.Is(err, livecap.ErrTimeout) {
			continue
		}
		if err != nil {
			return
		}
		g := f
		g.Data = append([]byte(nil), f.Data...)
		s.mu.Lock()
		if len(s.frames) < maxFrames {
			s.frames = append(s.frames, g)
		}
		s.mu.Unlock()
	}
}

// stop waits for the last packets and events to arrive (the capture ring
// hands over blocks every 10 ms; tracepoint batches come about as often),
// then closes the capture and the tracer (removing its tracefs instance).
func (s *session) stop() {
	if s.h != nil {
		// Wait until no new frame arrived for 150 ms (bounded to 2 s).
		deadline := time.Now().Add(2 * time.Second)
		last, lastChange := -1, time.Now()
		for time.Now().Before(deadline) {
			s.mu.Lock()
			n := len(s.frames)
			s.mu.Unlock()
			if n != last {
				last, lastChange = n, time.Now()
			} else if time.Since(lastChange) > 150*time.Millisecond {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if st, err := s.h.Stats(); err == nil {
			s.drops = st.Drops
		}
		s.h.Close()
		<-s.done
	}
	if s.tr != nil {
		time.Sleep(50 * time.Millisecond) // let the last tracepoint batch arrive
		s.tr.Close()
		<-s.evDone
	}
}

// annotate joins kernel send events to the captured RSTs, putting the
// kernel's reason into the packet's comment. It returns how many matched
// and the events no packet claimed.
func (s *session) annotate() (int, []ktrace.Event) {
	var j kjoin.Joiner
	for _, ev := range s.events {
		j.Add(ev)
	}
	var p decode.Parsed
	n := 0
	for i := range s.frames {
		f := &s.frames[i]
		p.Decode(f.LinkType, f.Data)
		if p.Status != decode.OK || p.Flags&decode.RST == 0 {
			continue
		}
		if ev, ok := j.MatchPacket(&p, f.Timestamp); ok {
			f.Comment = kjoin.Comment(ev)
			n++
		}
	}
	return n, j.Unmatched()
}

func (s *session) describe() string {
	c := "capture: lo (AF_PACKET)"
	if s.capErr != nil {
		c = fmt.Sprintf("capture: unavailable (%v)", s.capErr)
	}
	k := "kernel reasons: tcp:tcp_send_reset via tracefs"
	if s.traceErr != nil {
		k = fmt.Sprintf("kernel reasons: unavailable (%v)", s.traceErr)
	}
	return c + "; " + k
}

// labAddrs are the addresses the lab's scenarios use (other than 127.0.0.1,
// which every namespace has).
var labAddrs = [...]netip.Addr{netip.MustParseAddr(ServerIP), netip.MustParseAddr(UpstreamIP), netip.MustParseAddr(ClientIP)}

// labAddr reports whether a is one of labAddrs.
func labAddr(a netip.Addr) bool {
	a = a.Unmap()
	for _, l := range labAddrs {
		if a == l {
			return true
		}
	}
	return false
}
