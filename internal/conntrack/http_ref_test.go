package conntrack

// The HTTP sniffer as it was before the single-pass scanner of http.go
// (commit 0589851), kept as the reference FuzzSniffHTTP compares the fast
// one with. Only names changed: refSniffHTTP is (*Conn).sniffHTTP, with
// its own interner, and the helpers carry a ref prefix.

import (
	"bytes"
	"encoding/binary"
)

// refSniffHTTP records an HTTP message starting in payload, if one does. The
// message is parsed before it is given a slot and written there in place:
// a message is 120 bytes, and copying it twice per segment was measurable.
func refSniffHTTP(c *Conn, dir Dir, payload []byte, num uint64, ts int64, idle int64, st *storage, in *refInterner) {
	if len(payload) < 8 || payload[0] < 'C' || payload[0] > 'T' {
		refAddBody(c, dir, len(payload))
		return
	}
	nl := bytes.IndexByte(payload, '\n')
	line := payload
	if nl >= 0 {
		line = payload[:nl]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	var (
		status       int
		method       string
		target, text []byte
	)
	if string(payload[:5]) == "HTTP/" {
		if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' {
			refAddBody(c, dir, len(payload))
			return
		}
		for _, d := range line[9:12] {
			if d < '0' || d > '9' {
				refAddBody(c, dir, len(payload))
				return
			}
			status = status*10 + int(d-'0')
		}
		if len(line) > 13 {
			text = refTrunc(line[13:], 60)
		}
	} else {
		method = refMethodOf(line)
		if method == "" {
			refAddBody(c, dir, len(payload))
			return
		}
		rest := line[len(method)+1:]
		// The version ends the line: look there first (one compare)
		// before searching the line.
		end := len(rest) - 9
		if end < 0 || string(rest[end:end+8]) != " HTTP/1." {
			end = bytes.LastIndex(rest, []byte(" HTTP/1."))
		}
		if end < 0 {
			refAddBody(c, dir, len(payload))
			return
		}
		target = refTrunc(rest[:end], maxTarget)
	}
	if method != "" {
		c.reqPending = true
	} else if status >= 200 {
		c.reqPending = false
		if ProxyError(status) {
			c.Ep[dir].ProxyErrors++
		}
	}
	m := refNextHTTP(c, st)
	// Every field written once, in place: as a composite literal the
	// message (which holds strings) was built aside and copied with write
	// barriers, about 100 instructions a message.
	m.Dir, m.Pkt, m.TS, m.IdleBefore = dir, num, ts, idle
	m.Status, m.ContentLength, m.Close, m.KeepAliveS, m.BodySeen = status, -1, false, 0, 0
	m.Method, m.Target, m.Reason = method, "", ""
	if len(text) > 0 {
		m.Reason = in.str(text)
	}
	if len(target) > 0 {
		m.Target = in.str(target)
	}
	// Requests without a body need no headers (the common GET is cheap);
	// responses and uploads do: Content-Length, Connection, Keep-Alive.
	if nl >= 0 && (method == "" || (method != "GET" && method != "HEAD")) {
		m.BodySeen = refParseHeaders(m, payload[nl+1:])
	}
}

// refMethodOf returns the request method line starts with (followed by a
// space), or "". The first byte picks the one candidate; the common four
// are compared as a single word.
func refMethodOf(line []byte) string {
	if len(line) < 4 {
		return ""
	}
	w := binary.LittleEndian.Uint32(line)
	var name string
	switch line[0] {
	case 'G':
		if w == 'G'|'E'<<8|'T'<<16|' '<<24 {
			return "GET"
		}
		return ""
	case 'P':
		if w == 'P'|'U'<<8|'T'<<16|' '<<24 {
			return "PUT"
		}
		if w == 'P'|'O'<<8|'S'<<16|'T'<<24 {
			name = "POST"
		} else {
			name = "PATCH"
		}
	case 'H':
		name = "HEAD"
	case 'D':
		name = "DELETE"
	case 'O':
		name = "OPTIONS"
	case 'C':
		name = "CONNECT"
	case 'T':
		name = "TRACE"
	default:
		return ""
	}
	if len(line) > len(name) && line[len(name)] == ' ' && string(line[:len(name)]) == name {
		return name
	}
	return ""
}

