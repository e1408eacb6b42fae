// Package metrics is a small, dependency-free implementation of the
// Prometheus text exposition format (version 0.0.4): counters, gauges and
// histograms, with or without labels, served by a net/http handler.
//
// rstscope uses it instead of client_golang to stay a small static binary
// (client_golang pulls in protobuf, about 5 MB). It implements only what
// `rstscope watch` needs: metric families registered once at start, values
// updated from any goroutine, and a scrape that writes every family sorted by
// name with its series sorted by label values.
package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// ContentType is the media type of the text exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// Registry holds metric families and writes them out.
type Registry struct {
	mu   sync.Mutex
	fams map[string]*family
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{fams: map[string]*family{}} }

type kind string

const (
	counterKind   kind = "counter"
	gaugeKind     kind = "gauge"
	histogramKind kind = "histogram"
)

// family is one metric name with its HELP, TYPE and series.
type family struct {
	name, help string
	typ        kind
	labels     []string
	buckets    []float64 // histograms only

	mu     sync.Mutex
	series map[string]*series // by joined label values
	fn     func() float64     // for Func metrics: the only series, read at scrape
}

type series struct {
	values []string
	v      Value
	h      *Histogram
}

// Value is a float64 updated atomically: the storage of a counter or gauge.
type Value struct{ bits atomic.Uint64 }

// Add adds d (which must not be negative for a counter).
func (v *Value) Add(d float64) {
	for {
		old := v.bits.Load()
		nv := math.Float64bits(math.Float64frombits(old) + d)
		if v.bits.CompareAndSwap(old, nv) {
			return
		}
	}
}

// Inc adds 1.
func (v *Value) Inc() { v.Add(1) }

// Set replaces the value (gauges; for a counter only to mirror a count kept
// elsewhere that never decreases, such as the kernel's drop counter).
func (v *Value) Set(x float64) { v.bits.Store(math.Float64bits(x)) }

// Get returns the current value.
func (v *Value) Get() float64 { return math.Float64frombits(v.bits.Load()) }

// Counter is a value that only goes up.
type Counter = Value

// Gauge is a value that goes up and down.
type Gauge = Value

