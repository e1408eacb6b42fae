package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rstscope/rstscope/internal/bpfilter"
	"github.com/rstscope/rstscope/internal/cli"
	"github.com/rstscope/rstscope/internal/livecap"
	"github.com/rstscope/rstscope/internal/metrics"
	"github.com/rstscope/rstscope/internal/report"
	"github.com/rstscope/rstscope/internal/watch"
)

func init() {
	cli.Register(&cli.Command{
		Name:    "watch",
		Summary: "capture live and explain each reset as it happens",
		Usage:   "rstscope watch [-i IFACE] [--port N] [--host H] [flags]",
		Help: `Captures live (no tcpdump needed), rebuilds every TCP connection with the same
engine as 'rstscope analyze', and prints each reset as soon as its connection
is over: what happened, the packets that prove it, why, and what to change.
Stop it with Ctrl-C (or SIGTERM): connections still open are finished and
reported, files are flushed, and nothing is left in the kernel.

As root on Linux 6.10+ it also reads the kernel's reset tracepoints: each
captured RST then carries the kernel's own reason (NO_SOCKET, TCP_ABORT_ON_CLOSE,
TCP_TIMEWAIT_SOCKET, ...), and resets the kernel sent or received on
connections the capture did not see (outside --port/--host, another interface)
are reported as "kernel" lines, so none is missed.

It keeps the last --record seconds of packets in memory (at most --record-mb);
with --save-dir each incident is written there as a pcapng (its connection and
the --save-before seconds before it, kernel reasons as packet comments), which
'rstscope analyze' and Wireshark read.

Examples:
  sudo rstscope watch --port 8080                   # a server resetting clients
  sudo rstscope watch -i eth0 --host 10.0.0.7 --save-dir /var/tmp/rst
  sudo rstscope watch --json --port 443 | jq 'select(.type=="incident") | .cause'
  sudo rstscope watch --metrics :9832 --stats 1m -q # for Prometheus (see deploy/)

Privileges: capturing needs CAP_NET_RAW (root, or once:
  sudo setcap cap_net_raw+ep "$(command -v rstscope)"
); kernel reasons need root and tracefs. Without them watch says so and works
from packets alone.

Exit status: 0 after a clean stop; 2 usage error, or the capture could not be
opened or failed.`,
		Flags: watchFlags,
	})
}

// portList is a repeatable, comma-separated --port.
type portList []uint16

func (p *portList) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("%q is not a TCP port (1-65535)", f)
		}
		*p = append(*p, uint16(n))
	}
	if len(*p) > bpfilter.MaxPorts {
		return fmt.Errorf("at most %d ports", bpfilter.MaxPorts)
	}
	return nil
}

func (p *portList) String() string { return "" }

// hostList is a repeatable, comma-separated --host (addresses or names).
type hostList []string

func (h *hostList) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			*h = append(*h, f)
		}
	}
	return nil
}

func (h *hostList) String() string { return "" }

type watchOpts struct {
	cfg     watch.Config
	json    bool
	quiet   bool
	noColor bool
	metrics string
	lines   int
	hosts   []string
	dur     time.Duration
}

