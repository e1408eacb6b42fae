package watch

import (
	"context"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rstscope/rstscope/internal/bpfilter"
	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/metrics"
)

var (
	soakFor   = flag.Duration("soak", 5*time.Second, "how long TestSoak loads the server (e.g. -soak 30s)")
	soakClose = flag.Bool("soak-close", false, "TestSoak's load opens a new connection per request (Connection: close) instead of keep-alive")
)

// TestSoak loads an HTTP server in a private namespace (wrk if installed,
// else Go's own client) while a refused connection is made every 20 ms and a
// request through a reverse proxy whose upstream refuses (a 502) every
// 100 ms, with watch capturing everything in one engine pipeline and
// incidents saved (at the default rate limit). It checks that every refused
// connection and every 502 is reported while watch runs, each 502 tied to
// its upstream (except those whose packets the kernel dropped), that heap in
// use at the end is not above what it was after the warm-up (plus slack for
// the load generator's own state), and it states the kernel's drops and the
// incident delays.
func TestSoak(t *testing.T) {
	ns := newNetns(t)
	ln := listenIn(t, ns)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})}
	go srv.Serve(ln)
	defer srv.Close()

	const closedPort = 7
	// The proxy: its upstream refuses, so every request gets a 502.
	lnP := listenIn(t, ns)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(closedPort)})
		},
		Transport: &http.Transport{DialContext: func(_ context.Context, network, addr string) (c net.Conn, err error) {
			ns.Do(func() { c, err = net.DialTimeout(network, addr, time.Second) })
			return
		}},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	psrv := &http.Server{Handler: rp}
	go psrv.Serve(lnP)
	defer psrv.Close()
	ptr := &http.Transport{DisableKeepAlives: true, DialContext: func(_ context.Context, network, addr string) (c net.Conn, err error) {
		ns.Do(func() { c, err = net.DialTimeout(network, addr, time.Second) })
		return
	}}
	defer ptr.CloseIdleConnections()
	pcl := &http.Client{Transport: ptr, Timeout: 2 * time.Second}
	proxyURL := "http://" + lnP.Addr().String() + "/"

	reg := metrics.NewRegistry()
	r := start(t, Config{
		Filter:     bpfilter.Options{Ports: []uint16{portOf(ln.Addr()), closedPort, portOf(lnP.Addr())}},
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
	if *soakClose {
		load = "go client (8 workers, a connection per request)"
	}
	if path, err := exec.LookPath("wrk"); err == nil {
		args := []string{"-t2", "-c32", "-d" + strconv.Itoa(int(soakFor.Seconds())) + "s"}
		if *soakClose {
			args = append(args, "-H", "Connection: close")
		}
		load = "wrk " + strings.Join(args[:2], " ")
		if *soakClose {
			load += " (Connection: close)"
		}
		args = append(args, url)
		var cmd *exec.Cmd
		var serr error
		// Started from the namespace's thread, so wrk runs in it.
		ns.Do(func() {
			cmd = exec.CommandContext(ctx, path, args...)
			serr = cmd.Start()
		})
		if serr != nil {
			t.Fatal(serr)
		}
		wg.Add(1)
		go func() { defer wg.Done(); cmd.Wait() }()
	} else {
		tr := &http.Transport{MaxIdleConnsPerHost: 8, DisableKeepAlives: *soakClose, DialContext: func(_ context.Context, network, addr string) (c net.Conn, err error) {
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

	// Refused connections: a steady trickle of incidents; and a 502 every
	// 5th tick.
	refused, bad502, ticks := 0, 0, 0
	var heapStart, heapEnd uint64
	warm := time.Now().Add(time.Second)
	if *soakClose {
		// A connection per request: the tracker's table (about 11k
		// connections at 1 s linger under wrk) and its free list take
		// seconds to reach their size.
		warm = time.Now().Add(min(10*time.Second, *soakFor/3))
	}
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
		if ticks++; ticks%5 == 0 {
			if resp, err := pcl.Get(proxyURL); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusBadGateway {
					bad502++
				}
			}
		}
		if heapStart == 0 && time.Now().After(warm) {
			heapStart = heapInuse()
		}
	}
	wg.Wait()
	heapEnd = heapInuse()

	// Every refused connection must be reported, except those whose
	// packets the kernel dropped (the capture ring overflowed under load).
	// 502s are reported a settle delay after their response, while watch
	// runs (they are not held until the end).
	count := func(c cause.ID) (n int) {
		for _, inc := range r.incidents {
			if inc.Cause == c {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(5*time.Second + time.Second + settleMargin)
	for {
		r.mu.Lock()
		done := count(cause.Refused) >= refused && count(cause.UpstreamFailure) >= bad502
		r.mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.mu.Lock()
	var delays, delays502 []time.Duration
	running502, tied := 0, 0
	for _, inc := range r.incidents {
		switch inc.Cause {
		case cause.Refused:
			delays = append(delays, inc.Delay)
		case cause.UpstreamFailure:
			delays502 = append(delays502, inc.Delay)
			running502++
			if len(inc.Related) == 1 {
				tied++
			}
		}
	}
	statsLog := slices.Clone(r.statsLog)
	r.mu.Unlock()
	r.stop(t)
	if r.err != nil {
		t.Fatal(r.err)
	}
	st := r.stats
	if n := count(cause.Refused); n < refused {
		t.Logf("%d of %d refused connections reported, with %d kernel drops", n, refused, st.Drops)
		if uint64(refused-n) > st.Drops {
			t.Errorf("%d refused connections missing, more than the %d packets the kernel dropped", refused-n, st.Drops)
		}
	}
	t.Logf("%d 502s received by the client; %d reported while watch ran, %d of them tied to their refused upstream", bad502, running502, tied)
	if bad502 == 0 {
		t.Error("the proxy answered no 502")
	}
	if missing := bad502 - tied; missing > 0 && uint64(missing) > st.Drops {
		t.Errorf("%d 502s not reported while watch ran or not tied to their upstream, more than the %d packets the kernel dropped", missing, st.Drops)
	}
	pct := func(ds []time.Duration, p float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		slices.Sort(ds)
		return ds[int(p*float64(len(ds)-1))].Round(time.Millisecond)
	}
	t.Logf("load %s for %v: %d packets (%.0f/s), kernel drops %d, %d connections, %d incidents (%d refused made, %d 502s), %d saved (%d skipped by the rate limit)",
		load, *soakFor, st.Packets, float64(st.Packets)/soakFor.Seconds(), st.Drops, st.Conns, st.Incidents, refused, bad502, st.Saved, st.SaveSkipped)
	t.Logf("incident delay (RST captured -> handed over): p50 %v, p90 %v, max %v", pct(delays, 0.5), pct(delays, 0.9), pct(delays, 1))
	t.Logf("502 delay (response captured -> handed over; settle %v): p50 %v, p90 %v, max %v", time.Second+settleMargin, pct(delays502, 0.5), pct(delays502, 0.9), pct(delays502, 1))
	t.Logf("heap in use after GC: %.1f MiB after warm-up, %.1f MiB at the end; recorder %.1f MiB / %d packets; kernel reasons joined %d, lost events %d",
		mib(heapStart), mib(heapEnd), mib(uint64(st.RecorderBytes)), st.RecorderPkts, st.KernelMatched, st.KernelLost)
	var peak [2]uint64
	var live [2]int
	for i, s := range statsLog {
		h, l := &peak[0], &live[0]
		if i >= len(statsLog)/2 {
			h, l = &peak[1], &live[1]
		}
		*h = max(*h, s.HeapInuse)
		*l = max(*l, s.LiveConns)
	}
	t.Logf("peak heap in use (no GC forced): first half %.1f MiB, second half %.1f MiB; peak connections tracked: first half %d, second half %d",
		mib(peak[0]), mib(peak[1]), live[0], live[1])
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