func (r *Registry) add(f *family) *family {
	if !metricNameRE.MatchString(f.name) {
		panic("metrics: invalid metric name " + strconv.Quote(f.name))
	}
	for _, l := range f.labels {
		if !labelNameRE.MatchString(l) || strings.HasPrefix(l, "__") || (f.typ == histogramKind && l == "le") {
			panic("metrics: invalid label name " + strconv.Quote(l) + " for " + f.name)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.fams[f.name]; dup {
		panic("metrics: duplicate metric " + f.name)
	}
	f.series = map[string]*series{}
	r.fams[f.name] = f
	return f
}

// NewCounter registers a counter without labels.
func (r *Registry) NewCounter(name, help string) *Counter {
	return r.add(&family{name: name, help: help, typ: counterKind}).get(nil).v0()
}

// NewGauge registers a gauge without labels.
func (r *Registry) NewGauge(name, help string) *Gauge {
	return r.add(&family{name: name, help: help, typ: gaugeKind}).get(nil).v0()
}

// NewGaugeFunc registers a gauge whose value is read from f at each scrape.
func (r *Registry) NewGaugeFunc(name, help string, f func() float64) {
	r.add(&family{name: name, help: help, typ: gaugeKind, fn: f})
}

// NewCounterFunc registers a counter whose value is read from f at each
// scrape; f must never decrease.
func (r *Registry) NewCounterFunc(name, help string, f func() float64) {
	r.add(&family{name: name, help: help, typ: counterKind, fn: f})
}

func (s *series) v0() *Value { return &s.v }

// Vec is a family of counters or gauges told apart by label values.
type Vec struct{ f *family }

// NewCounterVec registers a counter family with the given label names.
func (r *Registry) NewCounterVec(name, help string, labels ...string) *Vec {
	return &Vec{r.add(&family{name: name, help: help, typ: counterKind, labels: labels})}
}

// NewGaugeVec registers a gauge family with the given label names.
func (r *Registry) NewGaugeVec(name, help string, labels ...string) *Vec {
	return &Vec{r.add(&family{name: name, help: help, typ: gaugeKind, labels: labels})}
}

// With returns the series for the label values, in the order the label names
// were given, creating it at zero. It panics if the count is wrong.
func (v *Vec) With(values ...string) *Value { return v.f.get(values).v0() }

// Len returns how many series exist: callers cap label cardinality with it.
func (v *Vec) Len() int {
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	return len(v.f.series)
}

// Has reports whether a series with these label values exists.
func (v *Vec) Has(values ...string) bool {
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	_, ok := v.f.series[strings.Join(values, "\xff")]
	return ok
}

func (f *family) get(values []string) *series {
	if len(values) != len(f.labels) {
		panic(fmt.Sprintf("metrics: %s wants %d label values, got %d", f.name, len(f.labels), len(values)))
	}
	k := strings.Join(values, "\xff")
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.series[k]
	if s == nil {
		s = &series{values: append([]string(nil), values...)}
		if f.typ == histogramKind {
			s.h = &Histogram{buckets: f.buckets, counts: make([]atomic.Uint64, len(f.buckets))}
		}
		f.series[k] = s
	}
	return s
}

// Histogram counts observations in cumulative buckets, as Prometheus
// histograms do (each bucket counts the observations <= its upper bound).
type Histogram struct {
	buckets []float64
	counts  []atomic.Uint64 // per bucket, not cumulative; cumulated at scrape
	count   atomic.Uint64
	sum     Value
}

// NewHistogram registers a histogram without labels; buckets are the upper
// bounds, increasing (+Inf is implied).
func (r *Registry) NewHistogram(name, help string, buckets []float64) *Histogram {
	if !sort.Float64sAreSorted(buckets) {
		panic("metrics: histogram buckets must increase: " + name)
	}
	f := r.add(&family{name: name, help: help, typ: histogramKind, buckets: append([]float64(nil), buckets...)})
	return f.get(nil).h
}

// Observe records one value.
func (h *Histogram) Observe(x float64) {
	i := sort.SearchFloat64s(h.buckets, x) // first bucket with bound >= x
	if i < len(h.counts) {
		h.counts[i].Add(1)
	}
	h.count.Add(1)
	h.sum.Add(x)
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.count.Load() }

// WriteText writes every family in the text exposition format, families
// sorted by name and series by label values, so scrapes are stable.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	fams := make([]*family, 0, len(r.fams))
	for _, f := range r.fams {
		fams = append(fams, f)
	}
	r.mu.Unlock()
	sort.Slice(fams, func(i, j int) bool { return fams[i].name < fams[j].name })
	bw := bufio.NewWriter(w)
	for _, f := range fams {
		f.write(bw)
	}
	return bw.Flush()
}

func (f *family) write(w *bufio.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", f.name, escapeHelp(f.help), f.name, f.typ)
	if f.fn != nil {
		fmt.Fprintf(w, "%s %s\n", f.name, formatFloat(f.fn()))
		return
	}
	f.mu.Lock()
	ss := make([]*series, 0, len(f.series))
	for _, s := range f.series {
		ss = append(ss, s)
	}
	f.mu.Unlock()
	sort.Slice(ss, func(i, j int) bool {
		a, b := ss[i].values, ss[j].values
		for k := range a {
			if a[k] != b[k] {
				return a[k] < b[k]
			}
		}
		return false
	})
	for _, s := range ss {
		if s.h == nil {
			fmt.Fprintf(w, "%s%s %s\n", f.name, labelString(f.labels, s.values, "", ""), formatFloat(s.v.Get()))
			continue
		}
		// Read the count first: buckets read later can only be larger,
		// and +Inf is written as the count, so buckets stay <= +Inf.
		count := s.h.count.Load()
		var cum uint64
		for i, b := range f.buckets {
			cum += s.h.counts[i].Load()
			if cum > count {
				cum = count
			}
			fmt.Fprintf(w, "%s_bucket%s %d\n", f.name, labelString(f.labels, s.values, "le", formatFloat(b)), cum)
		}
		fmt.Fprintf(w, "%s_bucket%s %d\n", f.name, labelString(f.labels, s.values, "le", "+Inf"), count)
		fmt.Fprintf(w, "%s_sum%s %s\n", f.name, labelString(f.labels, s.values, "", ""), formatFloat(s.h.sum.Get()))
		fmt.Fprintf(w, "%s_count%s %d\n", f.name, labelString(f.labels, s.values, "", ""), count)
	}
}

// labelString renders {a="x",b="y"}, plus one extra label if extraName is
// set; "" when there are no labels at all.
func labelString(names, values []string, extraName, extraValue string) string {
	if len(names) == 0 && extraName == "" {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteString(`="`)
		b.WriteString(EscapeLabelValue(values[i]))
		b.WriteByte('"')
	}
	if extraName != "" {
		if len(names) > 0 {
			b.WriteByte(',')
		}
		b.WriteString(extraName)
		b.WriteString(`="`)
		b.WriteString(EscapeLabelValue(extraValue))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// EscapeLabelValue escapes a label value as the format requires: backslash,
// double quote and line feed become \\, \" and \n. Invalid UTF-8 is replaced
// by U+FFFD, since the format is UTF-8.
func EscapeLabelValue(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if !strings.ContainsAny(s, "\\\"\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// escapeHelp escapes HELP text: backslash and line feed only.
func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(strings.ToValidUTF8(s, "\uFFFD"))
}

// formatFloat writes integers without an exponent (up to 2^53) and other
// values in Go's shortest form; infinities and NaN as Prometheus spells them.
func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	case v == math.Trunc(v) && math.Abs(v) < 1<<53:
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// Handler serves the registry at any path it is mounted on (GET and HEAD).
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		if req.Method == http.MethodHead {
			return
		}
		r.WriteText(w)
	})
}