func watchFlags(fs *flag.FlagSet) func(env *cli.Env, args []string) int {
	var o watchOpts
	var ports portList
	var hosts hostList
	fs.StringVar(&o.cfg.Interface, "i", "any", "capture on `IFACE`; \"any\" is every interface (loopback packets are counted once)")
	fs.Var(&ports, "port", "keep only TCP packets to or from this `PORT` (repeat or comma-separate; filtered in the kernel)")
	fs.Var(&hosts, "host", "keep only packets to or from this `HOST` (address or name; repeat or comma-separate)")
	fs.BoolVar(&o.json, "json", false, "JSON Lines: incident objects as 'analyze --json' writes them (plus \"capture\"), kernel_reset and stats objects")
	fs.StringVar(&o.cfg.SaveDir, "save-dir", "", "write a pcapng for each incident to `DIR` (created if missing)")
	fs.DurationVar(&o.cfg.RecordFor, "record", 30*time.Second, "flight recorder: keep this much recent traffic in memory")
	fs.IntVar(&o.cfg.RecordMB, "record-mb", 64, "flight recorder: at most this many MiB (the oldest packets go first)")
	fs.DurationVar(&o.cfg.SaveBefore, "save-before", 5*time.Second, "a saved capture starts this long before the reset (plus the whole connection)")
	fs.IntVar(&o.cfg.SavesPerMinute, "save-rate", 60, "write at most this many captures per minute (the rest are counted)")
	fs.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics on `ADDR` (e.g. :9832 or 127.0.0.1:9832) at /metrics")
	fs.DurationVar(&o.cfg.StatsEvery, "stats", 0, "print capture statistics (packets, kernel drops, connections, memory) every `INTERVAL`")
	noKernel := fs.Bool("no-kernel", false, "do not read the kernel's reset tracepoints even when possible")
	fs.DurationVar(&o.cfg.KernelWait, "kernel-wait", 250*time.Millisecond, "how long an RST waits for the kernel's event before it is diagnosed without it")
	fs.IntVar(&o.cfg.MaxConns, "max-conns", 100000, "connections tracked at once; the oldest beyond it are released early (counted)")
	fs.DurationVar(&o.cfg.Linger, "linger", time.Second, "wait this long after a connection ends for late packets before diagnosing it")
	fs.DurationVar(&o.cfg.Idle, "idle", 5*time.Minute, "finish connections silent this long (keep it above the keep-alive gaps you care about)")
	fs.IntVar(&o.cfg.SnapLen, "snaplen", 0, "bytes kept per packet (default 262144: whole packets; 128 keeps headers only)")
	fs.IntVar(&o.cfg.BufferMB, "buffer-mb", 8, "kernel capture ring in MiB; raise it if kernel drops are reported")
	fs.DurationVar(&o.dur, "duration", 0, "stop after this long (0: until Ctrl-C or SIGTERM)")
	fs.IntVar(&o.lines, "lines", 24, "timeline lines per connection in the text output")
	fs.BoolVar(&o.quiet, "q", false, "no banner, warnings or final statistics on stderr")
	fs.BoolVar(&o.noColor, "no-color", false, "no colours even on a terminal (NO_COLOR is honoured too)")
	return func(env *cli.Env, args []string) int {
		if len(args) != 0 {
			fmt.Fprintln(env.Stderr, "rstscope watch: takes no arguments (use --port, --host, -i)\nRun 'rstscope watch --help' for usage.")
			return cli.ExitUsage
		}
		o.cfg.Filter.Ports = ports
		o.hosts = hosts
		o.cfg.Kernel = !*noKernel
		return runWatch(env, o)
	}
}

// resolveHosts turns --host values into addresses.
func resolveHosts(ctx context.Context, hosts []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, h := range hosts {
		if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
			out = append(out, a.WithZone(""))
			continue
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", h)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("--host %s: %v", cli.Clean(h), err)
		}
		out = append(out, addrs...)
	}
	if len(out) > bpfilter.MaxHosts {
		return nil, fmt.Errorf("--host: at most %d addresses (got %d)", bpfilter.MaxHosts, len(out))
	}
	return out, nil
}

