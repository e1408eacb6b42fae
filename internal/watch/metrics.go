package watch

import (
	"strconv"
	"strings"
	"time"

	"github.com/rstscope/rstscope/internal/bpfilter"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/metrics"
)

// MaxServerLabels caps the distinct values of the server label of
// rstscope_resets_total; resets of further servers are counted under
// server="other", so a port scan cannot blow up the scrape.
const MaxServerLabels = 500

// Metrics are watch's Prometheus metrics. Counters kept by the capture and
// the engine are copied in once a second; labelled ones are counted as
// incidents and kernel events happen.
type Metrics struct {
	Registry *metrics.Registry

	packets, bytes, kernelPackets, drops, recorderDrops *metrics.Counter
	conns, evicted, kernelLost                          *metrics.Counter
	live, kernelUp, recBytes, recPkts, recSpan, heap    *metrics.Gauge
	start                                               *metrics.Gauge
	resets, incidents, kernelResets, captures, info     *metrics.Vec
	delay                                               *metrics.Histogram
}

// NewMetrics registers watch's metrics in reg.
func NewMetrics(reg *metrics.Registry) *Metrics {
	m := &Metrics{Registry: reg}
	m.packets = reg.NewCounter("rstscope_packets_total", "Packets captured (after the kernel filter).")
	m.bytes = reg.NewCounter("rstscope_captured_bytes_total", "Bytes captured (up to the snap length per packet).")
	m.kernelPackets = reg.NewCounter("rstscope_capture_kernel_packets_total", "Packets the kernel passed to the capture socket, including those it dropped.")
	m.drops = reg.NewCounter("rstscope_capture_drops_total", "Packets the kernel dropped because the capture ring was full (rstscope was too slow or the ring too small: --buffer-mb).")
	m.recorderDrops = reg.NewCounter("rstscope_recorder_drops_total", "Packets larger than the flight recorder, not analysed.")
	m.conns = reg.NewCounter("rstscope_connections_total", "TCP connections finished (ended, idle, evicted or at exit).")
	m.evicted = reg.NewCounter("rstscope_connections_evicted_total", "Connections released early because more than --max-conns were open.")
	m.live = reg.NewGauge("rstscope_connections_tracked", "TCP connections being tracked now.")
	m.resets = reg.NewCounterVec("rstscope_resets_total", "Reset incidents by cause, by who reset (client, server, other) and by server endpoint (ip:port; server=\"other\" once 500 series exist).", "cause", "reset_by", "server")
	m.incidents = reg.NewCounterVec("rstscope_incidents_total", "Incidents by kind (reset, http-error, no-answer) and cause.", "kind", "cause")
	m.kernelResets = reg.NewCounterVec("rstscope_kernel_resets_total", "Resets the kernel reported (tcp_send_reset: direction sent, with its sk_rst_reason; tcp_receive_reset: direction received, reason none), and whether a captured RST matched (captured=true) or not (outside the capture filter, interface or namespace).", "direction", "reason", "captured")
	m.kernelLost = reg.NewCounter("rstscope_kernel_events_lost_total", "Kernel reset events overwritten in the trace buffer before rstscope read them.")
	m.kernelUp = reg.NewGauge("rstscope_kernel_tracing", "1 if the kernel's reset tracepoints are being read, else 0.")
	m.delay = reg.NewHistogram("rstscope_incident_delay_seconds", "Time from the capture of the packet that decided an incident to its report.", []float64{0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300})
	m.recBytes = reg.NewGauge("rstscope_recorder_bytes", "Bytes held by the flight recorder.")
	m.recPkts = reg.NewGauge("rstscope_recorder_packets", "Packets held by the flight recorder.")
	m.recSpan = reg.NewGauge("rstscope_recorder_span_seconds", "Time covered by the flight recorder (oldest to newest packet).")
	m.captures = reg.NewCounterVec("rstscope_captures_total", "Incident captures (--save-dir): saved, skipped (rate limit) or error.", "result")
	m.heap = reg.NewGauge("rstscope_heap_inuse_bytes", "Go heap in use by rstscope (runtime.MemStats.HeapInuse).")
	m.start = reg.NewGauge("rstscope_start_time_seconds", "When watch started, Unix time.")
	m.info = reg.NewGaugeVec("rstscope_watch_info", "Always 1: the capture's interface and filter.", "interface", "filter")
	return m
}

// setup records what Run managed to open.
func (m *Metrics) setup(cfg Config, info Info) {
	m.start.Set(float64(time.Now().UnixNano()) / 1e9)
	m.info.With(cfg.Interface, FilterString(cfg.Filter)).Set(1)
	if info.Kernel {
		m.kernelUp.Set(1)
	}
	for _, c := range []string{"saved", "skipped", "error"} {
		m.captures.With(c)
	}
}

// update copies the counters kept elsewhere.
func (m *Metrics) update(st Stats) {
	m.packets.Set(float64(st.Packets))
	m.bytes.Set(float64(st.Bytes))
	m.kernelPackets.Set(float64(st.KernelPackets))
	m.drops.Set(float64(st.Drops))
	m.recorderDrops.Set(float64(st.RecorderDrops))
	m.conns.Set(float64(st.Conns))
	m.evicted.Set(float64(st.Evicted))
	m.kernelLost.Set(float64(st.KernelLost))
	m.live.Set(float64(st.LiveConns))
	m.recBytes.Set(float64(st.RecorderBytes))
	m.recPkts.Set(float64(st.RecorderPkts))
	m.recSpan.Set(st.RecorderSpan.Seconds())
	m.heap.Set(float64(st.HeapInuse))
}

// countIncident counts one incident.
func (m *Metrics) countIncident(inc *Incident) {
	m.incidents.With(inc.Kind, string(inc.Cause)).Inc()
	m.delay.Observe(inc.Delay.Seconds())
	if inc.Kind != diagnose.KindReset {
		return
	}
	server := "unknown"
	if inc.Conn != nil {
		server = inc.Conn.Server
	}
	by := inc.ResetBy
	if !m.resets.Has(string(inc.Cause), by, server) && m.resets.Len() >= MaxServerLabels {
		server = "other"
	}
	m.resets.With(string(inc.Cause), by, server).Inc()
}

// FilterString describes a capture filter the way the flags give it, e.g.
// "port 80,443 and host 10.0.0.1", or "all tcp".
func FilterString(o bpfilter.Options) string {
	var parts []string
	if len(o.Ports) > 0 {
		var ps []string
		for _, p := range o.Ports {
			ps = append(ps, strconv.Itoa(int(p)))
		}
		parts = append(parts, "port "+strings.Join(ps, ","))
	}
	if len(o.Hosts) > 0 {
		var hs []string
		for _, h := range o.Hosts {
			hs = append(hs, h.String())
		}
		parts = append(parts, "host "+strings.Join(hs, ","))
	}
	if len(parts) == 0 {
		return "all tcp"
	}
	return strings.Join(parts, " and ")
}
