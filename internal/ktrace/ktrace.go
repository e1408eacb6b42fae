// Package ktrace reads the Linux kernel's own account of TCP resets from the
// tcp:tcp_send_reset and tcp:tcp_receive_reset tracepoints. A reset the host
// sent carries the kernel's reason (enum sk_rst_reason, kernel 6.10+), which
// tells apart causes that look identical on the wire: nothing listening
// (NO_SOCKET), close() with unread data (TCP_ABORT_ON_CLOSE), SO_LINGER 0
// (TCP_STATE), data on a TIME_WAIT placeholder (TCP_TIMEWAIT_SOCKET), ...
// An RST seen in a capture with no matching send event was not made by this
// host's TCP stack (netfilter REJECT, a middlebox, an injector).
//
// The package works without cgo or eBPF: it creates its own tracefs instance,
// enables the two events there, and decodes the binary per-CPU ring buffers
// (trace_pipe_raw) with field layouts read from the format files at run time,
// because offsets and reason numbers change between kernel versions. The
// instance is removed on Close; instances left behind by a process that died
// are removed by the next Open. It needs root.
package ktrace

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Kind tells which tracepoint an Event came from.
type Kind uint8

const (
	Send    Kind = iota + 1 // tcp:tcp_send_reset: this host's TCP stack sent an RST
	Receive                 // tcp:tcp_receive_reset: a socket of this host accepted an RST
)

// String returns "send" or "receive".
func (k Kind) String() string {
	switch k {
	case Send:
		return "send"
	case Receive:
		return "receive"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Event is one reset the kernel reported.
type Event struct {
	Kind Kind
	// Time is when the kernel emitted the event, Unix nanoseconds (wall
	// clock), converted from the trace clock so it can be joined with packet
	// timestamps. The conversion is redone for every batch of events, so it
	// follows clock steps; its error is a few microseconds.
	Time int64
	// Src and Dst are the addresses in the event. For Send, Src is the RST's
	// sender (this host) and Dst its destination. For Receive, Src is the
	// local socket that received the RST and Dst is the peer that sent it.
	// IPv4-mapped IPv6 addresses are unmapped.
	Src, Dst netip.AddrPort
	// State is the socket's TCP state for Send, e.g. "TCP_ESTABLISHED", or
	// "TCP_CLOSE" for resets sent while closing (abort on close, SO_LINGER 0).
	// It is "" when no full socket exists (NO_SOCKET replies; the format
	// prints "UNKNOWN" there) and always "" for Receive.
	State string
	// Reason is the sk_rst_reason name without its prefix, e.g. "NO_SOCKET",
	// "TCP_TIMEWAIT_SOCKET", or the number if the format file has no name for
	// it. "" for Receive events, which have no reason. Kernels 6.10 and 6.11
	// say NOT_SPECIFIED for resets the host starts itself.
	Reason string
	// Cookie is the socket's cookie (SO_COOKIE) for Receive, 0 otherwise.
	Cookie uint64
	// PID and Comm describe the task that was current when the event fired.
	// Resets answering incoming segments are sent from softirq context, where
	// this is whichever task happened to run (often 0, the idle task, with
	// Comm ""). Comm is looked up in /proc when the event is decoded, so it is
	// "" if the task has exited.
	PID  int
	Comm string
}

// tracefsDirs are where tracefs may be mounted, in order of preference.
var tracefsDirs = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// tracefs returns the tracefs mount point.
func tracefs() (string, error) {
	for _, dir := range tracefsDirs {
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) == nil && st.Type == unix.TRACEFS_MAGIC {
			return dir, nil
		}
	}
	return "", errors.New("ktrace: tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)")
}

const (
	sendFormat = "events/tcp/tcp_send_reset/format"
	recvFormat = "events/tcp/tcp_receive_reset/format"
)

// readFormat parses the format file at root/rel.
func readFormat(root, rel string) (*eventFormat, error) {
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		return nil, err
	}
	return parseFormat(string(b))
}

