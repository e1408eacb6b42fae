// Package livecap captures packets live from a Linux AF_PACKET socket with a
// TPACKET_V3 memory-mapped ring, and hands them to the pipeline as
// source.Frame values, like a capture file reader would.
//
// Filtering happens in the kernel with a classic BPF program from
// internal/bpfilter, attached before the socket is bound so no unfiltered
// packet ever reaches the ring. Packets leaving a loopback device are dropped
// by the same program, so each packet on lo is seen once (the kernel would
// otherwise deliver it twice: outgoing and incoming).
//
// The ring is a sequence of blocks the kernel fills with packets and hands to
// user space when a block is full or its retire timeout expires; reading a
// packet costs no system call, only a poll when the ring is empty. That is
// tens of times cheaper per packet than recvfrom.
package livecap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/rstscope/rstscope/internal/bpfilter"
	"github.com/rstscope/rstscope/internal/source"
)

// Defaults for zero Config fields.
const (
	DefaultSnapLen      = 262144
	DefaultBufferMB     = 8
	DefaultPollTimeout  = 200 * time.Millisecond
	DefaultBlockTimeout = 50 * time.Millisecond
)

// Config describes a live capture.
type Config struct {
	// Interface is the interface name. "any" (or "") captures on all
	// interfaces of the network namespace the socket is opened in; packets
	// then start at the network layer and are given a synthesized Linux
	// cooked v2 header (LINKTYPE_LINUX_SLL2) with the protocol, interface
	// index, hardware type, packet type and link-layer address the kernel
	// reports. Interfaces that are neither Ethernet nor loopback (tun,
	// WireGuard, ...) are captured the same way.
	Interface string
	// Filter selects the packets kept; the zero value keeps all TCP.
	Filter bpfilter.Options
	// SnapLen is the number of bytes kept per packet, counting the link
	// layer header (a VLAN tag the kernel removed and Next puts back adds
	// 4 bytes); default 262144.
	SnapLen int
	// BufferMB is the ring size in MiB, default 8. It is rounded up to whole
	// blocks (at least two).
	BufferMB int
	// PollTimeout bounds how long Next waits for a packet: when nothing
	// arrives in that time Next returns an error matching ErrTimeout, so a
	// caller can check for shutdown and call Next again. Default 200ms; a
	// negative value makes Next wait until a packet arrives or Close is
	// called (Close always wakes a blocked Next).
	PollTimeout time.Duration
	// BlockTimeout is how long the kernel keeps a partly filled ring block
	// before handing it over, i.e. the worst-case delivery latency at low
	// packet rates. Default 50ms (rounded to whole milliseconds).
	BlockTimeout time.Duration
}

// ErrTimeout is returned (wrapped) by Next when no packet arrived within
// Config.PollTimeout. It is not fatal: call Next again.
var ErrTimeout = errors.New("livecap: no packet within poll timeout")

// ErrNotPermitted is returned (wrapped) by Open when the process may not open
// a packet socket.
var ErrNotPermitted = errors.New("live capture needs CAP_NET_RAW (run as root or setcap cap_net_raw+ep)")

// Stats are capture counters since Open.
type Stats struct {
	// Packets counts packets that passed the filter, as the kernel counts
	// them (including Drops).
	Packets uint64
	// Drops counts packets that passed the filter but were lost because the
	// ring was full: the reader was too slow or the ring too small.
	Drops uint64
	// FreezeQueue counts how often the kernel found the ring full.
	FreezeQueue uint64
	// Delivered counts frames returned by Next.
	Delivered uint64
}

// Handle is an open live capture. Next must not be called from more than one
// goroutine at a time; Close and Stats may be called from any goroutine.
type Handle struct {
	fd, efd     int
	ring        []byte
	blockSize   int
	nblocks     int
	linkType    uint32
	cooked      bool // SOCK_DGRAM: synthesize an SLL2 header
	pollTimeout time.Duration

	// mu is held by Next for its whole duration, and by Close while it
	// tears the ring down, so the ring is never unmapped under a reader.
	mu      sync.Mutex
	closed  atomic.Bool
	blk     int    // current block
	inBlock bool   // user space owns blk
	left    uint32 // packets left in blk
	off     int    // ring offset of the next packet in blk
	buf     []byte // fallback when a header does not fit in front of a packet

	statsMu   sync.Mutex // guards the kernel counters and fd use by Stats
	kern      Stats
	delivered atomic.Uint64
}

