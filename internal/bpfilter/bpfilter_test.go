package bpfilter

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// pkt describes a hand-made packet; the test builds its bytes and also
// decides, from the same description, whether the filter should keep it.
type pkt struct {
	src, dst     netip.Addr
	proto        byte // 6 TCP, 17 UDP
	sport, dport uint16
	ipOptions    bool // IPv4: 4 bytes of options (IHL 6)
	fragment     bool // IPv4: non-first fragment
	extHeader    bool // IPv6: hop-by-hop header before the transport
}

func (p pkt) String() string {
	return fmt.Sprintf("%v:%d>%v:%d proto %d opt=%v frag=%v ext=%v", p.src, p.sport, p.dst, p.dport, p.proto, p.ipOptions, p.fragment, p.extHeader)
}

// network returns the packet from the IP header on, with a 20-byte
// transport header (ports first, as in TCP and UDP) and 10 bytes of payload.
func (p pkt) network() []byte {
	l4 := make([]byte, 30)
	binary.BigEndian.PutUint16(l4[0:], p.sport)
	binary.BigEndian.PutUint16(l4[2:], p.dport)
	l4[12] = 5 << 4
	if p.src.Is4() {
		hl := 20
		if p.ipOptions {
			hl = 24
		}
		ip := make([]byte, hl, hl+len(l4))
		ip[0] = 0x40 | byte(hl/4)
		binary.BigEndian.PutUint16(ip[2:], uint16(hl+len(l4)))
		if p.fragment {
			binary.BigEndian.PutUint16(ip[6:], 185) // offset 1480 bytes
		}
		ip[8] = 64
		ip[9] = p.proto
		s, d := p.src.As4(), p.dst.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		return append(ip, l4...)
	}
	ip := make([]byte, 40, 48+len(l4))
	ip[0] = 0x60
	ip[6] = p.proto
	if p.extHeader {
		ip[6] = 0 // hop-by-hop options
		ip = append(ip, p.proto, 0, 1, 4, 0, 0, 0, 0)
	}
	binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-40+len(l4)))
	ip[7] = 64
	s, d := p.src.As16(), p.dst.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	return append(ip, l4...)
}

// ethernet wraps the packet in an Ethernet II header.
func (p pkt) ethernet() []byte {
	eth := make([]byte, 14)
	copy(eth[0:6], []byte{2, 0, 0, 0, 0, 1})
	copy(eth[6:12], []byte{2, 0, 0, 0, 0, 2})
	et := uint16(0x0800)
	if p.src.Is6() {
		et = 0x86dd
	}
	binary.BigEndian.PutUint16(eth[12:], et)
	return append(eth, p.network()...)
}

// want is the reference model of Options.
func want(o Options, p pkt) bool {
	if p.proto != 6 || p.fragment || p.extHeader {
		return false
	}
	if len(o.Hosts) > 0 && !slices.ContainsFunc(o.Hosts, func(h netip.Addr) bool {
		h = h.Unmap()
		return h == p.src || h == p.dst
	}) {
		return false
	}
	if len(o.Ports) > 0 && !slices.Contains(o.Ports, p.sport) && !slices.Contains(o.Ports, p.dport) {
		return false
	}
	return true
}

var (
	a4, b4 = netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("192.0.2.7")
	a6, b6 = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2:1")
	// c6 differs from a6 only in its last word, d6 only in its first.
	c6, d6 = netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db9::1")
)

// packets returns a spread of TCP/UDP packets over both IP versions.
func packets() []pkt {
	var out []pkt
	pairs := [][2]netip.Addr{{a4, b4}, {b4, a4}, {b4, b4}, {a6, b6}, {b6, a6}, {c6, d6}, {b6, b6}}
	ports := [][2]uint16{{80, 40000}, {40000, 80}, {443, 8080}, {40000, 40001}}
	for _, ad := range pairs {
		for _, pp := range ports {
			for _, proto := range []byte{6, 17} {
				p := pkt{src: ad[0], dst: ad[1], proto: proto, sport: pp[0], dport: pp[1]}
				out = append(out, p)
				if p.src.Is4() {
					q := p
					q.ipOptions = true
					out = append(out, q)
					q = p
					q.fragment = true
					out = append(out, q)
				} else {
					q := p
					q.extHeader = true
					out = append(out, q)
				}
			}
		}
	}
	return out
}

