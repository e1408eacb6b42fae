// Package report renders what the engine found: JSON Lines (a contract other
// tools rely on: extend it, never break it), the text report with its
// terminal sequence diagrams, and connection rows in the manner of Zeek's
// conn.log.
package report

import (
	"sort"
	"strconv"
	"time"

	"github.com/rstscope/rstscope/internal/cause"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/engine"
)

// RFC3339 formats Unix ns as RFC 3339 with nanoseconds, in UTC.
func RFC3339(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

func secs(ns int64) float64 { return float64(ns/1000) / 1e6 }

// ConnRef names a connection inside an incident.
type ConnRef struct {
	UID    string `json:"uid"`
	Client string `json:"client"`
	Server string `json:"server"`
}

// IncidentJSON is the "incident" object of --json.
type IncidentJSON struct {
	Type         string                 `json:"type"`
	Kind         string                 `json:"kind"`
	Cause        cause.ID               `json:"cause"`
	Title        string                 `json:"title"`
	Time         string                 `json:"time"`
	Conn         ConnRef                `json:"conn"`
	ResetBy      string                 `json:"reset_by"`
	Packets      []uint64               `json:"packets"`
	Summary      string                 `json:"summary"`
	Explanation  string                 `json:"explanation"`
	Advice       []string               `json:"advice"`
	Related      []string               `json:"related"`
	Facts        map[string]any         `json:"facts"`
	KernelReason string                 `json:"kernel_reason,omitempty"`
	Alternatives []diagnose.Alternative `json:"alternatives,omitempty"`
}

// Incident builds the incident object.
func Incident(inc *diagnose.Incident) IncidentJSON {
	j := IncidentJSON{Type: "incident", Kind: inc.Kind, Cause: inc.Cause, Time: RFC3339(inc.Time),
		Conn:    ConnRef{UID: inc.Conn.UID, Client: inc.Conn.Client, Server: inc.Conn.Server},
		ResetBy: inc.ResetBy, Packets: inc.Packets, Summary: inc.Summary, Explanation: inc.Explanation,
		Advice: inc.Advice, Related: inc.Related, Facts: inc.Facts, KernelReason: inc.KernelReason,
		Alternatives: inc.Alternatives}
	if c := cause.Lookup(inc.Cause); c != nil {
		j.Title = c.Title
	}
	if j.Packets == nil {
		j.Packets = []uint64{}
	}
	if j.Related == nil {
		j.Related = []string{}
	}
	if j.Advice == nil {
		j.Advice = []string{}
	}
	if j.Facts == nil {
		j.Facts = map[string]any{}
	}
	return j
}

// Input describes what was read, for the summary.
type Input struct {
	Name      string
	Format    string
	ReadError string
}

// SummaryJSON is the closing "summary" object of --json.
type SummaryJSON struct {
	Type         string            `json:"type"`
	File         string            `json:"file"`
	Format       string            `json:"format"`
	LinkTypes    []string          `json:"link_types"`
	Packets      uint64            `json:"packets"`
	TCPPackets   uint64            `json:"tcp_packets"`
	OtherPackets uint64            `json:"other_packets"`
	Malformed    uint64            `json:"malformed_packets"`
	Skipped      map[string]uint64 `json:"skipped"`
	Truncated    uint64            `json:"truncated_packets"`
	Bytes        uint64            `json:"bytes"`
	First        string            `json:"first,omitempty"`
	Last         string            `json:"last,omitempty"`
	Duration     float64           `json:"duration_s"`
	Connections  uint64            `json:"connections"`
	ConnStates   map[string]uint64 `json:"conn_states"`
	Resets       uint64            `json:"conns_with_reset"`
	Incidents    map[string]int    `json:"incidents"`
	NotDetailed  int               `json:"incidents_not_detailed"`
	Evicted      uint64            `json:"evicted_connections"`
	PeakLive     int               `json:"peak_live_connections"`
	Retransmits  uint64            `json:"retransmits"`
	Comments     uint64            `json:"packet_comments"`
	ReadError    string            `json:"read_error,omitempty"`
}

// Summary builds the summary object.
func Summary(in Input, st engine.Stats, counts map[cause.ID]int, notDetailed int) SummaryJSON {
	s := SummaryJSON{Type: "summary", File: in.Name, Format: in.Format, Packets: st.Frames, TCPPackets: st.TCP,
		OtherPackets: st.NotTCP, Malformed: st.Malformed, Skipped: st.Skipped, Truncated: st.Truncated,
		Bytes: st.Bytes, Connections: st.Track.Conns, ConnStates: st.States, Resets: st.Resets,
		Incidents: map[string]int{}, NotDetailed: notDetailed, Evicted: st.Track.Evicted,
		PeakLive: st.Track.PeakLive, Retransmits: st.Track.Retransmits, Comments: st.Comments, ReadError: in.ReadError}
	if s.ConnStates == nil {
		s.ConnStates = map[string]uint64{}
	}
	if st.Frames > 0 {
		s.First, s.Last, s.Duration = RFC3339(st.First), RFC3339(st.Last), secs(st.Last-st.First)
	}
	for id, n := range counts {
		s.Incidents[string(id)] = n
	}
	for lt := range st.LinkTypes {
		s.LinkTypes = append(s.LinkTypes, LinkName(lt))
	}
	sort.Strings(s.LinkTypes)
	return s
}

// LinkName names a link type.
func LinkName(lt uint32) string {
	switch lt {
	case 0:
		return "BSD loopback"
	case 1:
		return "Ethernet"
	case 101, 12, 14:
		return "raw IP"
	case 108:
		return "OpenBSD loopback"
	case 113:
		return "Linux cooked v1"
	case 228:
		return "raw IPv4"
	case 229:
		return "raw IPv6"
	case 276:
		return "Linux cooked v2"
	}
	return "link type " + strconv.Itoa(int(lt))
}