// Available returns nil if Open can work here, or an error saying why not:
// not root, tracefs not mounted, the tracepoints missing, a kernel older than
// 6.10 whose tcp_send_reset has no reason field, or no usable trace clock.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("ktrace: needs root (creating a tracefs instance)")
	}
	root, err := tracefs()
	if err != nil {
		return err
	}
	send, err := readFormat(root, sendFormat)
	if err != nil {
		return fmt.Errorf("ktrace: no tcp:tcp_send_reset tracepoint: %w", err)
	}
	if _, ok := send.fields["reason"]; !ok {
		return fmt.Errorf("ktrace: tcp_send_reset has no reason field on kernel %s (needs 6.10 or later)", kernelRelease())
	}
	if _, err := readFormat(root, recvFormat); err != nil {
		return fmt.Errorf("ktrace: no tcp:tcp_receive_reset tracepoint: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(root, "trace_clock"))
	if err != nil {
		return fmt.Errorf("ktrace: %w", err)
	}
	if _, _, err := pickClock(string(b)); err != nil {
		return err
	}
	return nil
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// ReasonNames returns the kernel's sk_rst_reason numbers and names, read from
// the tcp_send_reset format file. The numbering changes between kernel
// versions, so it must never be hard-coded.
func ReasonNames() (map[int]string, error) {
	root, err := tracefs()
	if err != nil {
		return nil, err
	}
	f, err := readFormat(root, sendFormat)
	if err != nil {
		return nil, fmt.Errorf("ktrace: %w", err)
	}
	m, err := parseSymbolic(f.printFmt, "reason")
	if err != nil {
		return nil, fmt.Errorf("ktrace: %w", err)
	}
	out := make(map[int]string, len(m))
	for k, v := range m {
		out[int(k)] = v
	}
	return out, nil
}

// pickClock chooses a trace clock that maps onto a clock_gettime clock, so
// event times can be converted to wall-clock time: "mono" (CLOCK_MONOTONIC)
// or else "boot" (CLOCK_BOOTTIME). The default "local" clock has no
// user-space counterpart.
func pickClock(available string) (string, int32, error) {
	have := strings.Fields(strings.NewReplacer("[", "", "]", "").Replace(available))
	switch {
	case slices.Contains(have, "mono"):
		return "mono", unix.CLOCK_MONOTONIC, nil
	case slices.Contains(have, "boot"):
		return "boot", unix.CLOCK_BOOTTIME, nil
	}
	return "", 0, fmt.Errorf("ktrace: trace clock has neither mono nor boot (have %q)", strings.TrimSpace(available))
}

// wallOffset returns CLOCK_REALTIME minus the given clock, in nanoseconds,
// from the tightest of a few bracketing readings.
func wallOffset(clock int32) int64 {
	best, off := int64(1<<62), int64(0)
	for range 3 {
		var a, w, b unix.Timespec
		if unix.ClockGettime(clock, &a) != nil || unix.ClockGettime(unix.CLOCK_REALTIME, &w) != nil ||
			unix.ClockGettime(clock, &b) != nil {
			continue
		}
		if d := b.Nano() - a.Nano(); d < best {
			best, off = d, w.Nano()-(a.Nano()+d/2)
		}
	}
	return off
}

// instanceSeq numbers this process's instances.
var instanceSeq atomic.Uint64

const instancePrefix = "rstscope-"

// Tracer reads reset events from its own tracefs instance.
type Tracer struct {
	dir     string // the instance directory
	fds     []int  // per-CPU trace_pipe_raw, non-blocking
	wake    [2]int // pipe: Close writes to wake[1] to interrupt poll
	subbuf  int    // sub-buffer (page) size: the unit of trace_pipe_raw reads
	layout  pageLayout
	dec     *decoder
	clock   int32
	events  chan Event
	done    chan struct{} // closed when shutting down
	exited  chan struct{} // closed when the reader goroutine has returned
	stopCtx func() bool
	lost    atomic.Uint64
	readErr error // why reading stopped early; written by run before exited is closed

	once     sync.Once
	closeErr error
}

// Open creates a tracefs instance named "rstscope-<pid>-<n>", sets its trace
// clock, enables the two reset events in it, and starts reading. Instances
// named rstscope-* whose process no longer exists are removed first. The
// tracer stops and cleans up when ctx is done or Close is called.
func Open(ctx context.Context) (*Tracer, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	root, err := tracefs()
	if err != nil {
		return nil, err
	}
	removeStale(root)
	name := fmt.Sprintf("%s%d-%d", instancePrefix, os.Getpid(), instanceSeq.Add(1)-1)
	t := &Tracer{
		dir:    filepath.Join(root, "instances", name),
		wake:   [2]int{-1, -1},
		events: make(chan Event, 1024),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	if err := os.Mkdir(t.dir, 0o750); err != nil {
		return nil, fmt.Errorf("ktrace: create instance: %w", err)
	}
	if err := t.setup(root); err != nil {
		if cerr := t.teardown(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	go t.run()
	t.stopCtx = context.AfterFunc(ctx, func() { t.shutdown() })
	return t, nil
}

// setup configures the freshly made instance and opens its readers. On error
// the caller runs teardown.
func (t *Tracer) setup(root string) error {
	b, err := os.ReadFile(filepath.Join(t.dir, "trace_clock"))
	if err != nil {
		return fmt.Errorf("ktrace: %w", err)
	}
	clockName, clock, err := pickClock(string(b))
	if err != nil {
		return err
	}
	t.clock = clock
	// Setting the clock resets the buffer, so it comes before anything is recorded.
	if err := writeFile(filepath.Join(t.dir, "trace_clock"), clockName); err != nil {
		return err
	}
	// Wake a poll as soon as there is one event, not when the buffer is half full.
	if err := writeFile(filepath.Join(t.dir, "buffer_percent"), "0"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	hdr, err := readFormat(root, "events/header_page")
	if err != nil {
		return fmt.Errorf("ktrace: header_page: %w", err)
	}
	if t.layout, err = layoutFromHeader(hdr); err != nil {
		return fmt.Errorf("ktrace: %w", err)
	}
	t.subbuf = os.Getpagesize()
	if b, err := os.ReadFile(filepath.Join(t.dir, "buffer_subbuf_size_kb")); err == nil {
		if kb, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && kb > 0 {
			t.subbuf = kb * 1024
		}
	}
	send, err := readFormat(t.dir, sendFormat)
	if err != nil {
		return fmt.Errorf("ktrace: %w", err)
	}
	recv, err := readFormat(t.dir, recvFormat)
	if err != nil {
		return fmt.Errorf("ktrace: %w", err)
	}
	if t.dec, err = newDecoder(send, recv); err != nil {
		return fmt.Errorf("ktrace: %w", err)
	}
	cpus, _ := filepath.Glob(filepath.Join(t.dir, "per_cpu", "cpu*", "trace_pipe_raw"))
	for _, p := range cpus {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // an offline CPU
		}
		t.fds = append(t.fds, fd)
	}
	if len(t.fds) == 0 {
		return fmt.Errorf("ktrace: no readable per_cpu/*/trace_pipe_raw in %s", t.dir)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("ktrace: pipe: %w", err)
	}
	t.wake = p
	for _, ev := range []string{"tcp_send_reset", "tcp_receive_reset"} {
		if err := writeFile(filepath.Join(t.dir, "events", "tcp", ev, "enable"), "1"); err != nil {
			return err
		}
	}
	return nil
}

// writeFile writes s to a tracefs control file without truncating it
// (truncating some tracefs files clears the buffer).
func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("ktrace: %w", err)
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("ktrace: write %s: %w", path, err)
	}
	return nil
}

// Events returns the decoded events, in time order within each batch read.
// The channel is closed after Close or when the context passed to Open is
// done. Read it promptly: while it is full the kernel's ring buffer fills,
// and then the oldest events are overwritten (see Lost).
func (t *Tracer) Events() <-chan Event { return t.events }

// Lost returns how many events the kernel reports it overwrote before they
// were read.
func (t *Tracer) Lost() uint64 { return t.lost.Load() }

// Err returns why reading stopped before Close, if it did (for example the
// instance was removed by someone else); nil otherwise. Valid after the
// Events channel is closed.
func (t *Tracer) Err() error {
	select {
	case <-t.exited:
		return t.readErr
	default:
		return nil
	}
}

// Close stops reading, disables the events and removes the instance. It is
// idempotent and safe to call after the context is done.
func (t *Tracer) Close() error {
	if t.stopCtx != nil {
		t.stopCtx()
	}
	return t.shutdown()
}

// shutdown stops the reader goroutine and removes the instance, once.
func (t *Tracer) shutdown() error {
	t.once.Do(func() {
		close(t.done)
		unix.Write(t.wake[1], []byte{0})
		<-t.exited
		t.closeErr = t.teardown()
	})
	return t.closeErr
}

// teardown closes the readers, disables the events and removes the instance
// directory, which fails with EBUSY while any reader is open.
func (t *Tracer) teardown() error {
	for _, fd := range t.fds {
		unix.Close(fd)
	}
	t.fds = nil
	for _, fd := range t.wake {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	t.wake = [2]int{-1, -1}
	for _, ev := range []string{"tcp_send_reset", "tcp_receive_reset"} {
		writeFile(filepath.Join(t.dir, "events", "tcp", ev, "enable"), "0") // best effort: rmdir disables them anyway
	}
	return removeInstance(t.dir)
}

// removeInstance removes a tracefs instance, retrying briefly on EBUSY in case
// a reader's file is still being released.
func removeInstance(dir string) error {
	deadline := time.Now().Add(time.Second)
	for {
		err := unix.Rmdir(dir)
		switch {
		case err == nil || err == unix.ENOENT:
			return nil
		case err == unix.EBUSY && time.Now().Before(deadline):
			time.Sleep(10 * time.Millisecond)
		default:
			return fmt.Errorf("ktrace: remove instance %s: %w", dir, err)
		}
	}
}

// removeStale removes instances named rstscope-<pid>-<n> whose process no
// longer exists (it was killed before it could Close). A live process's
// instances are left alone. Pids are as this process sees them: a tracer
// running in another pid namespace on the same tracefs could be mistaken for a
// dead one. Errors are ignored: this is housekeeping.
func removeStale(root string) {
	ents, err := os.ReadDir(filepath.Join(root, "instances"))
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), instancePrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if unix.Kill(pid, 0) == unix.ESRCH {
			removeInstance(filepath.Join(root, "instances", e.Name()))
		}
	}
}

// run reads all CPUs' buffers whenever poll says there is something (or every
// pollTimeout in case a wake-up is missed), sorts each batch by time and sends
// it. It closes the Events channel when it returns.
func (t *Tracer) run() {
	defer close(t.exited)
	defer close(t.events)
	const pollTimeout = 500 // ms
	buf := make([]byte, t.subbuf)
	pfds := make([]unix.PollFd, 0, len(t.fds)+1)
	for _, fd := range t.fds {
		pfds = append(pfds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	pfds = append(pfds, unix.PollFd{Fd: int32(t.wake[0]), Events: unix.POLLIN})
	var batch []Event
	lastReset := time.Now()
	for {
		off := wallOffset(t.clock)
		batch = batch[:0]
		live := 0
		for i := range t.fds {
			if pfds[i].Fd < 0 {
				continue
			}
			if err := t.drain(t.fds[i], buf, off, &batch); err != nil {
				pfds[i].Fd = -1 // poll ignores negative fds
				t.readErr = err
				continue
			}
			live++
		}
		slices.SortStableFunc(batch, func(a, b Event) int { return cmp.Compare(a.Time, b.Time) })
		for _, ev := range batch {
			select {
			case t.events <- ev:
			case <-t.done:
				return
			}
		}
		if live == 0 {
			return
		}
		if time.Since(lastReset) > time.Second {
			t.dec.resetComms()
			lastReset = time.Now()
		}
		for i := range pfds {
			pfds[i].Revents = 0
		}
		if _, err := unix.Poll(pfds, pollTimeout); err != nil && err != unix.EINTR {
			t.readErr = fmt.Errorf("ktrace: poll: %w", err)
			return
		}
		select {
		case <-t.done:
			return
		default:
		}
	}
}

// drain reads every available page of one CPU's buffer into batch.
func (t *Tracer) drain(fd int, buf []byte, wallOff int64, batch *[]Event) error {
	emit := func(ts uint64, rec []byte) {
		if ev, ok := t.dec.decode(rec); ok {
			ev.Time = int64(ts) + wallOff
			*batch = append(*batch, ev)
		}
	}
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return nil
		case err != nil:
			return fmt.Errorf("ktrace: read trace_pipe_raw: %w", err)
		case n <= 0:
			return nil
		}
		t.lost.Add(walkPage(buf[:n], t.layout, emit))
	}
}