func optionSets() []Options {
	many := make([]uint16, 0, MaxPorts)
	for i := range MaxPorts - 1 {
		many = append(many, uint16(1000+i))
	}
	many = append(many, 8080) // last: exercises the longest jumps
	var manyHosts []netip.Addr
	for i := range MaxHosts - 2 {
		manyHosts = append(manyHosts, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	}
	manyHosts = append(manyHosts, c6, b4)
	// The largest program: every host IPv6 (four loads each).
	var many6 []netip.Addr
	for i := range MaxHosts - 1 {
		many6 = append(many6, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i + 100)}))
	}
	many6 = append(many6, a6)
	return []Options{
		{},
		{Ports: []uint16{80}},
		{Ports: []uint16{443, 80}},
		{Ports: []uint16{8080}},
		{Hosts: []netip.Addr{a4}},
		{Hosts: []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.1")}},
		{Hosts: []netip.Addr{a6}},
		{Hosts: []netip.Addr{c6}},
		{Hosts: []netip.Addr{d6, a4}},
		{Hosts: []netip.Addr{b4, a6}, Ports: []uint16{80}},
		{Ports: many},
		{Ports: many, Hosts: manyHosts},
		{Ports: many, Hosts: many6},
	}
}

// TestBuildMatch runs every program in the pure-Go VM over hand-made
// Ethernet and network-layer packets and compares with the reference model.
func TestBuildMatch(t *testing.T) {
	const snap = 64
	for _, o := range optionSets() {
		for _, link := range []bool{true, false} {
			prog, err := Build(link, o, snap)
			if err != nil {
				t.Fatalf("Build(%v, %v): %v", link, o, err)
			}
			m, err := NewMatcher(prog)
			if err != nil {
				t.Fatal(err)
			}
			kept := 0
			for _, p := range packets() {
				data := p.network()
				if link {
					data = p.ethernet()
				}
				got := m.Match(data)
				wantN := 0
				if want(o, p) {
					wantN = min(snap, len(data))
					kept++
				}
				if got != wantN {
					t.Errorf("link=%v ports=%d hosts=%v: %v kept %d bytes, want %d", link, len(o.Ports), o.Hosts, p, got, wantN)
				}
			}
			if kept == 0 {
				t.Errorf("options %v keep none of the test packets: test is not exercising them", o)
			}
		}
	}
}

// TestBuildRejectsOther checks non-IP, truncated and wrong-layer input.
func TestBuildRejectsOther(t *testing.T) {
	eth, err := Build(true, Options{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := Build(false, Options{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	tcp4 := pkt{src: a4, dst: b4, proto: 6, sport: 1, dport: 2}
	arp := make([]byte, 42)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	cases := []struct {
		name string
		prog []bpf.RawInstruction
		data []byte
	}{
		{"arp", eth, arp},
		{"arp body at network layer", raw, arp[14:]},
		{"truncated ethernet", eth, tcp4.ethernet()[:30]},
		{"truncated IPv4", raw, tcp4.network()[:22]},
		{"ethernet frame given to network-layer program", raw, tcp4.ethernet()},
		{"network-layer packet given to ethernet program", eth, tcp4.network()},
		{"empty", raw, nil},
	}
	for _, c := range cases {
		if n, err := Match(c.prog, c.data); err != nil || n != 0 {
			t.Errorf("%s: Match = %d, %v; want rejected", c.name, n, err)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	if _, err := Build(true, Options{Ports: make([]uint16, MaxPorts+1)}, 100); err == nil {
		t.Error("too many ports accepted")
	}
	if _, err := Build(true, Options{Hosts: make([]netip.Addr, MaxHosts+1)}, 100); err == nil {
		t.Error("too many hosts accepted")
	}
	if _, err := Build(true, Options{Hosts: []netip.Addr{{}}}, 100); err == nil {
		t.Error("invalid host accepted")
	}
	if _, err := Build(true, Options{}, 0); err == nil {
		t.Error("snaplen 0 accepted")
	}
}

// TestKernelAcceptsPrograms attaches the largest programs, with the
// loopback guard, to an ordinary UDP socket: the kernel's classic BPF checker
// validates them. No packet is sent, and no privilege is needed.
func TestKernelAcceptsPrograms(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("cannot create a UDP socket: %v", err)
	}
	defer unix.Close(fd)
	for _, o := range optionSets() {
		for _, link := range []bool{true, false} {
			prog, err := Build(link, o, 262144)
			if err != nil {
				t.Fatal(err)
			}
			if prog, err = DropLoopbackOutgoing(prog); err != nil {
				t.Fatal(err)
			}
			f := make([]unix.SockFilter, len(prog))
			for i, ins := range prog {
				f[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
			}
			fp := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
			if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fp); err != nil {
				t.Errorf("kernel rejects program (%d instructions) for %v: %v", len(prog), o, err)
			}
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	prog, err := Build(true, Options{Ports: []uint16{443, 80}}, 262144)
	if err != nil {
		b.Fatal(err)
	}
	m, err := NewMatcher(prog)
	if err != nil {
		b.Fatal(err)
	}
	data := pkt{src: a6, dst: b6, proto: 6, sport: 40000, dport: 80}.ethernet()
	for b.Loop() {
		if m.Match(data) == 0 {
			b.Fatal("rejected")
		}
	}
}
