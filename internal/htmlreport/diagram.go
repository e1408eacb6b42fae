package htmlreport

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/rstscope/rstscope/internal/conntrack"
	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/human"
	"github.com/rstscope/rstscope/internal/report"
)

// Layout of a sequence diagram, in SVG user units (CSS pixels).
const (
	laneFirstX = 190 // x of the first lifeline; packet number and time sit left of it
	laneGap    = 380 // distance between lifelines: room for a 50-character label
	noteWidth  = 260 // room right of the last lifeline for packet comments
	headerH    = 52  // lane titles
	pktH       = 34  // a packet without an HTTP line
	pktHTTPH   = 48  // a packet with an HTTP line below its arrow
	gapH       = 26  // an idle-gap band
	foldH      = 24  // a "packets not shown" marker
	labelChars = 52  // longest arrow label drawn; longer ones are cut (full text in a tooltip)
	noteChars  = 36  // longest packet comment drawn
	maxRelated = 3   // related connections drawn beside the main one
)

// diagram is the SVG of one incident: lifelines and one row per drawn packet,
// idle gap or fold. Everything in it is either a number computed here or a
// string the template escapes.
type diagram struct {
	Width, Height int
	Label         string // accessible name of the drawing
	Lanes         []lane
	LifeTop       int
	Rows          []row
	Notes         []string // captions under the drawing (folding, packets not kept)
}

// lane is one lifeline: a host taking part in the drawn connections.
type lane struct {
	X    int
	Role string // client, server, proxy, upstream
	Addr string // ip:port (several when a proxy's lane serves two connections)
}

// row is one horizontal band of the drawing.
type row struct {
	Kind          string // "pkt", "gap" or "fold"
	Y, H          int    // band top and height
	MidY          int    // arrow (pkt) or text baseline (gap, fold)
	TextY         int    // pkt: baseline of the label above the arrow
	HTTPY         int    // pkt: baseline of the HTTP line below it
	X1, X2        int    // arrow tail and head
	LabelX        int    // centre of the arrow
	Head          string // arrowhead polygon points
	Class         string // CSS classes: syn, fin, rst, data, ack; mark when it proves the incident
	Num           string // "#12"
	Time          string // seconds since the first drawn packet
	Text          string // arrow label, or the gap/fold text
	TextFull      string // uncut label, for the tooltip
	HTTP          string // request or status line (cut)
	HTTPFull      string
	Note          string // packet comment (e.g. the kernel's reset reason), cut
	NoteFull      string
	NoteX         int
	Marked        bool
	Width         int // the band's width (for highlight rectangles)
	ConnUID       string
	ConnIsRelated bool
}

// item is one kept packet of one of the drawn connections, in merged order.
type item struct {
	s    *diagnose.Snapshot
	p    *conntrack.Pkt
	from int // lane indexes
	to   int
	keep bool
	conn int // 0 = the incident's connection, 1.. = related
}

