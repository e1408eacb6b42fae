package watch

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/rstscope/rstscope/internal/decode"
	"github.com/rstscope/rstscope/internal/diagnose"
	"github.com/rstscope/rstscope/internal/pcapio"
	"github.com/rstscope/rstscope/internal/source"
)

// save writes the flight recorder's evidence for inc to a pcapng in
// SaveDir: every recorded packet of the incident's connection(s), and every
// packet to or from the same server endpoint (ip:port) captured from
// SaveBefore before the deciding packet to the end of the connection (the
// other connections to that server: what the pool, the proxy or the other
// clients were doing), with the kernel's reasons as packet comments.
// Limiting the context to the server endpoint keeps the files small on a busy
// host; the recorder's size bounds them in any case. `rstscope
// analyze` on the file reports the same cause. The file appears under its
// final name only once complete (written as .part, then renamed).
func (w *Watcher) save(inc *diagnose.Incident) (string, error) {
	now := time.Now()
	spm := float64(w.cfg.SavesPerMinute)
	if !w.saveLast.IsZero() {
		w.saveTok = min(spm, w.saveTok+now.Sub(w.saveLast).Minutes()*spm)
	}
	w.saveLast = now
	if w.saveTok < 1 {
		w.stats.SaveSkipped++
		if m := w.cfg.Metrics; m != nil {
			m.captures.With("skipped").Inc()
		}
		return "", ErrSaveSkipped
	}
	w.saveTok--
	name, err := w.writeEvidence(inc)
	if m := w.cfg.Metrics; m != nil {
		if err != nil {
			m.captures.With("error").Inc()
		} else {
			m.captures.With("saved").Inc()
		}
	}
	if err == nil {
		w.stats.Saved++
	}
	return name, err
}

// span is one connection of an incident: its packets are kept from its
// first packet to its last.
type span struct {
	k        flowKey
	from, to int64
}

func (w *Watcher) writeEvidence(inc *diagnose.Incident) (string, error) {
	if err := ensureDir(w.cfg.SaveDir); err != nil {
		return "", err
	}
	var spans []span
	var servers []netip.AddrPort
	winFrom, winTo := inc.Time-int64(w.cfg.SaveBefore), inc.Time
	minFrom := winFrom
	for _, s := range append([]*diagnose.Snapshot{inc.Conn}, inc.RelatedConns...) {
		if s == nil {
			continue
		}
		a, err1 := netip.ParseAddrPort(s.Client)
		b, err2 := netip.ParseAddrPort(s.Server)
		if err1 != nil || err2 != nil {
			continue
		}
		servers = append(servers, b)
		sp := span{makeKey(a, b), s.Start, s.Start + s.Duration}
		spans = append(spans, sp)
		minFrom = min(minFrom, sp.from)
		winTo = max(winTo, sp.to)
	}
	uid := "none"
	if inc.Conn != nil {
		uid = inc.Conn.UID
	}
	name := filepath.Join(w.cfg.SaveDir, fmt.Sprintf("rstscope-%s-%04d-%s-%s.pcapng", w.runStamp, w.nInc, inc.Cause, uid))
	tmp := name + ".part"
	file, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return "", err
	}
	fail := func(err error) (string, error) {
		file.Close()
		os.Remove(tmp)
		return "", err
	}
	ng, err := pcapio.NewNgWriter(file)
	if err != nil {
		return fail(err)
	}
	snap := w.cfg.SnapLen
	if snap <= 0 {
		snap = 262144
	}
	iface, err := ng.AddInterface(w.linkType, snap, w.cfg.Interface)
	if err != nil {
		return fail(err)
	}
	var f source.Frame
	var p decode.Parsed
	c := w.rec.begin()
	for {
		seq, ok := w.rec.nextRecord(&c, &f, w.linkType)
		if !ok || seq >= w.nextFeed {
			break // later packets were not analysed yet: not part of it
		}
		if f.Timestamp < minFrom || f.Timestamp > winTo {
			continue
		}
		p.Decode(f.LinkType, f.Data)
		if p.Status != decode.OK {
			continue
		}
		k := keyOf(&p)
		keep := false
		if f.Timestamp >= winFrom {
			for _, sv := range servers {
				if k.a == sv || k.b == sv {
					keep = true
					break
				}
			}
		}
		for _, s := range spans {
			if !keep && k == s.k && f.Timestamp >= s.from && f.Timestamp <= s.to {
				keep = true
			}
		}
		if keep {
			if err := ng.WritePacket(iface, &f); err != nil {
				return fail(err)
			}
		}
	}
	if err := ng.Flush(); err != nil {
		return fail(err)
	}
	if err := file.Close(); err != nil {
		os.Remove(tmp)
		return "", err
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return name, nil
}

// flowKey names a connection regardless of direction.
type flowKey struct{ a, b netip.AddrPort }

func makeKey(a, b netip.AddrPort) flowKey {
	if b.Compare(a) < 0 {
		a, b = b, a
	}
	return flowKey{a, b}
}

func keyOf(p *decode.Parsed) flowKey {
	return makeKey(netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort))
}
