package ktrace

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Address families as the kernel stores them in sockaddr and in
// tcp_receive_reset's family field.
const (
	afInet  = 2
	afInet6 = 10
)

// decoder turns raw records of the two reset tracepoints into Events, using
// field offsets and symbol tables read from their format files.
type decoder struct {
	typeField field // common_type, to tell the two events apart

	sendID, recvID            uint16
	sendLen, recvLen          int // record sizes the formats imply
	sState, sReason           field
	sSaddr, sDaddr, sPID      field
	hasState, hasReason       bool
	stateNames, reasonNames   map[int64]string
	rFamily, rSport, rDport   field
	rSaddr, rDaddr            field
	rSaddr6, rDaddr6, rCookie field
	rPID                      field
	hasCookie                 bool

	comms map[int32]string // pid -> comm, cleared by resetComms
}

// newDecoder builds a decoder from the send and receive format files.
func newDecoder(send, recv *eventFormat) (*decoder, error) {
	d := &decoder{sendID: send.id, recvID: recv.id, sendLen: send.size(), recvLen: recv.size(),
		comms: map[int32]string{}}
	var ok bool
	if d.typeField, ok = send.fields["common_type"]; !ok || d.typeField.size != 2 {
		return nil, fmt.Errorf("tcp_send_reset format: no common_type")
	}
	need := func(f *eventFormat, name string, size int) (field, error) {
		fl, ok := f.fields[name]
		if !ok || (size > 0 && fl.size != size) {
			return fl, fmt.Errorf("%s format: field %s missing or not %d bytes", f.name, name, size)
		}
		return fl, nil
	}
	var err error
	for _, x := range []struct {
		dst  *field
		f    *eventFormat
		name string
		size int
	}{
		{&d.sSaddr, send, "saddr", 28}, {&d.sDaddr, send, "daddr", 28}, {&d.sPID, send, "common_pid", 4},
		{&d.rFamily, recv, "family", 0}, {&d.rSport, recv, "sport", 2}, {&d.rDport, recv, "dport", 2},
		{&d.rSaddr, recv, "saddr", 4}, {&d.rDaddr, recv, "daddr", 4},
		{&d.rSaddr6, recv, "saddr_v6", 16}, {&d.rDaddr6, recv, "daddr_v6", 16}, {&d.rPID, recv, "common_pid", 4},
	} {
		if *x.dst, err = need(x.f, x.name, x.size); err != nil {
			return nil, err
		}
	}
	if d.sReason, d.hasReason = send.fields["reason"]; d.hasReason {
		if d.reasonNames, err = parseSymbolic(send.printFmt, "reason"); err != nil {
			return nil, err
		}
	}
	if d.sState, d.hasState = send.fields["state"]; d.hasState {
		d.stateNames, _ = parseSymbolic(send.printFmt, "state") // numbers still decode without names
	}
	d.rCookie, d.hasCookie = recv.fields["sock_cookie"]
	return d, nil
}

// decode converts one record. ok is false for records of other events and for
// records too short for their format. Time is left as the raw trace clock.
func (d *decoder) decode(rec []byte) (ev Event, ok bool) {
	typ, ok := d.typeField.uint(rec)
	if !ok {
		return ev, false
	}
	switch uint16(typ) {
	case d.sendID:
		if len(rec) < d.sendLen {
			return ev, false
		}
		ev.Kind = Send
		if ev.Src, ok = sockaddr(d.sSaddr.bytes(rec)); !ok {
			return ev, false
		}
		if ev.Dst, ok = sockaddr(d.sDaddr.bytes(rec)); !ok {
			return ev, false
		}
		if d.hasState {
			if v, ok := d.sState.int(rec); ok && v != 0 {
				ev.State = symbol(d.stateNames, v)
			}
		}
		if d.hasReason {
			if v, ok := d.sReason.int(rec); ok {
				ev.Reason = symbol(d.reasonNames, v)
			}
		}
		ev.PID = d.pid(d.sPID, rec)
	case d.recvID:
		if len(rec) < d.recvLen {
			return ev, false
		}
		ev.Kind = Receive
		fam, _ := d.rFamily.uint(rec)
		sport, _ := d.rSport.uint(rec)
		dport, _ := d.rDport.uint(rec)
		var src, dst netip.Addr
		switch fam {
		case afInet:
			src, _ = netip.AddrFromSlice(d.rSaddr.bytes(rec))
			dst, _ = netip.AddrFromSlice(d.rDaddr.bytes(rec))
		case afInet6:
			src, _ = netip.AddrFromSlice(d.rSaddr6.bytes(rec))
			dst, _ = netip.AddrFromSlice(d.rDaddr6.bytes(rec))
		default:
			return ev, false
		}
		ev.Src = netip.AddrPortFrom(src.Unmap(), uint16(sport))
		ev.Dst = netip.AddrPortFrom(dst.Unmap(), uint16(dport))
		if d.hasCookie {
			ev.Cookie, _ = d.rCookie.uint(rec)
		}
		ev.PID = d.pid(d.rPID, rec)
	default:
		return ev, false
	}
	ev.Comm = d.comm(int32(ev.PID))
	return ev, true
}

func (d *decoder) pid(fl field, rec []byte) int {
	v, _ := fl.int(rec)
	return int(v)
}

// comm names the task with the given pid from /proc, caching the answer until
// resetComms. The record itself carries only the pid; a task that has already
// exited has no name.
func (d *decoder) comm(pid int32) string {
	if pid <= 0 {
		return ""
	}
	if c, ok := d.comms[pid]; ok {
		return c
	}
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/comm")
	c := strings.TrimSuffix(string(b), "\n")
	d.comms[pid] = c
	return c
}

// resetComms forgets cached task names, so a reused pid is not misnamed for
// long.
func (d *decoder) resetComms() { clear(d.comms) }

// symbol names v from a __print_symbolic table, or gives the number if the
// table does not know it.
func symbol(names map[int64]string, v int64) string {
	if s, ok := names[v]; ok {
		return s
	}
	return strconv.FormatInt(v, 10)
}

// sockaddr decodes the 28-byte sockaddr_in / sockaddr_in6 the send tracepoint
// stores (family in host order first, then the port in network order).
// IPv4-mapped IPv6 addresses are unmapped so they compare equal to packets'.
func sockaddr(b []byte) (netip.AddrPort, bool) {
	if len(b) < 16 {
		return netip.AddrPort{}, false
	}
	port := binary.BigEndian.Uint16(b[2:4])
	switch binary.NativeEndian.Uint16(b[0:2]) {
	case afInet:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port), true
	case afInet6:
		if len(b) < 24 {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), port), true
	}
	return netip.AddrPort{}, false
}
