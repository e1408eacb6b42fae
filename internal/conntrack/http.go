package conntrack

import "bytes"

// HTTP/1.x awareness: a segment whose payload starts with a request line or
// a status line starts a message. This needs no reassembly and costs one or
// two byte comparisons for non-HTTP payload; it misses messages whose first
// line is split across segments, which is rare for request and status lines.

var methods = [...]string{"GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"}

const maxTarget = 200

// sniffHTTP records an HTTP message starting in payload and returns its
// index in c.http, or -1.
func (c *Conn) sniffHTTP(dir Dir, payload []byte, num uint64, ts int64, idle int64) int16 {
	if len(payload) < 8 {
		c.addBody(dir, len(payload))
		return -1
	}
	var m HTTPMsg
	switch {
	case payload[0] == 'H' && bytes.HasPrefix(payload, []byte("HTTP/1.")):
		line := firstLine(payload)
		if len(line) < 12 || line[8] != ' ' {
			c.addBody(dir, len(payload))
			return -1
		}
		code := 0
		for _, d := range line[9:12] {
			if d < '0' || d > '9' {
				c.addBody(dir, len(payload))
				return -1
			}
			code = code*10 + int(d-'0')
		}
		m.Status = code
		if len(line) > 13 {
			m.Reason = string(trunc(line[13:], 60))
		}
	case payload[0] >= 'C' && payload[0] <= 'T':
		sp := bytes.IndexByte(payload[:min(len(payload), 9)], ' ')
		if sp < 3 {
			c.addBody(dir, len(payload))
			return -1
		}
		method := ""
		for _, name := range methods {
			if string(payload[:sp]) == name {
				method = name
				break
			}
		}
		if method == "" {
			c.addBody(dir, len(payload))
			return -1
		}
		line := firstLine(payload)
		rest := line[sp+1:]
		end := bytes.LastIndex(rest, []byte(" HTTP/1."))
		if end < 0 {
			c.addBody(dir, len(payload))
			return -1
		}
		m.Method = method
		m.Target = string(trunc(rest[:end], maxTarget))
	default:
		c.addBody(dir, len(payload))
		return -1
	}
	m.Dir, m.Pkt, m.TS, m.IdleBefore = dir, num, ts, idle
	m.ContentLength = -1
	hdrEnd := bytes.Index(payload, []byte("\r\n\r\n"))
	headers := payload
	if hdrEnd >= 0 {
		headers = payload[:hdrEnd]
		m.BodySeen = int64(len(payload) - hdrEnd - 4)
	}
	parseHeaders(&m, headers)
	return c.addHTTP(m)
}

// addBody counts payload towards the last message in this direction.
func (c *Conn) addBody(dir Dir, n int) {
	if c.HTTPTotal == 0 {
		return
	}
	for i := len(c.http) - 1; i >= 0; i-- {
		if c.http[i].Dir == dir {
			c.http[i].BodySeen += int64(n)
			return
		}
	}
}

func (c *Conn) addHTTP(m HTTPMsg) int16 {
	c.HTTPTotal++
	if len(c.http) < headHTTP+tailHTTP {
		c.http = append(c.http, m)
		return int16(len(c.http) - 1)
	}
	i := headHTTP + c.httpRing
	c.http[i] = m
	c.httpRing = (c.httpRing + 1) % tailHTTP
	// Packets that pointed at the overwritten message no longer do.
	for j := range c.pkts {
		if c.pkts[j].HTTP == int16(i) && c.pkts[j].Num != m.Pkt {
			c.pkts[j].HTTP = -1
		}
	}
	return int16(i)
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	return bytes.TrimRight(b, "\r")
}

func trunc(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// parseHeaders picks Content-Length, Connection: close and Keep-Alive:
// timeout= from the captured header block.
func parseHeaders(m *HTTPMsg, h []byte) {
	for len(h) > 0 {
		i := bytes.IndexByte(h, '\n')
		var line []byte
		if i < 0 {
			line, h = h, nil
		} else {
			line, h = h[:i], h[i+1:]
		}
		line = bytes.TrimRight(line, "\r")
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		name, val := line[:colon], bytes.TrimSpace(line[colon+1:])
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
			if bytes.Contains(bytes.ToLower(val), []byte("close")) {
				m.Close = true
			}
		case bytes.EqualFold(name, []byte("Keep-Alive")):
			if j := bytes.Index(bytes.ToLower(val), []byte("timeout=")); j >= 0 {
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
}
