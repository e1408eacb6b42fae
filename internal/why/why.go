// Package why maps an error message - a Java exception, a Go, Node or Python
// error, a curl exit, an nginx or Envoy log line, or a whole stack trace - to
// the reset causes in the catalogue (internal/cause) that usually produce it,
// ranked, each with a sentence on why it fits. It also says how to confirm:
// the tcpdump command and where to run it, and which rstscope command to run
// next. It is for people who have an error and no capture yet.
//
// Messages are recognised by the table in rules.go; causes are referred to by
// ID only, so explanations and advice stay in the catalogue.
package why

import (
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/rstscope/rstscope/internal/cause"
)

// MaxInput bounds how much text is examined (a long stack trace fits).
const MaxInput = 1 << 20

// Report is the answer for one message.
type Report struct {
	Recognised []Recognised `json:"recognised"` // empty: nothing in the text was recognised
	Causes     []Candidate  `json:"causes"`     // most likely first
	Target     *Target      `json:"target,omitempty"`
	Capture    Capture      `json:"capture"`
	Next       []Step       `json:"next"`
}

// Recognised is one rule that matched, with the line it matched in.
type Recognised struct {
	Name    string `json:"name"`
	Excerpt string `json:"excerpt"` // from the user's text: untrusted, clean before printing
}

// Candidate is one likely cause.
type Candidate struct {
	ID    cause.ID `json:"id"`
	Title string   `json:"title"`
	Score int      `json:"score"`
	Why   string   `json:"why"` // why this cause fits the message
	Fix   string   `json:"fix"` // the catalogue's first advice
}

// Target is the peer the message names, when it names one.
type Target struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	URL      string `json:"url,omitempty"` // scheme://host[:port]/ when the text had a URL
	Upstream bool   `json:"upstream"`      // the proxy's upstream, from a proxy log line
}

// HostPort is the target as HOST:PORT.
func (t *Target) HostPort() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// Capture is the tcpdump command that would confirm the diagnosis.
type Capture struct {
	Command string `json:"command"`
	Where   string `json:"where"`
}

// Step is an rstscope command to run next.
type Step struct {
	Command string `json:"command"`
	Why     string `json:"why"`
}

// Analyze recognises text and ranks the causes.
func Analyze(text string) *Report {
	if len(text) > MaxInput {
		text = text[:MaxInput]
	}
	rep := &Report{}
	type hit struct {
		rule *Rule
		loc  []int
	}
	var hits []hit
	superseded := map[string]bool{}
	for i := range Rules {
		r := &Rules[i]
		if loc := r.Pattern.FindStringIndex(text); loc != nil {
			hits = append(hits, hit{r, loc})
			for _, s := range r.Supersedes {
				superseded[s] = true
			}
		}
	}
	scores := map[cause.ID]*Candidate{}
	best := map[cause.ID]int{} // weight of the rule that gave Why
	proxy := false
	for _, h := range hits {
		if superseded[h.rule.Name] {
			continue
		}
		proxy = proxy || h.rule.Proxy
		rep.Recognised = append(rep.Recognised, Recognised{Name: h.rule.Name, Excerpt: lineAround(text, h.loc)})
		for _, w := range h.rule.Causes {
			c := scores[w.ID]
			if c == nil {
				c = &Candidate{ID: w.ID}
				if e := cause.Lookup(w.ID); e != nil {
					c.Title = e.Title
					if len(e.Advice) > 0 {
						c.Fix = e.Advice[0]
					}
				}
				scores[w.ID] = c
			}
			c.Score += w.Weight
			if w.Weight > best[w.ID] {
				best[w.ID], c.Why = w.Weight, w.Fit
			}
		}
	}
	order := map[cause.ID]int{}
	for i, c := range cause.Catalogue {
		order[c.ID] = i
	}
	for _, c := range scores {
		rep.Causes = append(rep.Causes, *c)
	}
	sort.Slice(rep.Causes, func(i, j int) bool {
		a, b := rep.Causes[i], rep.Causes[j]
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		return order[a.ID] < order[b.ID]
	})
	rep.Target = FindTarget(text)
	rep.Capture = captureFor(rep, proxy)
	rep.Next = nextSteps(rep)
	return rep
}

// Top returns the most likely cause, or "" when nothing was recognised.
func (r *Report) Top() cause.ID {
	if len(r.Causes) == 0 {
		return ""
	}
	return r.Causes[0].ID
}

// lineAround returns the line that holds loc, trimmed to 200 bytes.
func lineAround(text string, loc []int) string {
	start := strings.LastIndexByte(text[:loc[0]], '\n') + 1
	end := len(text)
	if i := strings.IndexByte(text[loc[1]:], '\n'); i >= 0 {
		end = loc[1] + i
	}
	line := strings.TrimSpace(text[start:end])
	if len(line) > 200 {
		// Keep the match in view.
		from := max(0, loc[0]-start-60)
		line = strings.TrimSpace(text[start+from : min(end, start+from+200)])
		if from > 0 {
			line = "..." + line
		}
		line += "..."
	}
	return strings.ToValidUTF8(line, "\uFFFD")
}

