package probe

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// stateListen is TCP_LISTEN in the st column of /proc/net/tcp.
const stateListen = 0x0A

// Socket is one row of /proc/net/tcp or /proc/net/tcp6.
type Socket struct {
	Local  netip.AddrPort // local address; IPv4-mapped IPv6 addresses are unmapped
	Remote netip.AddrPort // remote address (unspecified for listeners)
	State  uint8          // kernel TCP state; 0x0A is LISTEN
	// Queue is, for a listener, the number of connections that finished the
	// handshake and wait in the accept queue (sk_ack_backlog); for other
	// sockets the unread bytes in the receive queue.
	Queue uint64
	UID   uint32
	Inode uint64 // socket inode, the key to /proc/PID/fd/N -> socket:[inode]
	IPv6  bool   // row came from tcp6 (an IPv6 socket, possibly dual-stack)
}

// Process is a process holding a socket open.
type Process struct {
	PID  int    `json:"pid"`
	Name string `json:"name"` // /proc/PID/comm; untrusted (any process can set it)
}

// Listener is a listening socket and the processes that own it.
type Listener struct {
	Socket
	Procs []Process // empty when /proc/PID/fd was not readable (another user's process, not root)
}

// ParseNetTCP parses the text of /proc/net/tcp (v6 false) or /proc/net/tcp6
// (v6 true). Rows that do not parse are skipped, not fatal: the format has
// gained columns over the years and a diagnostic tool should not give up on
// one odd line.
func ParseNetTCP(r io.Reader, v6 bool) ([]Socket, error) {
	var out []Socket
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	first := true
	for sc.Scan() {
		if first { // header line
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		local, err1 := parseHexAddrPort(f[1])
		remote, err2 := parseHexAddrPort(f[2])
		st, err3 := strconv.ParseUint(f[3], 16, 8)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		var queue uint64
		if tx, rx, ok := strings.Cut(f[4], ":"); ok {
			_ = tx
			queue, _ = strconv.ParseUint(rx, 16, 64)
		}
		uid, _ := strconv.ParseUint(f[7], 10, 32)
		inode, _ := strconv.ParseUint(f[9], 10, 64)
		out = append(out, Socket{Local: local, Remote: remote, State: uint8(st), Queue: queue,
			UID: uint32(uid), Inode: inode, IPv6: v6})
	}
	return out, sc.Err()
}

// parseHexAddrPort decodes "0100007F:1F90" or the 32-digit IPv6 form. The
// kernel prints each 32-bit word of the address in host byte order, hence
// NativeEndian.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("no port in %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	raw, err := hex.DecodeString(h)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", h)
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
}

// ReadListeners reads the listening TCP sockets of this network namespace
// from procRoot (normally "/proc") and names their owners the way `ss -lntp`
// does: by matching socket inodes against the links in /proc/PID/fd.
func ReadListeners(procRoot string) ([]Listener, error) {
	var ls []Listener
	var firstErr error
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join(procRoot, "net", name))
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		socks, err := ParseNetTCP(f, name == "tcp6")
		f.Close()
		if err != nil && firstErr == nil {
			firstErr = err
		}
		for _, s := range socks {
			if s.State == stateListen {
				ls = append(ls, Listener{Socket: s})
			}
		}
	}
	if len(ls) == 0 && firstErr != nil {
		return nil, firstErr
	}
	owners := socketOwners(procRoot, ls)
	for i := range ls {
		ls[i].Procs = owners[ls[i].Inode]
	}
	sort.Slice(ls, func(i, j int) bool {
		if ls[i].Local.Port() != ls[j].Local.Port() {
			return ls[i].Local.Port() < ls[j].Local.Port()
		}
		return ls[i].Local.Addr().Less(ls[j].Local.Addr())
	})
	return ls, nil
}

// socketOwners maps the inodes of ls to the processes that hold them. It
// walks /proc/[0-9]*/fd once; unreadable directories (other users' processes
// when not root, processes that just exited) are skipped.
func socketOwners(procRoot string, ls []Listener) map[uint64][]Process {
	want := make(map[uint64]bool, len(ls))
	for _, l := range ls {
		if l.Inode != 0 {
			want[l.Inode] = true
		}
	}
	out := map[uint64][]Process{}
	if len(want) == 0 {
		return out
	}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		fdDir := filepath.Join(procRoot, e.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		var name string
		seen := map[uint64]bool{}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") || !strings.HasSuffix(link, "]") {
				continue
			}
			ino, err := strconv.ParseUint(link[len("socket:["):len(link)-1], 10, 64)
			if err != nil || !want[ino] || seen[ino] {
				continue
			}
			seen[ino] = true
			if name == "" {
				b, _ := os.ReadFile(filepath.Join(procRoot, e.Name(), "comm"))
				name = strings.TrimSpace(string(b))
			}
			out[ino] = append(out[ino], Process{PID: pid, Name: name})
		}
	}
	return out
}
