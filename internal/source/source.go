// Package source defines what every packet source hands to the pipeline: a
// capture file reader (internal/pcapio) and a live capture socket
// (internal/livecap) both fill a Frame, so decode, connection tracking and
// diagnosis do not care where packets came from.
package source

// Link types (LINKTYPE_* numbers from the pcap registry) that rstscope decodes.
const (
	LinkNull     uint32 = 0   // BSD loopback: 4-byte address family in host byte order
	LinkEthernet uint32 = 1   // Ethernet II, optionally 802.1Q / 802.1ad tagged
	LinkRaw      uint32 = 101 // raw IPv4 or IPv6, version from the first nibble
	LinkLoop     uint32 = 108 // OpenBSD loopback: 4-byte address family, big endian
	LinkSLL      uint32 = 113 // Linux cooked capture v1 (tcpdump -i any)
	LinkIPv4     uint32 = 228 // raw IPv4
	LinkIPv6     uint32 = 229 // raw IPv6
	LinkSLL2     uint32 = 276 // Linux cooked capture v2
)

// Frame is one captured frame. Sources reuse its memory: Data is valid only
// until the next call to Next on the same source. Comment is a string of its
// own.
type Frame struct {
	Timestamp int64  // capture time, Unix nanoseconds
	LinkType  uint32 // LINKTYPE_* of Data
	Interface int    // interface index within the source (pcapng IDB number; 0 for pcap)
	OrigLen   int    // length on the wire; len(Data) < OrigLen means snaplen-truncated
	Data      []byte // the captured bytes, starting at the link-layer header
	Comment   string // pcapng packet comment (opt_comment), "" if none
	Offset    int64  // byte offset of the record in the (decompressed) file; -1 for live capture
}

// Source yields frames in capture order.
type Source interface {
	// Next fills f with the next frame. It returns io.EOF at the end; any
	// other error describes where the input went wrong, and frames returned
	// before it are still valid results.
	Next(f *Frame) error
	Close() error
}