func runWatch(env *cli.Env, o watchOpts) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.dur)
		defer cancel()
	}
	hosts, err := resolveHosts(ctx, o.hosts)
	if err != nil {
		fmt.Fprintf(env.Stderr, "rstscope watch: %v\n", err)
		return cli.ExitUsage
	}
	o.cfg.Filter.Hosts = hosts
	if o.cfg.SaveDir != "" {
		if err := os.MkdirAll(o.cfg.SaveDir, 0o750); err != nil {
			fmt.Fprintf(env.Stderr, "rstscope watch: --save-dir: %v\n", err)
			return cli.ExitUsage
		}
	}

	// Everything written to stdout goes through one locked, flushed writer:
	// incidents are written from the capture goroutine, nothing else.
	out := &lineWriter{w: bufio.NewWriter(env.Stdout)}
	warn := func(format string, a ...any) {
		if !o.quiet {
			fmt.Fprintf(env.Stderr, "rstscope watch: "+format+"\n", a...)
		}
	}
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	topts := report.TextOptions{Color: !o.noColor && cli.UseColor(env.Stdout), MaxLines: o.lines}

	var srv *http.Server
	var srvDone chan struct{}
	if o.metrics != "" {
		reg := metrics.NewRegistry()
		o.cfg.Metrics = watch.NewMetrics(reg)
		ln, err := net.Listen("tcp", o.metrics)
		if err != nil {
			fmt.Fprintf(env.Stderr, "rstscope watch: --metrics: %v\n", err)
			return cli.ExitUsage
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", reg.Handler())
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" {
				http.NotFound(w, r)
				return
			}
			fmt.Fprintln(w, "rstscope watch: metrics at /metrics")
		})
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		srvDone = make(chan struct{})
		go func() { defer close(srvDone); srv.Serve(ln) }()
		warn("metrics on http://%s/metrics", ln.Addr())
	}

	o.cfg.Ready = func(info watch.Info) {
		k := "on (tcp_send_reset, tcp_receive_reset)"
		if !o.cfg.Kernel {
			k = "off (--no-kernel)"
		} else if info.KernelErr != nil {
			k = "off"
			warn("kernel reasons unavailable: %v; resets are diagnosed from packets only", info.KernelErr)
		}
		save := ""
		if o.cfg.SaveDir != "" {
			save = ", saving incidents to " + o.cfg.SaveDir
		}
		warn("capturing on %s (%s, %s), kernel reasons %s, recorder %v / %d MiB%s; Ctrl-C to stop",
			info.Interface, watch.FilterString(o.cfg.Filter), report.LinkName(info.LinkType), k, o.cfg.RecordFor, o.cfg.RecordMB, save)
	}
	o.cfg.Warn = func(msg string) { warn("%s", cli.Clean(msg)) }
	o.cfg.OnIncident = func(inc *watch.Incident) {
		if o.json {
			enc.Encode(incidentJSON{IncidentJSON: report.Incident(inc.Incident), Capture: inc.Capture, DelayS: inc.Delay.Seconds()})
		} else {
			report.WriteIncident(out, inc.N, inc.Incident, topts)
			if inc.Capture != "" {
				fmt.Fprintf(out, "    evidence: %s\n", inc.Capture)
			}
		}
		if inc.SaveErr != nil && !errors.Is(inc.SaveErr, watch.ErrSaveSkipped) {
			warn("saving incident %d: %v", inc.N, inc.SaveErr)
		}
		out.Flush()
	}
	o.cfg.OnKernelReset = func(kr watch.KernelReset) {
		if o.json {
			enc.Encode(kernelResetJSON(kr))
		} else {
			fmt.Fprintln(out, kernelResetLine(kr))
		}
		out.Flush()
	}
	o.cfg.OnStats = func(st watch.Stats) {
		if o.json {
			enc.Encode(statsJSON(st, "stats"))
			out.Flush()
			return
		}
		if !o.quiet {
			fmt.Fprintf(env.Stderr, "rstscope watch: %s\n", statsLine(st))
		}
	}

	st, err := watch.Run(ctx, o.cfg)
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		srv.Shutdown(sctx)
		cancel()
		<-srvDone
	}
	if err != nil {
		if errors.Is(err, livecap.ErrNotPermitted) {
			fmt.Fprintf(env.Stderr, `rstscope watch: cannot capture: %v.
  Run it as root, or give the binary the capability once:
    sudo setcap cap_net_raw+ep "$(command -v rstscope)"
  (kernel reasons additionally need root). Or capture with tcpdump and run
  'rstscope analyze' on the file.
`, err)
		} else {
			fmt.Fprintf(env.Stderr, "rstscope watch: %s\n", cli.Clean(err.Error()))
		}
		out.Flush()
		return cli.ExitUsage
	}
	if o.json {
		enc.Encode(statsJSON(st, "watch_summary"))
	} else if !o.quiet {
		fmt.Fprintf(env.Stderr, "rstscope watch: stopped. %s\n", statsLine(st))
	}
	out.Flush()
	return cli.ExitOK
}

// lineWriter serialises writes to stdout.
type lineWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lineWriter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Flush()
}

var _ io.Writer = (*lineWriter)(nil)

// incidentJSON is analyze's incident object plus where its evidence went.
type incidentJSON struct {
	report.IncidentJSON
	Capture string  `json:"capture,omitempty"`
	DelayS  float64 `json:"delay_s"`
}

type kernelJSON struct {
	Type     string   `json:"type"`
	Time     string   `json:"time"`
	Sent     bool     `json:"sent"`
	Received bool     `json:"received"`
	Local    string   `json:"local"`
	Remote   string   `json:"remote"`
	Reason   string   `json:"kernel_reason,omitempty"`
	State    string   `json:"state,omitempty"`
	InFilter bool     `json:"in_filter"`
	Causes   []string `json:"likely_causes,omitempty"`
	PID      int      `json:"pid,omitempty"`
	Comm     string   `json:"comm,omitempty"`
}

func kernelResetJSON(kr watch.KernelReset) kernelJSON {
	j := kernelJSON{Type: "kernel_reset", Time: report.RFC3339(kr.Time), Sent: kr.Sent, Received: kr.Received,
		Local: kr.Local.String(), Remote: kr.Remote.String(), Reason: kr.Reason, State: kr.State,
		InFilter: kr.InFilter, PID: kr.PID, Comm: kr.Comm}
	for _, c := range kr.Causes {
		j.Causes = append(j.Causes, string(c))
	}
	return j
}

