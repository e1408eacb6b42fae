package report

import (
	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/diagnose"
)

// The conn object of --json as structs for encoding/json: the reference
// AppendConn is held to (TestAppendConnSameAsEncodingJSON), and the
// contract written out field by field (docs/analyze.md).

// HTTPJSON is one HTTP line in a conn object.
type HTTPJSON struct {
	Dir        string  `json:"dir"` // "request" or "response"
	Method     string  `json:"method,omitempty"`
	Target     string  `json:"target,omitempty"`
	Status     int     `json:"status,omitempty"`
	Reason     string  `json:"reason,omitempty"`
	Time       string  `json:"time"`
	Packet     uint64  `json:"packet"`
	IdleBefore float64 `json:"idle_before_s"`
	Close      bool    `json:"connection_close,omitempty"`
	KeepAliveS int     `json:"keep_alive_timeout_s,omitempty"`
}

// ConnJSON is the "conn" object of --json.
type ConnJSON struct {
	Type        string     `json:"type"`
	UID         string     `json:"uid"`
	Start       string     `json:"start"`
	Duration    float64    `json:"duration_s"`
	Client      string     `json:"client"`
	Server      string     `json:"server"`
	ConnState   string     `json:"conn_state"`
	History     string     `json:"history"`
	ClientPkts  uint64     `json:"client_pkts"`
	ServerPkts  uint64     `json:"server_pkts"`
	ClientBytes uint64     `json:"client_bytes"`
	ServerBytes uint64     `json:"server_bytes"`
	Retrans     [2]uint32  `json:"retransmits"`
	MaxIdle     float64    `json:"max_idle_s"`
	ResetBy     string     `json:"reset_by,omitempty"`
	Evicted     bool       `json:"evicted,omitempty"`
	HTTP        []HTTPJSON `json:"http"`
}

// refConn builds the conn object straight from the tracker's connection.
func refConn(c *conntrack.Conn) ConnJSON {
	j := ConnJSON{
		Type: "conn", UID: diagnose.UID(c.ID), Start: RFC3339(c.Start), Duration: secs(c.Duration()),
		Client: c.Client().String(), Server: c.Server().String(), // as net.JoinHostPort writes them
		ConnState: c.State(), History: c.History(),
		ClientPkts: c.Ep[0].Pkts, ServerPkts: c.Ep[1].Pkts,
		ClientBytes: c.Ep[0].Size(), ServerBytes: c.Ep[1].Size(),
		Retrans: [2]uint32{c.Ep[0].Retrans, c.Ep[1].Retrans},
		MaxIdle: secs(c.MaxGap), Evicted: c.Evicted, HTTP: []HTTPJSON{},
	}
	if d, ok := c.ResetBy(); ok {
		j.ResetBy = diagnose.Side(d)
	}
	for _, m := range c.HTTP() {
		j.HTTP = append(j.HTTP, httpJSON(m))
	}
	return j
}

func httpJSON(m conntrack.HTTPMsg) HTTPJSON {
	h := HTTPJSON{Method: m.Method, Target: m.Target, Status: m.Status, Reason: m.Reason,
		Time: RFC3339(m.TS), Packet: m.Pkt, IdleBefore: secs(m.IdleBefore), Close: m.Close, KeepAliveS: m.KeepAliveS}
	if m.Method != "" {
		h.Dir = "request"
	} else {
		h.Dir = "response"
	}
	return h
}
