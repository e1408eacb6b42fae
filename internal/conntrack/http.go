package conntrack

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// HTTP/1.x awareness: a segment whose payload starts with a request line or
// a status line starts a message. This needs no reassembly and costs one or
// two byte comparisons for non-HTTP payload; it misses messages whose first
// line is split across segments, which is rare for request and status lines.

const (
	maxTarget = 200 // bytes of a request target kept
	maxReason = 60  // bytes of a reason phrase kept
)

// Fixed text the sniffer compares as little-endian words, 8 bytes at once.
const (
	wordHTTP1   = 'H' | 'T'<<8 | 'T'<<16 | 'P'<<24 | '/'<<32 | '1'<<40 | '.'<<48           // "HTTP/1." (7 bytes)
	wordVersion = ' ' | 'H'<<8 | 'T'<<16 | 'T'<<24 | 'P'<<32 | '/'<<40 | '1'<<48 | '.'<<56 // " HTTP/1."
	wordGET     = 'G' | 'E'<<8 | 'T'<<16 | ' '<<24                                         // "GET " (4 bytes)
)

// sniffHTTP records an HTTP message starting in payload, if one does. The
// message is parsed before it is given a slot and written there in place:
// a message is 120 bytes, and copying it twice per segment was measurable.
//
// The common first lines, a status line or a GET whose end is within 16
// bytes of the text, are parsed here (quickFirstLine) without a call, and
// the others by parseFirstLine. A call on the way to the writes below
// made the compiler keep the arguments they need on the stack (about 20
// instructions a message), and parseFirstLine its own values (about 30).
func (c *Conn) sniffHTTP(dir Dir, payload []byte, num uint64, ts int64, idle int64, st *storage) {
	status, method, nl, from, to, key, headers, ok := quickFirstLine(payload)
	if !ok {
		if status, method, nl, from, to, key, headers = parseFirstLine(payload); to < 0 {
			c.addBody(dir, len(payload))
			return
		}
	}
	if method != "" {
		c.reqPending = true
	} else if status >= 200 {
		c.reqPending = false
		if ProxyError(status) {
			c.Ep[dir].ProxyErrors++
		}
	}
	var text string
	if key != 0 {
		text = st.intern.cached(key, to-from)
	}
	if text == "" && to > from {
		text = st.intern.at(payload, from, to)
	}
	m := c.freeHTTP()
	if m == nil {
		m = c.growHTTP(st)
	}
	c.HTTPTotal++
	// Every field written once, in place: as a composite literal the
	// message (which holds strings) was built aside and copied with write
	// barriers, about 100 instructions a message.
	m.Dir, m.Pkt, m.TS, m.IdleBefore = dir, num, ts, idle
	m.Status, m.ContentLength, m.Close, m.KeepAliveS, m.BodySeen = status, -1, false, 0, 0
	if method != "" {
		m.Method, m.Target, m.Reason = method, text, ""
	} else {
		m.Method, m.Target, m.Reason = "", "", text
	}
	if headers {
		m.BodySeen = parseHeaders(m, payload, nl+1)
	}
}

// quickFirstLine is parseFirstLine for the common lines, without a call
// (ok false for the others): a status line whose '\n' is within the 16
// bytes from the space before the reason phrase, and a GET whose '\n' is
// within the 16 bytes from the space before the target and whose version
// ends the line.
func quickFirstLine(p []byte) (status int, method string, nl, from, to int, key uint64, headers, ok bool) {
	if len(p) < 28 {
		return
	}
	w := binary.LittleEndian.Uint64(p)
	if w&(1<<56-1) == wordHTTP1 {
		d0, d1, d2 := p[9]-'0', p[10]-'0', p[11]-'0'
		if w>>56 == '\n' || p[8] != ' ' || d0 > 9 || d1 > 9 || d2 > 9 {
			return
		}
		x := binary.LittleEndian.Uint64(p[12:20])
		k := wordLF(x)
		if k == 8 {
			if k += wordLF(binary.LittleEndian.Uint64(p[20:28])); k == 16 {
				return
			}
		}
		nl = 12 + k
		end := nl
		if p[end-1] == '\r' {
			end--
		}
		if to = min(end, 13+maxReason); to > 13 {
			key = shortKeyOf(x, to-13)
		}
		return int(d0)*100 + int(d1)*10 + int(d2), "", nl, 13, to, key, true, true
	}
	if uint32(w) != wordGET {
		return
	}
	x := binary.LittleEndian.Uint64(p[3:11])
	k := wordLF(x)
	if k == 8 {
		if k += wordLF(binary.LittleEndian.Uint64(p[11:19])); k == 16 {
			return
		}
	}
	nl = 3 + k
	end := nl
	if p[end-1] == '\r' {
		end--
	}
	if v := end - 9; v >= 4 && binary.LittleEndian.Uint64(p[v:v+8]) == wordVersion {
		if to = min(v, 4+maxTarget); to > 4 {
			key = shortKeyOf(x, to-4)
		}
		return 0, "GET", nl, 4, to, key, false, true
	}
	return
}