// refAddBody counts payload towards the last message in this direction.
func refAddBody(c *Conn, dir Dir, n int) {
	if c.HTTPTotal == 0 {
		return
	}
	// Newest first, in HTTP() order: once the tail ring is full the newest
	// message is the one before httpRing, not the last slot.
	for j := len(c.http) - 1; j >= 0; j-- {
		i := j
		if j >= headHTTP {
			i = headHTTP + (j-headHTTP+c.httpRing)%tailHTTP
		}
		if c.http[i].Dir == dir {
			c.http[i].BodySeen += int64(n)
			return
		}
	}
}

// refNextHTTP claims the slot of a new message (the first headHTTP messages
// and a ring of the last tailHTTP are kept) and returns it, for the caller
// to overwrite.
func refNextHTTP(c *Conn, st *storage) *HTTPMsg {
	c.HTTPTotal++
	if n := len(c.http); n < headHTTP+tailHTTP {
		if n == cap(c.http) { // two steps, 4 then the bound: most connections hold one or two
			c.http = st.growHTTP(c.http)
		}
		c.http = c.http[:n+1]
		return &c.http[n]
	}
	m := &c.http[headHTTP+c.httpRing]
	if c.httpRing++; c.httpRing == tailHTTP {
		c.httpRing = 0
	}
	return m
}

// refInterner makes strings of repeated byte sequences (request targets,
// reason phrases) without allocating each time: map lookups with a
// string(b) key do not allocate. It is bounded. A small direct-mapped
// cache in front of the map answers the common case (the same few targets
// and reasons again and again) with one compare instead of a hash.
type refInterner struct {
	m     map[string]string
	cache [64]string
}

func (in *refInterner) str(b []byte) string {
	var slot int
	if n := len(b); n > 0 {
		slot = (n ^ int(b[0])<<1 ^ int(b[n-1])<<3 ^ int(b[n/2])<<2) & 63
	}
	if s := in.cache[slot]; s == string(b) {
		return s
	}
	s, ok := in.m[string(b)]
	if !ok {
		s = string(b)
		if in.m == nil || len(in.m) >= 8192 {
			in.m = make(map[string]string, 256)
		}
		in.m[s] = s
	}
	in.cache[slot] = s
	return s
}

func refTrunc(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// refParseHeaders picks Content-Length, Connection: close and Keep-Alive:
// timeout= from h, the captured header block of m after its first line,
// and returns how many body bytes follow the headers in it (0 if the
// headers are not complete).
func refParseHeaders(m *HTTPMsg, h []byte) int64 {
	for len(h) > 0 {
		i := bytes.IndexByte(h, '\n')
		var line []byte
		if i < 0 {
			line, h = h, nil
		} else {
			line, h = h[:i], h[i+1:]
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			if i >= 0 {
				return int64(len(h)) // end of headers: the rest is body
			}
			return 0
		}
		switch line[0] | 0x20 {
		case 'c', 'k':
		default:
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		name := line[:colon]
		if len(name) != 14 && len(name) != 10 { // none of the three below
			continue
		}
		val := bytes.TrimSpace(line[colon+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			var n int64
			ok := len(val) > 0 && len(val) < 16
			for _, d := range val {
				if d < '0' || d > '9' {
					ok = false
					break
				}
				n = n*10 + int64(d-'0')
			}
			if ok {
				m.ContentLength = n
			}
		case bytes.EqualFold(name, []byte("Connection")):
			if refContainsFold(val, "close") {
				m.Close = true
			}
		case bytes.EqualFold(name, []byte("Keep-Alive")):
			if j := refIndexFold(val, "timeout="); j >= 0 {
				n := 0
				for _, d := range val[j+8:] {
					if d < '0' || d > '9' || n > 1e6 {
						break
					}
					n = n*10 + int(d-'0')
				}
				m.KeepAliveS = n
			}
		}
	}
	return 0
}

// refIndexFold is a case-insensitive bytes.Index for an ASCII lower-case needle.
func refIndexFold(h []byte, needle string) int {
	for i := 0; i+len(needle) <= len(h); i++ {
		ok := true
		for j := 0; j < len(needle); j++ {
			c := h[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 32
			}
			if c != needle[j] {
				ok = false
				break
			}
		}
		if ok {
			return i
		}
	}
	return -1
}

func refContainsFold(h []byte, needle string) bool { return refIndexFold(h, needle) >= 0 }
