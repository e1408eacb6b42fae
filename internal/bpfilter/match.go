package bpfilter

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// Matcher runs a classic BPF program in user space with the pure-Go VM of
// golang.org/x/net/bpf. Tests use it to check programs without a kernel, and
// a packet source that cannot filter in the kernel (a capture file) can use
// it to apply the same selection.
type Matcher struct {
	vm *bpf.VM
}

// NewMatcher prepares prog for repeated use. Programs that use Linux
// ancillary loads (see DropLoopbackOutgoing) cannot run in the VM.
func NewMatcher(prog []bpf.RawInstruction) (*Matcher, error) {
	ins, ok := bpf.Disassemble(prog)
	if !ok {
		return nil, fmt.Errorf("bpfilter: program contains instructions the VM cannot decode")
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		return nil, fmt.Errorf("bpfilter: %w", err)
	}
	return &Matcher{vm: vm}, nil
}

// Match reports how many bytes of packet the program keeps: 0 means the
// packet is rejected; otherwise the result is the snap length, capped at
// len(packet).
func (m *Matcher) Match(packet []byte) int {
	n, err := m.vm.Run(packet)
	if err != nil || n <= 0 {
		return 0
	}
	return min(n, len(packet))
}

// Match is a one-shot convenience: it builds a Matcher for prog and runs it
// on packet. Use NewMatcher for more than one packet.
func Match(prog []bpf.RawInstruction, packet []byte) (int, error) {
	m, err := NewMatcher(prog)
	if err != nil {
		return 0, err
	}
	return m.Match(packet), nil
}

// Values of the Linux ancillary loads used by DropLoopbackOutgoing.
const (
	pktTypeOutgoing = 4   // PACKET_OUTGOING
	arphrdLoopback  = 772 // ARPHRD_LOOPBACK
)

// DropLoopbackOutgoing returns prog preceded by a test, run by the Linux
// kernel only, that rejects packets sent out of a loopback device. On a
// loopback interface the kernel hands a packet socket every packet twice
// (once as PACKET_OUTGOING when it is transmitted, once as PACKET_HOST when it
// is received); keeping only the received copy shows each packet once, as
// tcpdump does. The test reads the packet type and the device's hardware type
// (ARPHRD_LOOPBACK), so it is harmless on other interfaces and works for a
// socket bound to all interfaces. The result uses ancillary loads that the
// pure-Go VM does not implement: do not pass it to Match.
func DropLoopbackOutgoing(prog []bpf.RawInstruction) ([]bpf.RawInstruction, error) {
	guard, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: pktTypeOutgoing, SkipTrue: 3},
		bpf.LoadExtension{Num: bpf.ExtLinkLayerType},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: arphrdLoopback, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		return nil, err
	}
	if len(guard)+len(prog) > 4096 {
		return nil, fmt.Errorf("bpfilter: program has %d instructions, kernel limit is 4096", len(guard)+len(prog))
	}
	// Every jump in prog is relative, so prepending keeps it valid.
	return append(guard, prog...), nil
}
