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
	wordHTTP1   = 'H' | 'T'<<8 | 'T'<<16 | 'P'<<24 | '/'<<32 | '1'<<40 | '.'<<48            // "HTTP/1." (7 bytes)
	wordVersion = ' ' | 'H'<<8 | 'T'<<16 | 'T'<<24 | 'P'<<32 | '/'<<40 | '1'<<48 | '.'<<56  // " HTTP/1."
	wordGET     = 'G' | 'E'<<8 | 'T'<<16 | ' '<<24                                          // "GET " (4 bytes)
	wordHTTP11  = wordHTTP1 | '1'<<56                                                       // "HTTP/1.1"
	word200OK   = ' ' | '2'<<8 | '0'<<16 | '0'<<24 | ' '<<32 | 'O'<<40 | 'K'<<48 | '\r'<<56 // " 200 OK\r"
	keyOK       = 'O'<<48 | 'K'<<56 | 1                                                     // shortKeyOf of "OK"
)

// sniffHTTP records an HTTP message starting in payload, if one does. The
// message is parsed before it is given a slot and written there in place:
// a message is 120 bytes, and copying it twice per segment was measurable.
//
// The common first lines are parsed by quickFirstLine, the others by
// parseFirstLine, and the headers by parseHeaders; the string of a short
// target or reason is found by the word the line was read with (interner).
// On the bench capture (nginx's "200 OK" with its headers cut by the
// snaplen, and wrk's GETs) this took the sniffer from about 395
// instructions a call to about 220.
func (c *Conn) sniffHTTP(dir Dir, payload []byte, num uint64, ts int64, idle int64, st *storage) {
	status, method, nl, from, to, key, headers, ok := quickFirstLine(payload)
	if !ok {
		if to == 0 {
			status, method, nl, from, to, key, headers = parseFirstLine(payload)
		}
		if to < 0 {
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
	if key == keyOK && to-from == 2 { // nearly every response's reason: no lookup
		text = "OK"
	} else if key != 0 {
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

// quickFirstLine is parseFirstLine for the common lines, without a call;
// for the others ok is false, and to -1 if payload holds no first line or
// 0 if parseFirstLine is to tell: a status line whose '\n' is within the 16
// bytes from the space before the reason phrase, and a GET whose '\n' is
// within the 16 bytes from the space before the target and whose version
// ends the line.
func quickFirstLine(p []byte) (status int, method string, nl, from, to int, key uint64, headers, ok bool) {
	if len(p) < 28 {
		if len(p) < 12 {
			to = -1
		}
		return
	}
	q := (*[28]byte)(p) // indexes below 28 need no checks
	w := binary.LittleEndian.Uint64(q[:8])
	if b := byte(w); b < 'C' || b > 'T' {
		// A body segment, the most common kind in a download, goes no
		// further.
		return 0, "", 0, 0, -1, 0, false, false
	}
	if uint32(w) == wordGET {
		x := binary.LittleEndian.Uint64(q[3:11])
		if z := lfBits(x); z != 0 {
			nl = 3 + bits.TrailingZeros64(z)>>3
		} else if z := lfBits(binary.LittleEndian.Uint64(q[11:19])); z != 0 {
			nl = 11 + bits.TrailingZeros64(z)>>3
		} else {
			return
		}
		end := nl
		if q[end-1] == '\r' {
			end--
		}
		if v := end - 9; v >= 4 && binary.LittleEndian.Uint64(q[v:v+8]) == wordVersion {
			if to = v; to > 4 {
				key = shortKeyOf(x, to-4)
			}
			return 0, "GET", nl, 4, to, key, false, true
		}
		return
	}
	if w == wordHTTP11 && binary.LittleEndian.Uint64(q[8:16]) == word200OK && q[16] == '\n' {
		// The status line of most responses, in 3 compares (a tenth of
		// the instructions of the general case).
		return 200, "", 16, 13, 15, keyOK, true, true
	}
	if w&(1<<56-1) != wordHTTP1 {
		return
	}
	d0, d1, d2 := q[9]-'0', q[10]-'0', q[11]-'0'
	if w>>56 == '\n' || q[8] != ' ' || d0 > 9 || d1 > 9 || d2 > 9 {
		return
	}
	x := binary.LittleEndian.Uint64(q[12:20])
	if z := lfBits(x); z != 0 {
		nl = 12 + bits.TrailingZeros64(z)>>3
	} else if z := lfBits(binary.LittleEndian.Uint64(q[20:28])); z != 0 {
		nl = 20 + bits.TrailingZeros64(z)>>3
	} else {
		return
	}
	end := nl
	if q[end-1] == '\r' {
		end--
	}
	if to = end; to > 13 {
		key = shortKeyOf(x, to-13)
	}
	return int(d0)*100 + int(d1)*10 + int(d2), "", nl, 13, to, key, true, true
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
		if z := lfBits(x); z != 0 {
			nl = rest + bits.TrailingZeros64(z)>>3
		} else if z := lfBits(binary.LittleEndian.Uint64(payload[rest+8 : rest+16])); z != 0 {
			nl = rest + 8 + bits.TrailingZeros64(z)>>3
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
	if payload[end-1] == '\r' { // end > 0: the '\n' is past the method's space or the status
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

// lfBits marks, in bit 7 of its byte, the first '\n' of the 8 bytes of
// the little-endian x (and maybe some bytes above it): after an XOR with
// "\n\n\n\n\n\n\n\n" the newlines are the zero bytes, and
// (x - 0x01..01) &^ x & 0x80..80 marks the lowest zero byte exactly.
func lfBits(x uint64) uint64 {
	const ones, highs, lfs = 0x0101010101010101, 0x8080808080808080, 0x0a0a0a0a0a0a0a0a
	x ^= lfs
	return (x - ones) &^ x & highs
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
//
// Up to the first of those, the block is read 8 bytes at a time, each
// word's newlines found at once, without a call (a call anywhere in the
// loop had its values saved to the stack in every round); the rest is left
// to parseHeadersFrom, which calls bytes.IndexByte for each line. On the
// bench capture's responses (Server, and Date cut by the snaplen) this
// takes 151 instructions where parseHeadersFrom takes 170; two words a
// round took 164. p must be the whole payload, which holds 8 bytes or
// more, so that fewer than 8 at its end can be read as its last word
// shifted down (the zero bytes shifted in are no newlines).
func parseHeaders(m *HTTPMsg, p []byte, i int) int64 {
	if len(p) < 8 || i >= len(p) || lineStarts[p[i]] {
		return parseHeadersFrom(m, p, i)
	}
	lfs, low7, highs := lfMaskWords[0], lfMaskWords[1], lfMaskWords[2]
	j := uint(i) + 1
	for ; j+8 <= uint(len(p)); j += 8 {
		x := binary.LittleEndian.Uint64(p[j:j+8]) ^ lfs
		// Bit 7 of each byte of z is set if that byte of x is 0 (a '\n').
		if z := ^((x&low7 + low7) | x) & highs; z != 0 {
			if next := nextLine(p, j, z); next >= 0 {
				return parseHeadersFrom(m, p, next)
			}
		}
	}
	if j < uint(len(p)) {
		x := binary.LittleEndian.Uint64(p[len(p)-8:])>>((j+8-uint(len(p)))*8&63) ^ lfs
		if z := ^((x&low7 + low7) | x) & highs; z != 0 {
			if next := nextLine(p, j, z); next >= 0 {
				return parseHeadersFrom(m, p, next)
			}
		}
	}
	return 0
}

// lineStarts are the first bytes of the header lines parseHeadersFrom
// must read: the three it looks for start with c or k, and the empty line
// with '\r' or '\n'.
var lineStarts = [256]bool{'c': true, 'C': true, 'k': true, 'K': true, '\r': true, '\n': true}

// nextLine returns the first of the lines after the newlines z marks in
// the word at j that parseHeadersFrom must read (lineStarts), -1 if none.
func nextLine(p []byte, j uint, z uint64) int {
	for ; z != 0; z &= z - 1 {
		if next := int(j) + bits.TrailingZeros64(z)>>3 + 1; next >= len(p) || lineStarts[p[next]] {
			return next
		}
	}
	return -1
}

// lfMaskWords are the constants of the newline search of parseHeaders, as
// variables: the compiler remakes a constant at each use (a MOVQ of 10
// bytes) but keeps a variable's value in a register.
var lfMaskWords = [3]uint64{0x0a0a0a0a0a0a0a0a, 0x7f7f7f7f7f7f7f7f, 0x8080808080808080}

// parseHeadersFrom is parseHeaders from the line at i, one line at a time.
func parseHeadersFrom(m *HTTPMsg, p []byte, i int) int64 {
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
// is one parseHeaders looks for: its name, the bytes before the first ':',
// is Content-Length, Connection or Keep-Alive in any case.
//
// The names are compared as words folded to lower case by an OR with
// 0x20 in each byte, which is exact for letters but also takes '\r' for
// '-', the one other byte in the names, so each '-' is compared as well.
// A name that matches holds no ':', so the first ':' is the one after it.
// bytes.EqualFold, for each c or k line, took about 120 instructions.
func header(m *HTTPMsg, line []byte) {
	const fold = 0x2020202020202020
	if len(line) > 10 && line[10] == ':' { // no name of 14 bytes then
		w0, w1 := binary.LittleEndian.Uint64(line[0:8])|fold, binary.LittleEndian.Uint64(line[2:10])|fold
		switch {
		case w0 == wordConnecti && w1 == wordNnection:
			if containsFold(trimSpace(line[11:]), "close") {
				m.Close = true
			}
		case w0 == wordKeepAli && w1 == wordEpAlive && line[4] == '-':
			val := trimSpace(line[11:])
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
		return
	}
	if len(line) > 14 && line[14] == ':' && binary.LittleEndian.Uint64(line[0:8])|fold == wordContent &&
		binary.LittleEndian.Uint64(line[6:14])|fold == wordTLength && line[7] == '-' {
		val := trimSpace(line[15:])
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
	}
}

// The header names header looks for, in lower case, as little-endian
// words: bytes 0-7 and 6-13 of content-length, 0-7 and 2-9 of connection
// and keep-alive.
const (
	wordContent  = 'c' | 'o'<<8 | 'n'<<16 | 't'<<24 | 'e'<<32 | 'n'<<40 | 't'<<48 | '-'<<56
	wordTLength  = 't' | '-'<<8 | 'l'<<16 | 'e'<<24 | 'n'<<32 | 'g'<<40 | 't'<<48 | 'h'<<56
	wordConnecti = 'c' | 'o'<<8 | 'n'<<16 | 'n'<<24 | 'e'<<32 | 'c'<<40 | 't'<<48 | 'i'<<56
	wordNnection = 'n' | 'n'<<8 | 'e'<<16 | 'c'<<24 | 't'<<32 | 'i'<<40 | 'o'<<48 | 'n'<<56
	wordKeepAli  = 'k' | 'e'<<8 | 'e'<<16 | 'p'<<24 | '-'<<32 | 'a'<<40 | 'l'<<48 | 'i'<<56
	wordEpAlive  = 'e' | 'p'<<8 | '-'<<16 | 'a'<<24 | 'l'<<32 | 'i'<<40 | 'v'<<48 | 'e'<<56
)

// trimSpace is bytes.TrimSpace, with the common case (ASCII white space
// or none around the value) done here: bytes.TrimSpace's call took about
// 35 instructions a value. What is left starting or ending with a byte
// past ASCII may still have Unicode white space at its ends, for
// bytes.TrimSpace to take.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && asciiSpace[b[0]] {
		b = b[1:]
	}
	for len(b) > 0 && asciiSpace[b[len(b)-1]] {
		b = b[:len(b)-1]
	}
	if len(b) > 0 && (b[0] >= 0x80 || b[len(b)-1] >= 0x80) {
		return bytes.TrimSpace(b)
	}
	return b
}

// asciiSpace are the ASCII bytes bytes.TrimSpace trims.
var asciiSpace = [256]bool{'\t': true, '\n': true, '\v': true, '\f': true, '\r': true, ' ': true}

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