// buildDiagram lays out the incident's connection, and beside it the related
// connections (a proxy's failed upstream leg), on one time axis: packets of
// all drawn connections are merged in time order so the upstream RST lines up
// with the 502 it caused. Long connections are folded to the first packets,
// the marked packets with their neighbours, and the last packets.
func buildDiagram(inc *diagnose.Incident, mark map[uint64]bool, maxLines int) diagram {
	conns := []*diagnose.Snapshot{inc.Conn}
	for i, rc := range inc.RelatedConns {
		if i == maxRelated {
			break
		}
		conns = append(conns, rc)
	}
	var d diagram
	// Lanes: the main connection's client and server; a related connection
	// opened from the main server's host (a proxy's upstream leg) shares the
	// server's lifeline.
	d.Lanes = append(d.Lanes, lane{Role: "client", Addr: inc.Conn.Client}, lane{Role: "server", Addr: inc.Conn.Server})
	connLanes := [][2]int{{0, 1}}
	for _, rc := range conns[1:] {
		var cl int
		if sameHost(rc.Client, inc.Conn.Server) {
			cl = 1
			d.Lanes[1].Role = "proxy"
			if !strings.Contains(d.Lanes[1].Addr, rc.Client) {
				d.Lanes[1].Addr += ", " + rc.Client
			}
		} else {
			// A proxy error's related connection is its upstream leg even
			// when the proxy opened it from another address (a second
			// interface; on loopback, 127.0.0.1 for a proxy on 127.0.0.5).
			role := "client"
			if inc.Kind == diagnose.KindHTTPError {
				role, d.Lanes[1].Role = "proxy", "proxy"
			}
			d.Lanes = append(d.Lanes, lane{Role: role, Addr: rc.Client})
			cl = len(d.Lanes) - 1
		}
		d.Lanes = append(d.Lanes, lane{Role: "upstream", Addr: rc.Server})
		if cl != 1 && inc.Kind != diagnose.KindHTTPError {
			d.Lanes[len(d.Lanes)-1].Role = "server"
		}
		connLanes = append(connLanes, [2]int{cl, len(d.Lanes) - 1})
	}
	for i := range d.Lanes {
		d.Lanes[i].X = laneFirstX + i*laneGap
	}
	lastX := d.Lanes[len(d.Lanes)-1].X
	d.Width = lastX + noteWidth

	// Collect and fold each connection's packets, then merge them by time.
	var items []item
	for ci, s := range conns {
		keep := report.FoldIndex(s.Packets, mark, maxLines)
		for i := range s.Packets {
			p := &s.Packets[i]
			it := item{s: s, p: p, keep: keep[i], conn: ci}
			if p.Dir == conntrack.FromClient {
				it.from, it.to = connLanes[ci][0], connLanes[ci][1]
			} else {
				it.from, it.to = connLanes[ci][1], connLanes[ci][0]
			}
			items = append(items, it)
		}
		if s.Dropped > 0 {
			d.Notes = append(d.Notes, fmt.Sprintf("%d packets of connection %s were not kept by the tracker; its first and last packets are drawn.", s.Dropped, s.UID))
		}
	}
	sort.SliceStable(items, func(i, j int) bool {
		if items[i].p.TS != items[j].p.TS {
			return items[i].p.TS < items[j].p.TS
		}
		return items[i].p.Num < items[j].p.Num
	})
	var t0, span int64
	if len(items) > 0 {
		t0 = items[0].p.TS
		span = items[len(items)-1].p.TS - t0
	}

	y := headerH
	hidden := 0
	flushFold := func() {
		if hidden == 0 {
			return
		}
		word := "packets"
		if hidden == 1 {
			word = "packet"
		}
		d.Rows = append(d.Rows, row{Kind: "fold", Y: y, H: foldH, MidY: y + 16, Width: d.Width,
			Text: fmt.Sprintf("… %d %s not shown …", hidden, word), LabelX: (laneFirstX + lastX) / 2})
		y += foldH
		hidden = 0
	}
	for i := range items {
		it := &items[i]
		if !it.keep {
			hidden++
			continue
		}
		flushFold()
		if i > 0 {
			gap := it.p.TS - items[i-1].p.TS
			if gap >= 1e9 || (gap >= 100e6 && gap*5 >= span) {
				d.Rows = append(d.Rows, row{Kind: "gap", Y: y, H: gapH, MidY: y + 17, Width: d.Width,
					Text: durText(gap) + " idle", LabelX: (laneFirstX + lastX) / 2})
				y += gapH
			}
		}
		r := packetRow(it, t0, d.Lanes, mark[it.p.Num])
		r.Y = y
		r.Width = d.Width
		r.MidY = y + 22
		r.TextY = r.MidY - 6
		r.HTTPY = r.MidY + 15
		r.H = pktH
		if r.HTTP != "" {
			r.H = pktHTTPH
		}
		r.Head = arrowHead(r.X1, r.X2, r.MidY)
		r.NoteX = lastX + 12
		d.Rows = append(d.Rows, r)
		y += r.H
	}
	flushFold()
	d.LifeTop = headerH - 8
	d.Height = y + 12
	d.Label = fmt.Sprintf("Sequence diagram of connection %s, %s to %s", inc.Conn.UID, inc.Conn.Client, inc.Conn.Server)
	return d
}

