package ktrace

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// sendFormatText and recvFormatText are the format files of kernel 6.18
// (print fmt shortened to the parts the decoder reads).
const sendFormatText = `name: tcp_send_reset
ID: 2280
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:const void * skbaddr;	offset:8;	size:8;	signed:0;
	field:const void * skaddr;	offset:16;	size:8;	signed:0;
	field:int state;	offset:24;	size:4;	signed:1;
	field:enum sk_rst_reason reason;	offset:28;	size:4;	signed:0;
	field:__u8 saddr[28];	offset:32;	size:28;	signed:0;
	field:__u8 daddr[28];	offset:60;	size:28;	signed:0;

print fmt: "skbaddr=%p skaddr=%p src=%pISpc dest=%pISpc state=%s reason=%s", REC->skbaddr, REC->skaddr, REC->saddr, REC->daddr, REC->state ? __print_symbolic(REC->state, { TCP_ESTABLISHED, "TCP_ESTABLISHED" }, { TCP_SYN_SENT, "TCP_SYN_SENT" }, { TCP_CLOSE, "TCP_CLOSE" }, { TCP_NEW_SYN_RECV, "TCP_NEW_SYN_RECV" }) : "UNKNOWN", __print_symbolic(REC->reason, { 0, "NOT_SPECIFIED" }, { 1, "NO_SOCKET" }, { 9, "TCP_TIMEWAIT_SOCKET" }, { 11, "TCP_ABORT_ON_CLOSE" }, { 14, "TCP_STATE" }, { 25, "MAX" })
`

const recvFormatText = `name: tcp_receive_reset
ID: 2279
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:const void * skaddr;	offset:8;	size:8;	signed:0;
	field:__u16 sport;	offset:16;	size:2;	signed:0;
	field:__u16 dport;	offset:18;	size:2;	signed:0;
	field:__u16 family;	offset:20;	size:2;	signed:0;
	field:__u8 saddr[4];	offset:22;	size:4;	signed:0;
	field:__u8 daddr[4];	offset:26;	size:4;	signed:0;
	field:__u8 saddr_v6[16];	offset:30;	size:16;	signed:0;
	field:__u8 daddr_v6[16];	offset:46;	size:16;	signed:0;
	field:__u64 sock_cookie;	offset:64;	size:8;	signed:0;

print fmt: "family=%s sport=%hu dport=%hu", __print_symbolic(REC->family, { 2, "AF_INET" }, { 10, "AF_INET6" }), REC->sport, REC->dport
`

const headerPageText = `	field: u64 timestamp;	offset:0;	size:8;	signed:0;
	field: local_t commit;	offset:8;	size:8;	signed:1;
	field: int overwrite;	offset:8;	size:1;	signed:1;
	field: char data;	offset:16;	size:4080;	signed:0;
`