// parseFirstLine parses the request or status line payload starts with:
// the status of a response, the method of a request, the index of the
// line's '\n' (-1 if none) and payload[from:to], the reason phrase or the
// target, with its key in the interner's short cache (0 if it has none);
// to is -1 if payload starts with neither. headers tells whether the
// header lines are to be looked at: those of responses and of requests
// that may have a body (Content-Length, Connection, Keep-Alive), not those
// of the common GET.
//
// It reads the line by its positions in payload; no line is shorter than
// 12 bytes ("HTTP/1.1 200", "GET  HTTP/1.") so the first 12 are read
// without further checks. The first 8 are read as one word, and only
// through it: a byte of them read on its own as well keeps the compiler
// from making one load of the eight (23 instructions instead of 1).
func parseFirstLine(payload []byte) (status int, method string, nl, from, to int, key uint64, headers bool) {
	if len(payload) < 12 {
		return 0, "", 0, 0, -1, 0, false
	}
	w := binary.LittleEndian.Uint64(payload)
	if b := byte(w); b < 'C' || b > 'T' {
		return 0, "", 0, 0, -1, 0, false
	}
	if w&(1<<56-1) == wordHTTP1 {
		// "HTTP/1.x NNN reason": any byte but '\n' for x (a '\n' would end
		// the line too short), then a space and three digits.
		d0, d1, d2 := payload[9]-'0', payload[10]-'0', payload[11]-'0'
		if w>>56 == '\n' || payload[8] != ' ' || d0 > 9 || d1 > 9 || d2 > 9 {
			return 0, "", 0, 0, -1, 0, false
		}
		status, from, headers = int(d0)*100+int(d1)*10+int(d2), 13, true
	} else {
		// Anything else starting "HTTP/" is no method either.
		if uint32(w) == wordGET {
			method = "GET"
		} else if method = methodOf(payload); method == "" {
			return 0, "", 0, 0, -1, 0, false
		}
		from, headers = len(method)+1, method != "GET" && method != "HEAD"
	}
	// The line's end. Its first 16 bytes from the space before from are
	// read as two words (the first also gives the short key of the text),
	// which finds the end of a status or request line (" 200 OK\r\n",
	// " / HTTP/1.1\r\n") in a dozen or two instructions where
	// bytes.IndexByte takes some 40; for longer lines that is the faster.
	var x uint64
	nl = -1
	rest := from - 1 // where bytes.IndexByte is to look if the words do not do
	if rest+16 <= len(payload) {
		x = binary.LittleEndian.Uint64(payload[rest : rest+8])
		if k := wordLF(x); k < 8 {
			nl = rest + k
		} else if k := wordLF(binary.LittleEndian.Uint64(payload[rest+8 : rest+16])); k < 8 {
			nl = rest + 8 + k
		} else {
			rest += 16
		}
	}
	if nl < 0 {
		nl = indexLF(payload, rest)
	}
	end := nl
	if nl < 0 {
		end, headers = len(payload), false
	}
	if payload[end-1] == '\r' { // end > 12: the '\n' is past the first 12
		end--
	}
	if method == "" {
		to = min(end, from+maxReason)
	} else {
		// The version ends the line: look there first (one compare)
		// before searching the line.
		v := end - 9
		if v < from || binary.LittleEndian.Uint64(payload[v:v+8]) != wordVersion {
			if v = bytes.LastIndex(payload[from:end], []byte(" HTTP/1.")); v < 0 {
				return 0, "", 0, 0, -1, 0, false
			}
			v += from
		}
		to = min(v, from+maxTarget)
	}
	if x != 0 && to > from {
		key = shortKeyOf(x, to-from)
	}
	return status, method, nl, from, to, key, headers
}

// lineEnd returns where the line ending at nl (the index of its '\n', or
// -1 for the end of p) ends without its '\r'.
func lineEnd(p []byte, nl int) int {
	if nl < 0 {
		nl = len(p)
	}
	if nl > 0 && p[nl-1] == '\r' {
		nl--
	}
	return nl
}

// indexLF returns the index of the first '\n' in p at or after i
// (0 <= i <= len(p)), or -1.
func indexLF(p []byte, i int) int {
	if j := bytes.IndexByte(p[i:], '\n'); j >= 0 {
		return i + j
	}
	return -1
}

// wordLF returns the index of the first '\n' in the 8 bytes of the
// little-endian x, or 8: after an XOR with "\n\n\n\n\n\n\n\n" the newlines
// are the zero bytes, and (x - 0x01..01) &^ x & 0x80..80 marks the lowest
// zero byte exactly (and maybe some above it).
func wordLF(x uint64) int {
	const ones, highs, lfs = 0x0101010101010101, 0x8080808080808080, 0x0a0a0a0a0a0a0a0a
	x ^= lfs
	return bits.TrailingZeros64((x-ones)&^x&highs) >> 3
}