// packetRow labels one packet as tcpdump would: flags, relative seq/ack,
// length, and the window on SYN and RST (a reply RST has window 0).
func packetRow(it *item, t0 int64, lanes []lane, marked bool) row {
	p, s := it.p, it.s
	seq, ack := s.RelSeq(p)
	label := fmt.Sprintf("%s seq %d", p.Flags, seq)
	if p.Flags&decode.ACK != 0 {
		label += fmt.Sprintf(" ack %d", ack)
	}
	if p.Len > 0 {
		label += fmt.Sprintf(" len %d", p.Len)
	}
	if p.Flags&(decode.RST|decode.SYN) != 0 {
		label += fmt.Sprintf(" win %d", p.Win)
	}
	r := row{Kind: "pkt", X1: lanes[it.from].X, X2: lanes[it.to].X, Marked: marked,
		Num: fmt.Sprintf("#%d", p.Num), Time: fmt.Sprintf("%.6f", float64(p.TS-t0)/1e9),
		ConnUID: s.UID, ConnIsRelated: it.conn > 0}
	r.LabelX = (r.X1 + r.X2) / 2
	r.Text, r.TextFull = cut(label, labelChars)
	if p.HTTP >= 0 && int(p.HTTP) < len(s.HTTP) {
		m := s.HTTP[p.HTTP]
		h := fmt.Sprintf("HTTP %d %s", m.Status, m.Reason)
		if m.Method != "" {
			h = m.Method + " " + m.Target
		}
		r.HTTP, r.HTTPFull = cut(h, labelChars)
	}
	if p.Note >= 0 && int(p.Note) < len(s.Notes) {
		r.Note, r.NoteFull = cut(s.Notes[p.Note].Text, noteChars)
	}
	var cls []string
	switch {
	case p.Flags&decode.RST != 0:
		cls = append(cls, "rst")
	case p.Flags&decode.SYN != 0:
		cls = append(cls, "syn")
	case p.Flags&decode.FIN != 0:
		cls = append(cls, "fin")
	case p.Len > 0:
		cls = append(cls, "data")
	default:
		cls = append(cls, "ack")
	}
	if marked {
		cls = append(cls, "mark")
	}
	if it.conn > 0 {
		cls = append(cls, "related")
	}
	r.Class = strings.Join(cls, " ")
	return r
}

// arrowHead returns the points of a triangle at x2 pointing away from x1.
func arrowHead(x1, x2, y int) string {
	dir := 1
	if x2 < x1 {
		dir = -1
	}
	return fmt.Sprintf("%d,%d %d,%d %d,%d", x2, y, x2-dir*9, y-4, x2-dir*9, y+4)
}

// cut shortens s to at most n runes (ending with "…"), and returns the
// original too for a tooltip ("" when nothing was cut). Control characters
// become U+FFFD so a capture cannot break the page's layout with them.
func cut(s string, n int) (short, full string) {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '\uFFFD'
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if utf8.RuneCountInString(s) <= n {
		return s, ""
	}
	i := 0
	for k := range s {
		if i == n-1 {
			return s[:k] + "…", s
		}
		i++
	}
	return s, ""
}

// sameHost reports whether two ip:port strings name the same IP address.
func sameHost(a, b string) bool {
	x, err1 := netip.ParseAddrPort(a)
	y, err2 := netip.ParseAddrPort(b)
	return err1 == nil && err2 == nil && x.Addr() == y.Addr()
}

// durText writes a duration in ns briefly: 6.0 s, 250 ms, 40 µs.
func durText(ns int64) string { return human.Duration(ns) }
