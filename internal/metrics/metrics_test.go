package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestExposition(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounter("x_total", "Things counted.\nSecond line with a \\ backslash.")
	c.Add(3)
	g := r.NewGauge("a_gauge", "A gauge.")
	g.Set(-2.5)
	v := r.NewCounterVec("resets_total", "Resets.", "cause", "server")
	v.With("refused", `10.0.0.1:80`).Inc()
	v.With("stale-keepalive", "we\"ird\\\nvalue").Add(2)
	r.NewGaugeFunc("f", "From a func.", func() float64 { return 1e6 })
	h := r.NewHistogram("delay_seconds", "Delay.", []float64{0.5, 1, 2})
	for _, x := range []float64{0.1, 0.5, 0.7, 3} {
		h.Observe(x)
	}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `# HELP a_gauge A gauge.
# TYPE a_gauge gauge
a_gauge -2.5
# HELP delay_seconds Delay.
# TYPE delay_seconds histogram
delay_seconds_bucket{le="0.5"} 2
delay_seconds_bucket{le="1"} 3
delay_seconds_bucket{le="2"} 3
delay_seconds_bucket{le="+Inf"} 4
delay_seconds_sum 4.3
delay_seconds_count 4
# HELP f From a func.
# TYPE f gauge
f 1000000
# HELP resets_total Resets.
# TYPE resets_total counter
resets_total{cause="refused",server="10.0.0.1:80"} 1
resets_total{cause="stale-keepalive",server="we\"ird\\\nvalue"} 2
# HELP x_total Things counted.\nSecond line with a \\ backslash.
# TYPE x_total counter
x_total 3
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	if v.Len() != 2 || !v.Has("refused", "10.0.0.1:80") {
		t.Errorf("Len %d", v.Len())
	}
}

func TestInvalidNamesPanic(t *testing.T) {
	for _, f := range []func(r *Registry){
		func(r *Registry) { r.NewCounter("1bad", "") },
		func(r *Registry) { r.NewCounterVec("ok", "", "bad-label") },
		func(r *Registry) { r.NewCounterVec("ok", "", "__reserved") },
		func(r *Registry) { r.NewCounter("dup", ""); r.NewGauge("dup", "") },
		func(r *Registry) { r.NewCounterVec("ok", "", "a").With("x", "y") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f(NewRegistry())
		}()
	}
}

func TestHandlerConcurrent(t *testing.T) {
	r := NewRegistry()
	v := r.NewCounterVec("n_total", "N.", "k")
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				v.With("a").Inc()
			}
		}()
	}
	for i := 0; i < 5; i++ {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != ContentType {
			t.Errorf("Content-Type %q", ct)
		}
	}
	wg.Wait()
	if got := v.With("a").Get(); got != 4000 {
		t.Errorf("count %v, want 4000", got)
	}
	resp, err := http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST status %d", resp.StatusCode)
	}
}
