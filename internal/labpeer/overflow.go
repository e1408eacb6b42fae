package labpeer

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// SetAbortOnOverflow writes net.ipv4.tcp_abort_on_overflow (per network
// namespace) in the calling thread's network namespace: with 1 the kernel
// resets a connection whose handshake completes while the accept queue is
// full instead of dropping the segment. It returns the previous value so the
// caller can restore it. Needs root (CAP_NET_ADMIN in the namespace).
func SetAbortOnOverflow(on bool) (prev bool, err error) {
	// /proc/sys/net shows the namespace of the thread that opens the file
	// (unlike /proc/net, which follows the process's main thread).
	const path = "/proc/sys/net/ipv4/tcp_abort_on_overflow"
	old, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	v := "0\n"
	if on {
		v = "1\n"
	}
	if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
		return false, err
	}
	return strings.TrimSpace(string(old)) == "1", nil
}

// OverflowListener is a TCP listener that never accepts, so its accept queue
// fills up: the listen-overflow peer.
type OverflowListener struct {
	ln *net.TCPListener
}

// ListenOverflow listens on addr with the given backlog (Linux's accept
// queue then holds backlog+1 connections) and never accepts.
//
// It also sets TCP_DEFER_ACCEPT, which makes the overflow reproducible: a
// full accept queue drops new SYNs outright (no RST, whatever the sysctl),
// so the reset only happens when a handshake started before the queue
// filled completes after. On loopback the client's ACK follows the SYN-ACK
// at once; with TCP_DEFER_ACCEPT the server ignores that bare ACK and
// completes the handshake on the client's first data instead, so the order
// of "SYN", "queue fills", "handshake completes" is the client's to choose
// (ProvokeListenOverflow).
func ListenOverflow(addr string, backlog int) (*OverflowListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	tl := ln.(*net.TCPListener)
	rc, err := tl.SyscallConn()
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		// Go listens with somaxconn; listen(2) again only changes the backlog.
		if serr = unix.Listen(int(fd), backlog); serr != nil {
			serr = fmt.Errorf("listen backlog %d: %w", backlog, serr)
			return
		}
		if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 30); serr != nil {
			serr = fmt.Errorf("TCP_DEFER_ACCEPT: %w", serr)
		}
	}); err != nil {
		serr = err
	}
	if serr != nil {
		_ = ln.Close()
		return nil, serr
	}
	return &OverflowListener{ln: tl}, nil
}

// Addr is the listening address.
func (o *OverflowListener) Addr() net.Addr { return o.ln.Addr() }

// Close closes the listener; the kernel resets the connections still queued.
func (o *OverflowListener) Close() error {
	err := o.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// ListenQueueLen returns the accept-queue length of the TCP listener on addr
// (ip:port) in the calling thread's network namespace, read from
// /proc/net/tcp or tcp6 (rx_queue of a LISTEN line, ss's Recv-Q). It works
// across processes, e.g. against a lab-peer in the same namespace.
func ListenQueueLen(addr string) (int, error) {
	ap, err := netipAddrPort(addr)
	if err != nil {
		return 0, err
	}
	file, want := "/proc/thread-self/net/tcp", ""
	ip := ap.IP
	if ip4 := ip.To4(); ip4 != nil {
		want = fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(ip4), ap.Port)
	} else {
		file = "/proc/thread-self/net/tcp6"
		var b strings.Builder
		for i := 0; i < 16; i += 4 {
			fmt.Fprintf(&b, "%08X", binary.NativeEndian.Uint32(ip[i:i+4]))
		}
		want = fmt.Sprintf("%s:%04X", b.String(), ap.Port)
	}
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// sl local rem st tx:rx ...; state 0A is LISTEN.
		if len(fields) < 5 || fields[1] != want || fields[3] != "0A" {
			continue
		}
		_, rx, _ := strings.Cut(fields[4], ":")
		n, err := strconv.ParseUint(rx, 16, 32)
		return int(n), err
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no TCP listener on %s in %s", addr, file)
}

func netipAddrPort(addr string) (*net.TCPAddr, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host)
	p, perr := strconv.Atoi(port)
	if ip == nil || perr != nil {
		return nil, fmt.Errorf("want IP:port, got %q", addr)
	}
	return &net.TCPAddr{IP: ip, Port: p}, nil
}

// OverflowResult is what ProvokeListenOverflow observed.
type OverflowResult struct {
	Queued    []string // local addresses of the connections left in the accept queue
	LocalAddr string   // local address of the connection that completed on a full queue
	Err       error    // *Error from reading on that connection: KindReset with abort_on_overflow=1
}

// ProvokeListenOverflow makes one connection complete its handshake while the
// accept queue of a ListenOverflow listener (backlog as given to it) on addr
// is full, and reads on it. The order is deterministic: it keeps one
// half-open connection ahead (TCP_DEFER_ACCEPT holds it in SYN_RECV until
// its first data), fills the queue with backlog+1 connections by sending
// their requests, then sends the request of the last half-open one. With
// tcp_abort_on_overflow=1 that request draws an RST ("connection reset");
// with 0 it is dropped and the read times out after wait. The caller must
// run in the listener's network namespace. All connections are closed
// before it returns.
func ProvokeListenOverflow(ctx context.Context, addr string, backlog int, wait time.Duration) (*OverflowResult, error) {
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	var d net.Dialer
	dial := func() (net.Conn, error) {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			conns = append(conns, c)
		}
		return c, err
	}
	req := []byte("GET / HTTP/1.1\r\nHost: " + addr + "\r\n\r\n")
	pending, err := dial()
	if err != nil {
		return nil, err
	}
	res := &OverflowResult{}
	for filled := 0; filled < backlog+1; filled++ {
		next, err := dial() // SYN while the queue still has room
		if err != nil {
			return nil, err
		}
		if _, err := pending.Write(req); err != nil { // completes pending's handshake: queued
			return nil, err
		}
		res.Queued = append(res.Queued, pending.LocalAddr().String())
		if err := waitQueueLen(ctx, addr, filled+1); err != nil {
			return nil, err
		}
		pending = next
	}
	res.LocalAddr = pending.LocalAddr().String()
	if _, err := pending.Write(req); err != nil {
		res.Err = writeError(err)
		return res, nil
	}
	_ = pending.SetReadDeadline(time.Now().Add(wait))
	_, err = io.ReadFull(pending, make([]byte, 1))
	res.Err = readError(err, true, addr, addr, 0)
	return res, nil
}

// waitQueueLen polls until the accept queue of addr holds n connections.
func waitQueueLen(ctx context.Context, addr string, n int) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		got, err := ListenQueueLen(addr)
		if err != nil {
			return err
		}
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("accept queue of %s holds %d connections, want %d", addr, got, n)
		}
		time.Sleep(time.Millisecond)
	}
}
