package ktrace

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// field is one field of a tracepoint record, as its format file describes it.
type field struct {
	offset, size int
	signed       bool
}

// eventFormat is a parsed tracefs `format` file (events/SYSTEM/NAME/format,
// or events/header_page). Field layouts differ between kernel versions and
// builds, so they are always read at run time, never hard-coded.
type eventFormat struct {
	name     string
	id       uint16
	fields   map[string]field
	printFmt string
}

// parseFormat parses the text of a tracefs format file. Lines it does not
// understand are ignored, so new keys in later kernels do not break it.
func parseFormat(text string) (*eventFormat, error) {
	f := &eventFormat{fields: map[string]field{}}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "name:"):
			f.name = strings.TrimSpace(strings.TrimPrefix(line, "name:"))
		case strings.HasPrefix(line, "ID:"):
			id, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "ID:")), 10, 16)
			if err != nil {
				return nil, fmt.Errorf("format: bad ID line %q", line)
			}
			f.id = uint16(id)
		case strings.HasPrefix(line, "print fmt:"):
			f.printFmt = strings.TrimSpace(strings.TrimPrefix(line, "print fmt:"))
		case strings.HasPrefix(line, "field:"):
			name, fl, err := parseFieldLine(line)
			if err != nil {
				return nil, err
			}
			if _, dup := f.fields[name]; !dup { // header_page overlays "overwrite" on "commit": keep the first
				f.fields[name] = fl
			}
		}
	}
	if len(f.fields) == 0 {
		return nil, fmt.Errorf("format: no fields")
	}
	return f, nil
}

// parseFieldLine parses "field:TYPE NAME[N];	offset:O;	size:S;	signed:B;".
func parseFieldLine(line string) (string, field, error) {
	var fl field
	var name string
	for _, part := range strings.Split(line, ";") {
		part = strings.TrimSpace(part)
		key, val, ok := strings.Cut(part, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var err error
		switch key {
		case "field":
			toks := strings.Fields(val)
			if len(toks) == 0 {
				return "", fl, fmt.Errorf("format: empty field declaration in %q", line)
			}
			name = strings.TrimLeft(toks[len(toks)-1], "*")
			if i := strings.IndexByte(name, '['); i >= 0 {
				name = name[:i]
			}
		case "offset":
			fl.offset, err = strconv.Atoi(val)
		case "size":
			fl.size, err = strconv.Atoi(val)
		case "signed":
			fl.signed = val == "1"
		}
		if err != nil {
			return "", fl, fmt.Errorf("format: bad %s in %q", key, line)
		}
	}
	if name == "" || fl.size <= 0 || fl.offset < 0 {
		return "", fl, fmt.Errorf("format: bad field line %q", line)
	}
	return name, fl, nil
}

// size is the record length the fields imply: the end of the last field.
func (f *eventFormat) size() int {
	n := 0
	for _, fl := range f.fields {
		n = max(n, fl.offset+fl.size)
	}
	return n
}

// bytes returns the field's bytes in rec, or nil if rec is too short.
func (fl field) bytes(rec []byte) []byte {
	if fl.size <= 0 || fl.offset < 0 || fl.offset+fl.size > len(rec) {
		return nil
	}
	return rec[fl.offset : fl.offset+fl.size]
}

// uint reads an integer field of size 1, 2, 4 or 8 in host byte order (the
// kernel writes records in its own byte order). ok is false if the field does
// not fit in rec or has another size.
func (fl field) uint(rec []byte) (v uint64, ok bool) {
	b := fl.bytes(rec)
	switch len(b) {
	case 1:
		return uint64(b[0]), true
	case 2:
		return uint64(binary.NativeEndian.Uint16(b)), true
	case 4:
		return uint64(binary.NativeEndian.Uint32(b)), true
	case 8:
		return binary.NativeEndian.Uint64(b), true
	}
	return 0, false
}

// int reads an integer field, sign-extending it if the format says signed.
func (fl field) int(rec []byte) (int64, bool) {
	v, ok := fl.uint(rec)
	if !ok {
		return 0, false
	}
	if fl.signed && fl.size < 8 {
		shift := 64 - 8*uint(fl.size)
		return int64(v<<shift) >> shift, true
	}
	return int64(v), true
}

// tcpStates maps the symbols of include/net/tcp_states.h to their values.
// Format files often print `{ TCP_ESTABLISHED, "TCP_ESTABLISHED" }` without
// resolving the enum to a number; these values are user-visible ABI (inet_diag,
// /proc/net/tcp) and have not changed since they were introduced.
var tcpStates = map[string]int64{
	"TCP_ESTABLISHED":    1,
	"TCP_SYN_SENT":       2,
	"TCP_SYN_RECV":       3,
	"TCP_FIN_WAIT1":      4,
	"TCP_FIN_WAIT2":      5,
	"TCP_TIME_WAIT":      6,
	"TCP_CLOSE":          7,
	"TCP_CLOSE_WAIT":     8,
	"TCP_LAST_ACK":       9,
	"TCP_LISTEN":         10,
	"TCP_CLOSING":        11,
	"TCP_NEW_SYN_RECV":   12,
	"TCP_BOUND_INACTIVE": 13,
}

// parseSymbolic extracts the value->name table of
// `__print_symbolic(REC->field, { V, "NAME" }, ...)` from a print fmt. Values
// are numbers or TCP state symbols (see tcpStates); entries whose value is
// another unresolved symbol are skipped.
func parseSymbolic(printFmt, fieldName string) (map[int64]string, error) {
	prefix := "__print_symbolic(REC->" + fieldName + ","
	i := strings.Index(printFmt, prefix)
	if i < 0 {
		return nil, fmt.Errorf("format: no __print_symbolic for %s", fieldName)
	}
	s := printFmt[i+len(prefix):]
	m := map[int64]string{}
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" || s[0] == ')' {
			break
		}
		if s[0] != '{' {
			return nil, fmt.Errorf("format: unexpected %.20q in symbolic table of %s", s, fieldName)
		}
		end := strings.IndexByte(s, '}')
		if end < 0 {
			return nil, fmt.Errorf("format: unterminated symbolic entry for %s", fieldName)
		}
		key, val, ok := strings.Cut(s[1:end], ",")
		s = s[end+1:]
		if !ok {
			continue
		}
		name, err := strconv.Unquote(strings.TrimSpace(val))
		if err != nil {
			continue
		}
		key = strings.TrimSpace(key)
		v, err := strconv.ParseInt(key, 0, 64)
		if err != nil {
			var known bool
			if v, known = tcpStates[key]; !known {
				continue
			}
		}
		m[v] = name
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("format: empty symbolic table for %s", fieldName)
	}
	return m, nil
}
