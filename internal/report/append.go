package report

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/diagnose"
)

// AppendConn appends c's conn object (the contract in docs/analyze.md) and a
// newline to b, byte for byte what a json.Encoder with SetEscapeHTML(false)
// writes for the reference structs in conn_json_test.go, and returns
// the extended buffer. It builds no intermediate values: --json writes one
// row per connection, and encoding them by reflection, through a copy of
// every HTTP line, was a third of the time of `analyze --json` and most of
// its garbage. TestAppendConnSameAsEncodingJSON holds it to encoding/json.
func AppendConn(b []byte, c *conntrack.Conn) []byte {
	b = append(b, `{"type":"conn","uid":"`...)
	b = append(b, diagnose.UID(c.ID)...)
	b = append(b, `","start":"`...)
	b = appendTime(b, c.Start)
	b = append(b, `","duration_s":`...)
	b = appendFloat(b, secs(c.Duration()))
	b = append(b, `,"client":"`...)
	b = c.Client().AppendTo(b)
	b = append(b, `","server":"`...)
	b = c.Server().AppendTo(b)
	b = append(b, `","conn_state":"`...)
	b = append(b, c.State()...)
	b = append(b, `","history":`...)
	b = appendString(b, c.History())
	b = append(b, `,"client_pkts":`...)
	b = strconv.AppendUint(b, c.Ep[0].Pkts, 10)
	b = append(b, `,"server_pkts":`...)
	b = strconv.AppendUint(b, c.Ep[1].Pkts, 10)
	b = append(b, `,"client_bytes":`...)
	b = strconv.AppendUint(b, c.Ep[0].Size(), 10)
	b = append(b, `,"server_bytes":`...)
	b = strconv.AppendUint(b, c.Ep[1].Size(), 10)
	b = append(b, `,"retransmits":[`...)
	b = strconv.AppendUint(b, uint64(c.Ep[0].Retrans), 10)
	b = append(b, ',')
	b = strconv.AppendUint(b, uint64(c.Ep[1].Retrans), 10)
	b = append(b, `],"max_idle_s":`...)
	b = appendFloat(b, secs(c.MaxGap))
	if d, ok := c.ResetBy(); ok {
		b = append(b, `,"reset_by":"`...)
		b = append(b, diagnose.Side(d)...)
		b = append(b, '"')
	}
	if c.Evicted {
		b = append(b, `,"evicted":true`...)
	}
	b = append(b, `,"http":[`...)
	first := true
	c.EachHTTP(func(m *conntrack.HTTPMsg) bool {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendHTTP(b, m)
		return true
	})
	return append(b, "]}\n"...)
}

// appendHTTP appends one HTTP line of a conn object.
func appendHTTP(b []byte, m *conntrack.HTTPMsg) []byte {
	if m.Method != "" {
		b = append(b, `{"dir":"request","method":`...)
		b = appendString(b, m.Method)
	} else {
		b = append(b, `{"dir":"response"`...)
	}
	if m.Target != "" {
		b = append(b, `,"target":`...)
		b = appendString(b, m.Target)
	}
	if m.Status != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(m.Status), 10)
	}
	if m.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendString(b, m.Reason)
	}
	b = append(b, `,"time":"`...)
	b = appendTime(b, m.TS)
	b = append(b, `","packet":`...)
	b = strconv.AppendUint(b, m.Pkt, 10)
	b = append(b, `,"idle_before_s":`...)
	b = appendFloat(b, secs(m.IdleBefore))
	if m.Close {
		b = append(b, `,"connection_close":true`...)
	}
	if m.KeepAliveS != 0 {
		b = append(b, `,"keep_alive_timeout_s":`...)
		b = strconv.AppendInt(b, int64(m.KeepAliveS), 10)
	}
	return append(b, '}')
}

// appendTime appends RFC3339(ns).
func appendTime(b []byte, ns int64) []byte {
	return time.Unix(0, ns).UTC().AppendFormat(b, time.RFC3339Nano)
}

// appendFloat appends f as encoding/json writes a float64: the shortest
// representation, in exponent form only below 1e-6 or from 1e21.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...) // never made from durations; not valid JSON otherwise
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 to e-9, as encoding/json does
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendString appends s as a JSON string. Printable ASCII without quotes
// or backslashes, nearly everything a capture holds, is copied as it is;
// anything else (control characters, invalid UTF-8, U+2028) is left to
// encoding/json, so the escaping is always its own.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' {
			return appendStringSlow(b, s)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendStringSlow(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}