// kernelResetLine is the text form of a kernel reset nobody captured.
func kernelResetLine(kr watch.KernelReset) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n[kernel] %s  ", report.RFC3339(kr.Time))
	switch {
	case kr.Sent && kr.Received:
		fmt.Fprintf(&b, "RST between two local sockets: %s reset %s", kr.Local, kr.Remote)
	case kr.Sent:
		fmt.Fprintf(&b, "this host sent RST %s -> %s", kr.Local, kr.Remote)
	default:
		fmt.Fprintf(&b, "this host received RST on %s from %s", kr.Local, kr.Remote)
	}
	if kr.Reason != "" {
		fmt.Fprintf(&b, ", reason %s", cli.Clean(kr.Reason))
		if kr.State != "" {
			fmt.Fprintf(&b, " (socket %s)", cli.Clean(kr.State))
		}
	}
	if len(kr.Causes) > 0 {
		var cs []string
		for _, c := range kr.Causes {
			cs = append(cs, string(c))
		}
		fmt.Fprintf(&b, "\n    usually: %s", strings.Join(cs, ", "))
	}
	if kr.InFilter {
		b.WriteString("\n    not in the capture although it matches the filter: another interface or network namespace, or a capture drop")
	} else {
		b.WriteString("\n    not captured: outside the capture filter")
	}
	return b.String()
}

type statsObj struct {
	Type          string  `json:"type"`
	ElapsedS      float64 `json:"elapsed_s"`
	Packets       uint64  `json:"packets"`
	Bytes         uint64  `json:"bytes"`
	KernelPackets uint64  `json:"kernel_packets"`
	Drops         uint64  `json:"kernel_drops"`
	LiveConns     int     `json:"connections_tracked"`
	Conns         uint64  `json:"connections_finished"`
	Evicted       uint64  `json:"connections_evicted"`
	Incidents     int     `json:"incidents"`
	KernelTracing bool    `json:"kernel_tracing"`
	KernelMatched uint64  `json:"kernel_reasons_joined"`
	KernelOnly    uint64  `json:"kernel_resets_uncaptured"`
	KernelLost    uint64  `json:"kernel_events_lost"`
	Saved         uint64  `json:"captures_saved"`
	SaveSkipped   uint64  `json:"captures_skipped"`
	RecorderBytes int     `json:"recorder_bytes"`
	RecorderPkts  int     `json:"recorder_packets"`
	RecorderSpanS float64 `json:"recorder_span_s"`
	HeapInuse     uint64  `json:"heap_inuse_bytes"`
	MaxDelayS     float64 `json:"max_incident_delay_s"`
}

func statsJSON(st watch.Stats, typ string) statsObj {
	return statsObj{Type: typ, ElapsedS: st.Elapsed.Seconds(), Packets: st.Packets, Bytes: st.Bytes,
		KernelPackets: st.KernelPackets, Drops: st.Drops, LiveConns: st.LiveConns, Conns: st.Conns,
		Evicted: st.Evicted, Incidents: st.Incidents, KernelTracing: st.KernelTracing,
		KernelMatched: st.KernelMatched, KernelOnly: st.KernelOnly, KernelLost: st.KernelLost,
		Saved: st.Saved, SaveSkipped: st.SaveSkipped, RecorderBytes: st.RecorderBytes,
		RecorderPkts: st.RecorderPkts, RecorderSpanS: st.RecorderSpan.Seconds(), HeapInuse: st.HeapInuse,
		MaxDelayS: st.MaxDelay.Seconds()}
}

func statsLine(st watch.Stats) string {
	s := fmt.Sprintf("%s: %d packets, %d kernel drops; connections %d tracked, %d done",
		st.Elapsed.Round(time.Second), st.Packets, st.Drops, st.LiveConns, st.Conns)
	if st.Evicted > 0 {
		s += fmt.Sprintf(" (%d evicted: raise --max-conns)", st.Evicted)
	}
	s += fmt.Sprintf("; %d incidents", st.Incidents)
	if st.KernelTracing || st.KernelMatched > 0 {
		s += fmt.Sprintf("; kernel: %d reasons joined, %d uncaptured resets, %d events lost", st.KernelMatched, st.KernelOnly, st.KernelLost)
	}
	if st.Saved > 0 || st.SaveSkipped > 0 {
		s += fmt.Sprintf("; %d captures saved, %d skipped", st.Saved, st.SaveSkipped)
	}
	s += fmt.Sprintf("; recorder %.1f MiB / %.1fs; heap %.1f MiB",
		float64(st.RecorderBytes)/(1<<20), st.RecorderSpan.Seconds(), float64(st.HeapInuse)/(1<<20))
	if st.Drops > 0 {
		s += " (kernel drops: raise --buffer-mb, narrow --port/--host, or lower --snaplen)"
	}
	return s
}
