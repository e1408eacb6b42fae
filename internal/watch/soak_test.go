package watch

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rstscope/rstscope/internal/bpfilter"
	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/metrics"
)

var soakFor = flag.Duration("soak", 5*time.Second, "how long TestSoak loads the server (e.g. -soak 30s)")

// TestSoak loads an HTTP server in a private namespace (wrk if installed,
// else Go's own client) while a refused connection is made every 20 ms,
// with watch capturing everything, generations rotating every 25 incidents
// and incidents saved (at the default rate limit). It checks that every refused connection is
// reported, that heap in use at the end is not above what it was after the
// warm-up (plus slack for the load generator's own state), and it states the
// kernel's drops and the incident delays.
func TestSoak(t *testing.T) {
	ns := newNetns(t)
	ln := listenIn(t, ns)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})}
	go srv.Serve(ln)
	defer srv.Close()

	oldRotate := rotateIncidents
	rotateIncidents = 25
	defer func() { rotateIncidents = oldRotate }()

	const closedPort = 7
	reg := metrics.NewRegistry()
	r := start(t, Config{
		Filter:     bpfilter.Options{Ports: []uint16{portOf(ln.Addr()), closedPort}},
		Kernel:     true,
		RecordMB:   16,
		RecordFor:  5 * time.Second,
		SaveDir:    t.TempDir(),
		StatsEvery: 250 * time.Millisecond,
		Metrics:    NewMetrics(reg),
		Open:       openIn(ns),
	}, true)

	ctx, cancel := context.WithTimeout(context.Background(), *soakFor)
	defer cancel()
	url := "http://" + ln.Addr().String() + "/"
	var requests atomic.Int64
	var wg sync.WaitGroup
	load := "go client (8 connections)"
	if path, err := exec.LookPath("wrk"); err == nil {
		load = "wrk -t2 -c32"
		var cmd *exec.Cmd
		var serr error
		// Started from the namespace's thread, so wrk runs in it.
		ns.Do(func() {
			cmd = exec.CommandContext(ctx, path, "-t2", "-c32", "-d"+strconv.Itoa(int(soakFor.Seconds()))+"s", url)
			serr = cmd.Start()
		})
		if serr != nil {
			t.Fatal(serr)
		}
		wg.Add(1)
		go func() { defer wg.Done(); cmd.Wait() }()
	} else {
		tr := &http.Transport{MaxIdleConnsPerHost: 8, DialContext: func(_ context.Context, network, addr string) (c net.Conn, err error) {
			ns.Do(func() { c, err = net.DialTimeout(network, addr, 2*time.Second) })
			return
		}}
		defer tr.CloseIdleConnections()
		cl := &http.Client{Transport: tr, Timeout: 2 * time.Second}
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					resp, err := cl.Get(url)
					if err != nil {
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					requests.Add(1)
				}
			}()
		}
	}

	// Refused connections: a steady trickle of incidents.
	refused := 0
	var heapStart, heapEnd uint64
	warm := time.Now().Add(time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		<-tick.C
		var err error
		ns.Do(func() {
			var c net.Conn
			c, err = net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(closedPort), time.Second)
			if err == nil {
				c.Close()
			}
		})
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial closed port: %v", err)
		}
		refused++
		if heapStart == 0 && time.Now().After(warm) {
			heapStart = heapInuse()
		}
	}
	wg.Wait()
	heapEnd = heapInuse()

	// Every refused connection must be reported, except those whose
	// packets the kernel dropped (the capture ring overflowed under load).
	countRefused := func() (n int) {
		for _, inc := range r.incidents {
			if inc.Cause == cause.Refused {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		n := countRefused()
		r.mu.Unlock()
		if n >= refused || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.mu.Lock()
	var delays []time.Duration
	for _, inc := range r.incidents {
		if inc.Cause == cause.Refused {
			delays = append(delays, inc.Delay)
		}
	}
	statsLog := slices.Clone(r.statsLog)
	r.mu.Unlock()
	r.stop(t)
	if r.err != nil {
		t.Fatal(r.err)
	}
	st := r.stats
	if n := countRefused(); n < refused {
		t.Logf("%d of %d refused connections reported, with %d kernel drops", n, refused, st.Drops)
		if uint64(refused-n) > st.Drops {
			t.Errorf("%d refused connections missing, more than the %d packets the kernel dropped", refused-n, st.Drops)
		}
	}
	slices.Sort(delays)
	pct := func(p float64) time.Duration { return delays[int(p*float64(len(delays)-1))].Round(time.Millisecond) }
	t.Logf("load %s for %v: %d packets (%.0f/s), kernel drops %d, %d connections, %d incidents (%d refused made), %d saved (%d skipped by the rate limit), %d generations rotated",
		load, *soakFor, st.Packets, float64(st.Packets)/soakFor.Seconds(), st.Drops, st.Conns, st.Incidents, refused, st.Saved, st.SaveSkipped, st.Incidents/rotateIncidents)
	t.Logf("incident delay (RST captured -> handed over): p50 %v, p90 %v, max %v", pct(0.5), pct(0.9), pct(1))
	t.Logf("heap in use after GC: %.1f MiB after warm-up, %.1f MiB at the end; recorder %.1f MiB / %d packets; kernel reasons joined %d, lost events %d",
		mib(heapStart), mib(heapEnd), mib(uint64(st.RecorderBytes)), st.RecorderPkts, st.KernelMatched, st.KernelLost)
	var peak [2]uint64
	for i, s := range statsLog {
		h := &peak[0]
		if i >= len(statsLog)/2 {
			h = &peak[1]
		}
		*h = max(*h, s.HeapInuse)
	}
	t.Logf("peak heap in use (no GC forced): first half %.1f MiB, second half %.1f MiB", mib(peak[0]), mib(peak[1]))
	if heapEnd > heapStart+16<<20 {
		t.Errorf("heap grew from %.1f to %.1f MiB", mib(heapStart), mib(heapEnd))
	}
	if st.Packets == 0 || st.Saved == 0 {
		t.Errorf("captured %d packets, saved %d captures", st.Packets, st.Saved)
	}
	if st.RecorderBytes > 16<<20 {
		t.Errorf("recorder holds %d bytes, over its 16 MiB cap", st.RecorderBytes)
	}
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