// Linux constants not (all) exported by x/sys/unix under these names.
const (
	ethPAll         = 0x0003 // ETH_P_ALL
	arphrdEther     = 1
	arphrdLoopback  = 772
	pktTypeOutgoing = 4
	sll2HdrLen      = 20
	sockaddrLLOff   = 48 // TPACKET_ALIGN(sizeof(struct tpacket3_hdr))
	sockaddrLLEnd   = sockaddrLLOff + unix.SizeofSockaddrLinklayer
	blockStatusOff  = 8 // offsetof(struct tpacket_block_desc, hdr.bh1.block_status)
	blockNumPktsOff = 12
	blockFirstOff   = 16
)

// Open opens a capture as described by cfg. The socket belongs to the network
// namespace of the calling thread.
func Open(cfg Config) (*Handle, error) {
	if cfg.SnapLen <= 0 {
		cfg.SnapLen = DefaultSnapLen
	}
	if cfg.BufferMB <= 0 {
		cfg.BufferMB = DefaultBufferMB
	}
	if cfg.PollTimeout == 0 {
		cfg.PollTimeout = DefaultPollTimeout
	}
	if cfg.BlockTimeout <= 0 {
		cfg.BlockTimeout = DefaultBlockTimeout
	}
	iface := cfg.Interface
	if iface == "" {
		iface = "any"
	}

	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("livecap: %w (%w)", ErrNotPermitted, err)
		}
		return nil, fmt.Errorf("livecap: packet socket: %w", err)
	}
	// Protocol 0: the socket receives nothing until bind names a protocol,
	// so no packet can arrive before the filter and ring are in place.
	ifindex, cooked := 0, true
	if iface != "any" {
		ifindex, cooked, err = lookup(fd, iface)
		if err != nil {
			unix.Close(fd)
			return nil, err
		}
	}
	if cooked {
		unix.Close(fd)
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("livecap: packet socket: %w", err)
		}
	}
	h := &Handle{fd: fd, efd: -1, cooked: cooked, pollTimeout: cfg.PollTimeout, linkType: source.LinkEthernet}
	if cooked {
		h.linkType = source.LinkSLL2
	}
	if err := h.setup(cfg, ifindex); err != nil {
		if h.ring != nil {
			unix.Munmap(h.ring)
		}
		if h.efd >= 0 {
			unix.Close(h.efd)
		}
		unix.Close(fd)
		return nil, err
	}
	return h, nil
}

// lookup returns the index of the named interface and whether it must be
// captured at the network layer (it is neither Ethernet nor loopback).
func lookup(fd int, name string) (int, bool, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, false, fmt.Errorf("livecap: interface %q: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, false, fmt.Errorf("livecap: interface %q: %w", name, err)
	}
	index := int(ifr.Uint32())
	ifr, _ = unix.NewIfreq(name)
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, ifr); err != nil {
		return 0, false, fmt.Errorf("livecap: interface %q hardware type: %w", name, err)
	}
	hatype := ifr.Uint16() // sa_family of ifr_hwaddr
	return index, hatype != arphrdEther && hatype != arphrdLoopback, nil
}

