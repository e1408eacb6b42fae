// Package bpfilter builds classic BPF programs that keep only the TCP packets
// rstscope cares about, so that a live capture socket can drop everything else
// inside the kernel instead of copying it to user space first.
//
// The programs are deliberately simple: they understand Ethernet II frames
// (as seen on a SOCK_RAW packet socket, where the kernel has already removed
// any VLAN tag it offloaded) and bare IPv4/IPv6 packets (as seen on a
// SOCK_DGRAM packet socket, e.g. "-i any"). IPv6 packets are matched only when
// TCP is the first next header: packets carrying IPv6 extension headers (hop by
// hop, routing, fragment, ...) are rejected. Non-first IPv4 fragments are
// rejected because they carry no TCP header.
package bpfilter

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/net/bpf"
)

// Options select packets. The zero value selects all TCP over IPv4 and IPv6.
// When both Ports and Hosts are set a packet must match both.
type Options struct {
	// Ports, if not empty, keeps a packet when its TCP source or destination
	// port is one of them.
	Ports []uint16
	// Hosts, if not empty, keeps a packet when its IP source or destination
	// address is one of them. IPv4-mapped IPv6 addresses count as IPv4; zones
	// are ignored.
	Hosts []netip.Addr
}

// Limits on the number of ports and hosts. The kernel converts a classic
// program to eBPF and charges it against the socket's option memory
// (net.core.optmem_max, 128 KiB by default on recent kernels); the largest
// program these limits allow (all hosts IPv6) fits in that comfortably,
// though a much smaller optmem_max may still refuse it.
const (
	MaxPorts = 256
	MaxHosts = 32
)

// Offsets and values used by the generated code.
const (
	etherHdrLen   = 14
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	ipProtoTCP    = 6
	ipv6HdrLen    = 40
)

// Build returns a classic BPF program accepting the packets o selects, for
// packets as the kernel presents them on a packet socket. With linkLayer true
// the packet starts with an Ethernet II header (SOCK_RAW on an Ethernet-like
// interface, including lo whose Ethernet header is all zeroes); with
// linkLayer false it starts at the IP header (SOCK_DGRAM, as used for "any"),
// and the IP version is read from the first nibble.
//
// An accepted packet is kept up to snaplen bytes (the program's return
// value); a rejected one returns 0. A port matches either the source or the
// destination port, a host either the source or the destination address.
// Packets too short to hold the fixed 20-byte TCP header are rejected, as are
// IPv6 packets with extension headers and non-first IPv4 fragments.
func Build(linkLayer bool, o Options, snaplen uint32) ([]bpf.RawInstruction, error) {
	if snaplen == 0 {
		return nil, errors.New("bpfilter: snaplen must be positive")
	}
	if len(o.Ports) > MaxPorts {
		return nil, fmt.Errorf("bpfilter: %d ports given, at most %d supported", len(o.Ports), MaxPorts)
	}
	if len(o.Hosts) > MaxHosts {
		return nil, fmt.Errorf("bpfilter: %d hosts given, at most %d supported", len(o.Hosts), MaxHosts)
	}
	var v4 [][4]byte
	var v6 [][16]byte
	for _, h := range o.Hosts {
		if !h.IsValid() {
			return nil, errors.New("bpfilter: invalid host address")
		}
		h = h.Unmap().WithZone("")
		if h.Is4() {
			v4 = append(v4, h.As4())
		} else {
			v6 = append(v6, h.As16())
		}
	}
	hostFilter := len(o.Hosts) > 0

	var a asm
	l3 := uint32(0)
	if linkLayer {
		l3 = etherHdrLen
		a.emit(bpf.LoadAbsolute{Off: 12, Size: 2})
		a.emit(bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeIPv4, SkipTrue: 1})
		a.jump("ipv4")
		a.emit(bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeIPv6, SkipTrue: 1})
		a.jump("ipv6")
		a.emit(bpf.RetConstant{Val: 0})
	} else {
		a.emit(bpf.LoadAbsolute{Off: 0, Size: 1})
		a.emit(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
		a.emit(bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 4, SkipTrue: 1})
		a.jump("ipv4")
		a.emit(bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 6, SkipTrue: 1})
		a.jump("ipv6")
		a.emit(bpf.RetConstant{Val: 0})
	}

	// IPv4: protocol TCP, not a non-first fragment, hosts, then ports with
	// the TCP header found through the IHL field (X = 4*(ip[0]&0xf)).
	a.label("ipv4")
	a.emit(bpf.LoadAbsolute{Off: l3 + 9, Size: 1})
	a.emit(bpf.JumpIf{Cond: bpf.JumpEqual, Val: ipProtoTCP, SkipTrue: 1})
	a.emit(bpf.RetConstant{Val: 0})
	a.emit(bpf.LoadAbsolute{Off: l3 + 6, Size: 2})
	a.emit(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipFalse: 1})
	a.emit(bpf.RetConstant{Val: 0})
	if hostFilter {
		vals := make([]uint32, len(v4))
		for i, h := range v4 {
			vals[i] = be32(h[:])
		}
		for _, off := range []uint32{l3 + 12, l3 + 16} {
			if len(vals) > 0 {
				a.emit(bpf.LoadAbsolute{Off: off, Size: 4})
				a.anyEqual(vals, func() { a.jump("ports4") })
			}
		}
		a.emit(bpf.RetConstant{Val: 0})
	}
	a.label("ports4")
	a.emit(bpf.LoadMemShift{Off: l3})
	// Touch the last byte of the fixed TCP header: a packet too short to
	// hold it makes the load fail, which rejects the packet.
	a.emit(bpf.LoadIndirect{Off: l3 + 19, Size: 1})
	a.ports(o.Ports, l3, snaplen, true)

	// IPv6: the next header must be TCP itself (no extension headers).
	a.label("ipv6")
	a.emit(bpf.LoadAbsolute{Off: l3 + 6, Size: 1})
	a.emit(bpf.JumpIf{Cond: bpf.JumpEqual, Val: ipProtoTCP, SkipTrue: 1})
	a.emit(bpf.RetConstant{Val: 0})
	if hostFilter {
		for _, off := range []uint32{l3 + 8, l3 + 24} {
			for _, h := range v6 {
				// Compare the four words; any mismatch skips to the next
				// candidate, which starts right after this block's jump.
				for w := uint32(0); w < 4; w++ {
					a.emit(bpf.LoadAbsolute{Off: off + 4*w, Size: 4})
					a.emit(bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: be32(h[4*w:]), SkipTrue: uint8(2*(3-w) + 1)})
				}
				a.jump("ports6")
			}
		}
		a.emit(bpf.RetConstant{Val: 0})
	}
	a.label("ports6")
	a.emit(bpf.LoadAbsolute{Off: l3 + ipv6HdrLen + 19, Size: 1})
	a.ports(o.Ports, l3+ipv6HdrLen, snaplen, false)

	return a.assemble()
}

