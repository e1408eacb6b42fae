// Package diagnose explains why connections were reset. It looks at each
// finished connection from internal/conntrack, applies the rules in rules.go
// (one function per cause of the catalogue in internal/cause), and ties proxy
// errors (502/503/504) to the upstream connection that failed: at the end in
// batch mode (files), or once each has settled in streaming mode (live
// capture; see Options.Stream).
//
// What it produces, Incidents and Snapshots, are plain data that the report
// packages render; they hold copies, never the tracker's recycled memory.
package diagnose

import (
	"math"

	"github.com/rstscope/rstscope/internal/conntrack"
)

// Snapshot is what reports need of one connection, copied out of the tracker.
type Snapshot struct {
	UID      string
	ID       uint64
	Client   string // ip:port as net.JoinHostPort writes it
	Server   string
	Start    int64 // Unix ns
	Duration int64 // ns
	State    string
	History  string
	Pkts     [2]uint64 // per direction: client, server
	Bytes    [2]uint64 // TCP payload bytes, Zeek's way (sequence space)
	ISN      [2]uint32
	Retrans  [2]uint32
	Packets  []conntrack.Pkt // kept packets (head and tail)
	Dropped  uint64          // packets not kept
	HTTP     []conntrack.HTTPMsg
	Notes    []conntrack.Note
	MaxGap   int64
	Evicted  bool
}

// UID makes a stable Zeek-like connection id ("C" + 17 base62 digits) from
// the connection's number: the same capture always gives the same uids.
func UID(id uint64) string {
	x := id + 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	x ^= x >> 31
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var b [18]byte
	b[0] = 'C'
	y := x ^ (id << 7)
	for i := 17; i >= 1; i-- {
		if i > 8 {
			b[i] = digits[x%62]
			x /= 62
		} else {
			b[i] = digits[y%62]
			y /= 62
		}
	}
	return string(b[:])
}

// Snap copies a connection.
func Snap(c *conntrack.Conn) *Snapshot {
	s := &Snapshot{
		UID: UID(c.ID), ID: c.ID,
		Client: c.Client().String(), Server: c.Server().String(),
		Start: c.Start, Duration: c.Duration(),
		State: c.State(), History: c.History(),
		Packets: c.Packets(), Dropped: c.Dropped(), HTTP: c.HTTP(),
		Notes:  append([]conntrack.Note(nil), c.Notes...),
		MaxGap: c.MaxGap, Evicted: c.Evicted,
	}
	for d := 0; d < 2; d++ {
		e := &c.Ep[d]
		s.Pkts[d], s.Bytes[d], s.ISN[d], s.Retrans[d] = e.Pkts, e.Size(), e.ISN, e.Retrans
	}
	return s
}

// RelSeq returns a packet's sequence number relative to its sender's ISN and
// its acknowledgment number relative to the receiver's, as tcpdump does.
func (s *Snapshot) RelSeq(p *conntrack.Pkt) (seq, ack uint32) {
	return p.Seq - s.ISN[p.Dir], p.Ack - s.ISN[p.Dir^1]
}

// Side names a direction's sender.
func Side(d conntrack.Dir) string {
	if d == conntrack.FromClient {
		return "client"
	}
	return "server"
}

// seconds converts ns to seconds rounded to the microsecond, for facts.
func seconds(ns int64) float64 { return math.Round(float64(ns)/1e3) / 1e6 }