// methodOf returns the request method line starts with (followed by a
// space), or "". The first byte picks the one candidate; the common four
// are compared as a single word.
func methodOf(line []byte) string {
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

// ProxyError reports whether status is one a proxy answers with when its
// upstream failed: 502 Bad Gateway, 503 Service Unavailable, 504 Gateway
// Timeout.
func ProxyError(status int) bool { return status >= 502 && status <= 504 }

// addBody counts payload towards the last message in this direction.
func (c *Conn) addBody(dir Dir, n int) {
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

// freeHTTP returns the slot of a new message for the caller to overwrite
// (the first headHTTP messages and a ring of the last tailHTTP are kept),
// nil if the slice must grow first (growHTTP). The two cases it takes, a
// slot of the ring and one the slice has room for, are the common ones and
// small enough for it to be inlined.
func (c *Conn) freeHTTP() *HTTPMsg {
	n := len(c.http)
	if n == headHTTP+tailHTTP {
		m := &c.http[headHTTP+c.httpRing]
		if c.httpRing++; c.httpRing == tailHTTP {
			c.httpRing = 0
		}
		return m
	}
	if n < cap(c.http) && n < headHTTP+tailHTTP {
		c.http = c.http[:n+1]
		return &c.http[n]
	}
	return nil
}

// growHTTP is freeHTTP when the slice is full: it moves to the next
// capacity class (two steps, 4 then the bound: most connections hold one
// or two messages).
func (c *Conn) growHTTP(st *storage) *HTTPMsg {
	n := len(c.http)
	c.http = st.growHTTP(c.http)[:n+1]
	return &c.http[n]
}

// interner makes strings of repeated byte sequences (request targets,
// reason phrases) without allocating each time: map lookups with a
// string(b) key do not allocate. It is bounded. Two small direct-mapped
// caches in front of the map answer the common case (the same few targets
// and reasons again and again): one for sequences of up to 7 bytes keyed
// by the bytes as one word (a multiply to hash, two compares to hit: a
// third of the instructions of a compare of the bytes), and one that
// compares the bytes, for longer ones.
type interner struct {
	m     map[string]string
	short [64]shortString
	cache [64]string
}

// shortString is a string of 1 to 7 bytes and its key (shortKeyOf).
type shortString struct {
	key uint64
	s   string
}

// shortKeyOf returns the key in the short cache of the n (1 to 7, else
// the key is 0: none) bytes that follow the first byte of the
// little-endian word x: those bytes in the high end of a word, and the low
// bit set, as no key is 0.
func shortKeyOf(x uint64, n int) uint64 {
	if n > 7 {
		return 0
	}
	return x>>8<<((64-8*uint(n))&63) | 1
}

// shortSlot is the slot of key in the short cache.
func shortSlot(key uint64) uint64 { return key * 0x9e3779b97f4a7c15 >> 58 }

// cached returns the string of key, of n bytes, if the short cache holds
// it, else "".
func (in *interner) cached(key uint64, n int) string {
	if e := &in.short[shortSlot(key)]; e.key == key && len(e.s) == n {
		return e.s
	}
	return ""
}

// at returns p[i:j] (0 < i < j <= len(p)) as a string, and puts it in
// the short cache if it is short and p holds the word from i-1.
func (in *interner) at(p []byte, i, j int) string {
	s := in.str(p[i:j])
	if i+7 <= len(p) {
		if key := shortKeyOf(binary.LittleEndian.Uint64(p[i-1:i+7]), j-i); key != 0 {
			in.short[shortSlot(key)] = shortString{key, s}
		}
	}
	return s
}

// str returns b as a string.
func (in *interner) str(b []byte) string {
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

// parseHeaders picks Content-Length, Connection: close and Keep-Alive:
// timeout= from p[i:], the captured header block of m after its first
// line, and returns how many body bytes follow the headers in it (0 if the
// headers are not complete). A line ends at '\n', less one '\r' before it;
// its first byte tells the empty line that ends the headers and the lines
// that may be one of the three (starting with c or k) from the rest.
func parseHeaders(m *HTTPMsg, p []byte, i int) int64 {
	for i < len(p) {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 { // the last line, cut short
			if line := p[i:lineEnd(p, -1)]; len(line) > 0 && (line[0]|0x20 == 'c' || line[0]|0x20 == 'k') {
				header(m, line)
			}
			return 0
		}
		switch b := p[i]; {
		case j == 0 || j == 1 && b == '\r': // the empty line
			return int64(len(p) - i - j - 1) // the rest is body
		case b|0x20 == 'c' || b|0x20 == 'k':
			header(m, p[i:lineEnd(p, i+j)])
		}
		i += j + 1
	}
	return 0
}

// header notes line, a header line starting with c or k (any case), if it
// is one parseHeaders looks for.
func header(m *HTTPMsg, line []byte) {
	colon := bytes.IndexByte(line, ':')
	if colon != 14 && colon != 10 { // none of the three below
		return
	}
	name := line[:colon]
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
		if containsFold(val, "close") {
			m.Close = true
		}
	case bytes.EqualFold(name, []byte("Keep-Alive")):
		if j := indexFold(val, "timeout="); j >= 0 {
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

// indexFold is a case-insensitive bytes.Index for an ASCII lower-case needle.
func indexFold(h []byte, needle string) int {
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

func containsFold(h []byte, needle string) bool { return indexFold(h, needle) >= 0 }