// targetPatterns find the peer in a message, most specific first. Group 1 is
// the host, group 2 the port; a pattern with a scheme group names it "s".
var targetPatterns = []struct {
	re       *regexp.Regexp
	upstream bool
}{
	{re(`upstream: "(?P<s>https?)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+)(?::(\d+))?`), true},
	{re(`(?P<s>https?)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+)(?::(\d+))?`), false},
	{re(`dial tcp (\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+):(\d+)`), false},
	{re(`->(\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d+)`), false},
	{re(`Connection\{([A-Za-z0-9.\-]+):(\d+)`), false},
	{re(`Failed to connect to [^\s/]*/([0-9a-fA-F.:]+):(\d+)`), false},
	{re(`Failed to connect to ([A-Za-z0-9.\-:]+) port (\d+)`), false},
	{re(`ECONN(?:REFUSED|RESET) ([0-9a-fA-F.:]+?):(\d+)\b`), false},
	{re(`host='([A-Za-z0-9.\-:]+)', port=(\d+)`), false},
	{re(`\b(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})\b`), false},
}

// FindTarget extracts the host and port a message talks about, or nil. Only
// plain host names and IP addresses are accepted: the result goes into shell
// commands the user will paste.
func FindTarget(text string) *Target {
	for _, p := range targetPatterns {
		m := p.re.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		scheme := ""
		g := m[1:]
		if p.re.SubexpNames()[1] == "s" {
			scheme, g = m[1], m[2:]
		}
		host := strings.Trim(g[0], "[]")
		port := 0
		if len(g) > 1 && g[1] != "" {
			port, _ = strconv.Atoi(g[1])
		} else if scheme == "https" {
			port = 443
		} else if scheme == "http" {
			port = 80
		}
		if !safeHost(host) || port <= 0 || port > 65535 {
			continue
		}
		t := &Target{Host: host, Port: port, Upstream: p.upstream}
		if scheme != "" {
			t.URL = scheme + "://" + t.HostPort() + "/"
			if (scheme == "http" && port == 80) || (scheme == "https" && port == 443) {
				t.URL = scheme + "://" + bracket(host) + "/"
			}
		}
		return t
	}
	return nil
}

var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9\-]{0,62})(\.[A-Za-z0-9\-]{1,63})*\.?$`)

func safeHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return len(h) <= 253 && hostName.MatchString(h)
}

func bracket(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

// inTop reports whether id is among the first n causes.
func (r *Report) inTop(n int, ids ...cause.ID) bool {
	for i, c := range r.Causes {
		if i >= n {
			break
		}
		for _, id := range ids {
			if c.ID == id {
				return true
			}
		}
	}
	return false
}

// captureFor builds the tcpdump command and says where to run it.
func captureFor(r *Report, proxy bool) Capture {
	filter := "tcp port PORT and host HOST"
	if t := r.Target; t != nil {
		filter = "tcp port " + strconv.Itoa(t.Port) + " and host " + t.Host
	}
	c := Capture{Command: "sudo tcpdump -i any -nn -s 0 -w rst.pcap '" + filter + "'"}
	switch {
	case proxy:
		c.Where = "On the proxy host (nginx, Envoy): `-i any` records both the client leg and the upstream leg; " +
			"the filter is the upstream's address. Leave it running until the error is logged again."
	case r.inTop(1, cause.Refused, cause.UnansweredSYN):
		c.Where = "On the client. Run the same capture on the server: if the SYN reaches the client's capture but not the server's, " +
			"a firewall in between answered it (RST) or dropped it."
	case r.inTop(1, cause.StaleKeepalive, cause.KeepaliveRace):
		c.Where = "On the client (the host whose pool reuses connections). Keep it running across an idle period longer than the server's " +
			"idle timeout, so the server's FIN and the later request are both in it."
	default:
		c.Where = "On the client and on the server at the same time: the side whose capture shows the RST leaving sent it; " +
			"if neither did, a middlebox forged it."
	}
	if r.Target == nil {
		c.Where += " Replace HOST and PORT with the server's address."
	}
	return c
}

// nextSteps suggests rstscope commands, most useful first.
func nextSteps(r *Report) []Step {
	hp, url := "HOST:PORT", "URL"
	if t := r.Target; t != nil {
		hp = t.HostPort()
		url = t.URL
		if url == "" {
			url = "http://" + hp + "/"
		}
	}
	var out []Step
	if len(r.Causes) == 0 {
		return []Step{
			{"rstscope analyze rst.pcap", "capture while the error happens (see above) and let rstscope explain every reset in it"},
			{"rstscope probe " + hp, "check whether anything answers on the server's address and port"},
			{"rstscope keepalive " + url, "if the error comes from an HTTP client reusing connections: measure the server's idle timeout"},
		}
	}
	if r.inTop(3, cause.Refused, cause.UnansweredSYN) || r.inTop(1, cause.UpstreamFailure) {
		why := "see whether anything listens there, and who (when it is this machine)"
		if r.Target != nil && r.Target.Upstream {
			why = "run on the proxy host: does the upstream answer?"
		}
		out = append(out, Step{"rstscope probe " + hp, why})
	}
	if r.inTop(3, cause.StaleKeepalive, cause.KeepaliveRace) {
		out = append(out, Step{"rstscope keepalive " + url, "measure how long the server keeps idle connections, and get the pool setting to use"})
	}
	out = append(out, Step{"rstscope analyze rst.pcap", "explain every reset in the capture"})
	out = append(out, Step{"rstscope lab " + string(r.Causes[0].ID), "watch this cause happen on loopback, explained"})
	return out
}