func mustFormat(t *testing.T, text string) *eventFormat {
	t.Helper()
	f, err := parseFormat(text)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestParseFormat(t *testing.T) {
	f := mustFormat(t, sendFormatText)
	if f.name != "tcp_send_reset" || f.id != 2280 {
		t.Errorf("name/id = %q/%d", f.name, f.id)
	}
	for name, want := range map[string]field{
		"common_pid": {4, 4, true},
		"skbaddr":    {8, 8, false},
		"reason":     {28, 4, false},
		"saddr":      {32, 28, false},
		"daddr":      {60, 28, false},
	} {
		if got := f.fields[name]; got != want {
			t.Errorf("field %s = %+v, want %+v", name, got, want)
		}
	}
	hp := mustFormat(t, headerPageText)
	l, err := layoutFromHeader(hp)
	if err != nil {
		t.Fatal(err)
	}
	if want := (pageLayout{0, 8, 8, 16}); l != want {
		t.Errorf("page layout %+v, want %+v (commit must win over the overlaid overwrite)", l, want)
	}
}

func TestParseSymbolic(t *testing.T) {
	f := mustFormat(t, sendFormatText)
	reasons, err := parseSymbolic(f.printFmt, "reason")
	if err != nil {
		t.Fatal(err)
	}
	if reasons[1] != "NO_SOCKET" || reasons[14] != "TCP_STATE" || len(reasons) != 6 {
		t.Errorf("reasons = %v", reasons)
	}
	states, err := parseSymbolic(f.printFmt, "state")
	if err != nil {
		t.Fatal(err)
	}
	if states[1] != "TCP_ESTABLISHED" || states[7] != "TCP_CLOSE" || states[12] != "TCP_NEW_SYN_RECV" {
		t.Errorf("states = %v", states)
	}
	if _, err := parseSymbolic(f.printFmt, "nosuch"); err == nil {
		t.Error("missing table: no error")
	}
}

// sendRecord builds a tcp_send_reset record as the 6.18 layout stores it.
func sendRecord(id uint16, pid int32, state int32, reason uint32, src, dst netip.AddrPort) []byte {
	r := make([]byte, 88)
	binary.NativeEndian.PutUint16(r[0:], id)
	binary.NativeEndian.PutUint32(r[4:], uint32(pid))
	binary.NativeEndian.PutUint32(r[24:], uint32(state))
	binary.NativeEndian.PutUint32(r[28:], reason)
	putSockaddr(r[32:60], src)
	putSockaddr(r[60:88], dst)
	return r
}

func putSockaddr(b []byte, ap netip.AddrPort) {
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	if ap.Addr().Is4() {
		binary.NativeEndian.PutUint16(b, afInet)
		a := ap.Addr().As4()
		copy(b[4:], a[:])
	} else {
		binary.NativeEndian.PutUint16(b, afInet6)
		a := ap.Addr().As16()
		copy(b[8:], a[:])
	}
}

func TestDecode(t *testing.T) {
	d, err := newDecoder(mustFormat(t, sendFormatText), mustFormat(t, recvFormatText))
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddrPort("127.0.0.1:80")
	dst := netip.MustParseAddrPort("[2001:db8::1]:40000")
	ev, ok := d.decode(sendRecord(2280, 0, 7, 1, src, dst))
	if !ok {
		t.Fatal("send record not decoded")
	}
	want := Event{Kind: Send, Src: src, Dst: dst, State: "TCP_CLOSE", Reason: "NO_SOCKET"}
	if ev != want {
		t.Errorf("send = %+v, want %+v", ev, want)
	}
	if ev, _ := d.decode(sendRecord(2280, 0, 0, 99, src, dst)); ev.State != "" || ev.Reason != "99" {
		t.Errorf("state 0 / unknown reason: %+v", ev)
	}

	r := make([]byte, 72)
	binary.NativeEndian.PutUint16(r[0:], 2279)
	binary.NativeEndian.PutUint16(r[16:], 40000)
	binary.NativeEndian.PutUint16(r[18:], 80)
	binary.NativeEndian.PutUint16(r[20:], afInet)
	copy(r[22:], []byte{10, 0, 0, 1})
	copy(r[26:], []byte{10, 0, 0, 2})
	binary.NativeEndian.PutUint64(r[64:], 0x1234)
	ev, ok = d.decode(r)
	want = Event{Kind: Receive, Src: netip.MustParseAddrPort("10.0.0.1:40000"),
		Dst: netip.MustParseAddrPort("10.0.0.2:80"), Cookie: 0x1234}
	if !ok || ev != want {
		t.Errorf("receive = %+v, %v; want %+v", ev, ok, want)
	}

	if _, ok := d.decode(r[:40]); ok {
		t.Error("truncated record decoded")
	}
	binary.NativeEndian.PutUint16(r[0:], 7)
	if _, ok := d.decode(r); ok {
		t.Error("record of another event decoded")
	}
}

// TestWalkPage builds a sub-buffer with a short record, a time extend, a
// discarded event, a long (type_len 0) record and trailing padding.
func TestWalkPage(t *testing.T) {
	l := pageLayout{0, 8, 8, 16}
	var data []byte
	hdr := func(typeLen, delta uint32) {
		data = binary.NativeEndian.AppendUint32(data, typeLen|delta<<5)
	}
	u32 := func(v uint32) { data = binary.NativeEndian.AppendUint32(data, v) }
	hdr(2, 100) // 8-byte record at base+100
	u32(0xaaaa)
	u32(0xbbbb)
	hdr(rbTypeTimeExtend, 5) // +(1<<27 | 5)
	u32(1)
	hdr(rbTypePadding, 1) // discarded 8-byte event: delta ignored
	u32(8)
	u32(0)
	hdr(0, 7) // long record, 12 data bytes: array[0] = 16
	u32(16)
	u32(1)
	u32(2)
	u32(3)
	hdr(rbTypePadding, 0) // rest of page
	page := make([]byte, 16, 4096)
	binary.NativeEndian.PutUint64(page[0:], 1000)
	binary.NativeEndian.PutUint64(page[8:], uint64(len(data))|rbMissedEvents|rbMissedStored)
	page = append(page, data...)
	page = binary.NativeEndian.AppendUint64(page, 42)

	type rec struct {
		ts uint64
		n  int
	}
	var got []rec
	lost := walkPage(page, l, func(ts uint64, r []byte) { got = append(got, rec{ts, len(r)}) })
	want := []rec{{1100, 8}, {1100 + (1<<27 | 5) + 7, 12}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("records %v, want %v", got, want)
	}
	if lost != 42 {
		t.Errorf("lost = %d, want 42", lost)
	}
	// A commit larger than the page must not overrun.
	binary.NativeEndian.PutUint64(page[8:], 1<<20)
	walkPage(page[:40], l, func(uint64, []byte) {})
}

func TestPickClock(t *testing.T) {
	for in, want := range map[string]string{
		"[local] global counter uptime perf mono mono_raw boot tai x86-tsc": "mono",
		"local global [boot]": "boot",
		"[local] global":      "",
	} {
		got, _, err := pickClock(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("pickClock(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