// setup attaches the filter, creates and maps the ring, then binds.
func (h *Handle) setup(cfg Config, ifindex int) error {
	if err := unix.SetsockoptInt(h.fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fmt.Errorf("livecap: TPACKET_V3: %w", err)
	}
	// The filter sees the packet without the SLL2 header we add, so keep
	// that much less for the total to stay within SnapLen.
	snap := cfg.SnapLen
	if h.cooked {
		snap = max(1, snap-sll2HdrLen)
	}
	prog, err := bpfilter.Build(!h.cooked, cfg.Filter, uint32(snap))
	if err != nil {
		return fmt.Errorf("livecap: %w", err)
	}
	if prog, err = bpfilter.DropLoopbackOutgoing(prog); err != nil {
		return fmt.Errorf("livecap: %w", err)
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(h.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		if errors.Is(err, unix.ENOMEM) {
			return fmt.Errorf("livecap: attach filter of %d instructions: %w (too many ports/hosts for net.core.optmem_max?)", len(filter), err)
		}
		return fmt.Errorf("livecap: attach filter: %w", err)
	}

	// A block must hold the largest packet: snaplen plus the frame header,
	// sockaddr_ll, alignment and the block header, with room to spare.
	h.blockSize = 1 << 20
	for h.blockSize < cfg.SnapLen+512 {
		h.blockSize <<= 1
	}
	h.nblocks = max(2, (cfg.BufferMB<<20+h.blockSize-1)/h.blockSize)
	const frameSize = 2048 // unused by TPACKET_V3, but validated by the kernel
	req := unix.TpacketReq3{
		Block_size:     uint32(h.blockSize),
		Block_nr:       uint32(h.nblocks),
		Frame_size:     frameSize,
		Frame_nr:       uint32(h.blockSize / frameSize * h.nblocks),
		Retire_blk_tov: uint32(max(1, cfg.BlockTimeout.Milliseconds())),
	}
	if err := unix.SetsockoptTpacketReq3(h.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fmt.Errorf("livecap: ring of %d x %d bytes: %w", h.nblocks, h.blockSize, err)
	}
	h.ring, err = unix.Mmap(h.fd, 0, h.blockSize*h.nblocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		h.ring = nil
		return fmt.Errorf("livecap: mmap ring: %w", err)
	}
	h.efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		h.efd = -1
		return fmt.Errorf("livecap: eventfd: %w", err)
	}
	sa := unix.SockaddrLinklayer{Protocol: htons(ethPAll), Ifindex: ifindex}
	if err := unix.Bind(h.fd, &sa); err != nil {
		return fmt.Errorf("livecap: bind: %w", err)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// LinkType returns the LINKTYPE_* of the frames Next returns:
// source.LinkEthernet or source.LinkSLL2.
func (h *Handle) LinkType() uint32 { return h.linkType }

func (h *Handle) word(off int) *uint32 { return (*uint32)(unsafe.Pointer(&h.ring[off])) }

// Next fills f with the next captured frame. f.Data points into the ring and
// is valid until the next call to Next or Close. Next returns an error
// matching ErrTimeout when nothing arrived within the poll timeout, and one
// matching net.ErrClosed once Close has been called (including when Close
// interrupts a waiting Next).
func (h *Handle) Next(f *source.Frame) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var deadline time.Time
	for {
		if h.closed.Load() {
			return fmt.Errorf("livecap: %w", net.ErrClosed)
		}
		if h.left > 0 {
			if h.packet(f) {
				h.delivered.Add(1)
				return nil
			}
			continue
		}
		if h.inBlock {
			// Done with this block: give it back to the kernel.
			atomic.StoreUint32(h.word(h.blk*h.blockSize+blockStatusOff), unix.TP_STATUS_KERNEL)
			h.inBlock = false
			h.blk = (h.blk + 1) % h.nblocks
		}
		base := h.blk * h.blockSize
		if atomic.LoadUint32(h.word(base+blockStatusOff))&unix.TP_STATUS_USER != 0 {
			h.inBlock = true
			h.left = atomic.LoadUint32(h.word(base + blockNumPktsOff))
			h.off = base + int(atomic.LoadUint32(h.word(base+blockFirstOff)))
			continue
		}
		if err := h.wait(&deadline); err != nil {
			return err
		}
	}
}

// packet decodes the packet at h.off into f and advances. It reports false
// for a packet that must be skipped.
func (h *Handle) packet(f *source.Frame) bool {
	o := h.off
	hdr := (*unix.Tpacket3Hdr)(unsafe.Pointer(&h.ring[o]))
	h.left--
	h.off = o + int(hdr.Next_offset)
	mac := int(hdr.Mac)
	snap := int(hdr.Snaplen)
	data := h.ring[o+mac : o+mac+snap]
	origLen := int(hdr.Len)

	if h.cooked {
		sll := h.ring[o+sockaddrLLOff : o+sockaddrLLEnd]
		hatype := binary.NativeEndian.Uint16(sll[8:10])
		pkttype := sll[10]
		if pkttype == pktTypeOutgoing && hatype == arphrdLoopback {
			return false // the filter should have dropped it already
		}
		var out []byte
		if mac-sll2HdrLen >= sockaddrLLEnd {
			// Room in the ring between sockaddr_ll and the packet.
			out = h.ring[o+mac-sll2HdrLen : o+mac+snap]
		} else {
			h.buf = append(h.buf[:0], make([]byte, sll2HdrLen)...)
			h.buf = append(h.buf, data...)
			out = h.buf
		}
		copy(out[0:2], sll[2:4]) // protocol, already big endian
		out[2], out[3] = 0, 0
		binary.BigEndian.PutUint32(out[4:8], binary.NativeEndian.Uint32(sll[4:8]))
		binary.BigEndian.PutUint16(out[8:10], hatype)
		out[10] = pkttype
		out[11] = sll[11]
		copy(out[12:20], sll[12:20])
		data = out
		origLen += sll2HdrLen
	} else if hdr.Status&unix.TP_STATUS_VLAN_VALID != 0 && snap >= 12 {
		// The kernel took the VLAN tag out of the frame: put it back so the
		// frame is what was on the wire.
		tpid := uint16(0x8100)
		if hdr.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
			tpid = hdr.Hv1.Vlan_tpid
		}
		var out []byte
		if mac-4 >= sockaddrLLEnd {
			out = h.ring[o+mac-4 : o+mac+snap]
			copy(out[0:12], out[4:16])
		} else {
			h.buf = append(h.buf[:0], data[:12]...)
			h.buf = append(h.buf, 0, 0, 0, 0)
			h.buf = append(h.buf, data[12:]...)
			out = h.buf
		}
		binary.BigEndian.PutUint16(out[12:14], tpid)
		binary.BigEndian.PutUint16(out[14:16], uint16(hdr.Hv1.Vlan_tci))
		data = out
		origLen += 4
	}
	*f = source.Frame{
		Timestamp: int64(hdr.Sec)*1e9 + int64(hdr.Nsec),
		LinkType:  h.linkType,
		OrigLen:   origLen,
		Data:      data,
		Offset:    -1,
	}
	return true
}