// ports emits the port test and the final verdicts. For IPv4 the TCP header
// offset is relative to X (loaded by the caller), for IPv6 it is fixed.
func (a *asm) ports(ports []uint16, base, snaplen uint32, indirect bool) {
	if len(ports) == 0 {
		a.emit(bpf.RetConstant{Val: snaplen})
		return
	}
	vals := make([]uint32, len(ports))
	for i, p := range ports {
		vals[i] = uint32(p)
	}
	for _, off := range []uint32{base, base + 2} {
		if indirect {
			a.emit(bpf.LoadIndirect{Off: off, Size: 2})
		} else {
			a.emit(bpf.LoadAbsolute{Off: off, Size: 2})
		}
		a.anyEqual(vals, func() { a.emit(bpf.RetConstant{Val: snaplen}) })
	}
	a.emit(bpf.RetConstant{Val: 0})
}

// anyEqual emits tests of A against each value; on a match control reaches
// the single instruction hub emits, otherwise it falls through past it. The
// values are tested in chunks, each followed by its own copy of the hub, so
// that every conditional jump stays within its 8-bit range.
func (a *asm) anyEqual(vals []uint32, hub func()) {
	const chunk = 200
	for len(vals) > 0 {
		n := min(chunk, len(vals))
		for i, v := range vals[:n] {
			// Skip the remaining tests and the "ja" that bypasses the hub.
			a.emit(bpf.JumpIf{Cond: bpf.JumpEqual, Val: v, SkipTrue: uint8(n - i)})
		}
		a.emit(bpf.Jump{Skip: 1})
		hub()
		vals = vals[n:]
	}
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// asm is a tiny assembler: conditional jumps only ever skip a bounded number
// of instructions (at most one anyEqual chunk), and every long-distance
// branch is an unconditional jump (32-bit offset) to a label, so the 8-bit
// conditional offsets never overflow however many ports or hosts are given.
type asm struct {
	ins    []bpf.Instruction
	labels map[string]int
	fixups map[int]string // instruction index -> target label of a Jump
}

func (a *asm) emit(i bpf.Instruction) { a.ins = append(a.ins, i) }

func (a *asm) jump(label string) {
	if a.fixups == nil {
		a.fixups = map[int]string{}
	}
	a.fixups[len(a.ins)] = label
	a.ins = append(a.ins, bpf.Jump{})
}

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.ins)
}

func (a *asm) assemble() ([]bpf.RawInstruction, error) {
	for at, name := range a.fixups {
		to, ok := a.labels[name]
		if !ok || to <= at {
			return nil, fmt.Errorf("bpfilter: internal error: bad jump to %q", name)
		}
		a.ins[at] = bpf.Jump{Skip: uint32(to - at - 1)}
	}
	if len(a.ins) > 4096 {
		return nil, fmt.Errorf("bpfilter: program has %d instructions, kernel limit is 4096", len(a.ins))
	}
	return bpf.Assemble(a.ins)
}