// wait polls the socket and the close event until the ring may have a block
// for us. deadline is set on the first call of a Next.
func (h *Handle) wait(deadline *time.Time) error {
	ms := -1
	if h.pollTimeout > 0 {
		if deadline.IsZero() {
			*deadline = time.Now().Add(h.pollTimeout)
		}
		left := time.Until(*deadline)
		if left <= 0 {
			return fmt.Errorf("livecap: %w", ErrTimeout)
		}
		ms = int((left + time.Millisecond - 1) / time.Millisecond)
	}
	fds := []unix.PollFd{
		{Fd: int32(h.fd), Events: unix.POLLIN | unix.POLLERR},
		{Fd: int32(h.efd), Events: unix.POLLIN},
	}
	_, err := unix.Poll(fds, ms)
	if err != nil && err != unix.EINTR {
		return fmt.Errorf("livecap: poll: %w", err)
	}
	if h.closed.Load() {
		return fmt.Errorf("livecap: %w", net.ErrClosed)
	}
	if fds[0].Revents&unix.POLLERR != 0 {
		if e, _ := unix.GetsockoptInt(h.fd, unix.SOL_SOCKET, unix.SO_ERROR); e != 0 {
			return fmt.Errorf("livecap: socket: %w", unix.Errno(e))
		}
	}
	if fds[0].Revents&unix.POLLNVAL != 0 {
		return fmt.Errorf("livecap: poll: %w", unix.EBADF)
	}
	return nil
}

// Stats returns the counters since Open. The kernel resets its counters on
// each read, so they are accumulated here.
func (h *Handle) Stats() (Stats, error) {
	h.statsMu.Lock()
	defer h.statsMu.Unlock()
	if h.closed.Load() {
		return Stats{}, fmt.Errorf("livecap: %w", net.ErrClosed)
	}
	st, err := unix.GetsockoptTpacketStatsV3(h.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return Stats{}, fmt.Errorf("livecap: statistics: %w", err)
	}
	h.kern.Packets += uint64(st.Packets)
	h.kern.Drops += uint64(st.Drops)
	h.kern.FreezeQueue += uint64(st.Freeze_q_cnt)
	s := h.kern
	s.Delivered = h.delivered.Load()
	return s, nil
}

// Close stops the capture and releases the socket and ring. It may be called
// while another goroutine is blocked in Next: that Next returns an error
// matching net.ErrClosed, and the ring is unmapped only after it has
// returned. Calling Close again returns nil.
func (h *Handle) Close() error {
	if !h.closed.CompareAndSwap(false, true) {
		return nil
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(h.efd, one[:]) // wake a Next blocked in poll; never read back
	h.mu.Lock()
	defer h.mu.Unlock()
	h.statsMu.Lock()
	defer h.statsMu.Unlock()
	err := unix.Munmap(h.ring)
	h.ring = nil
	if e := unix.Close(h.fd); err == nil {
		err = e
	}
	unix.Close(h.efd)
	if err != nil {
		return fmt.Errorf("livecap: close: %w", err)
	}
	return nil
}

var _ source.Source = (*Handle)(nil)
