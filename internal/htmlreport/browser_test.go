package htmlreport

import (
	"bytes"
	"context"
	"flag"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests load the report in headless Chromium (Debian's chromium
// package; CI installs it). They are skipped where no Chromium is found.

var screenshotOut = flag.String("screenshot", "", "also save the scenario-3 screenshot to `FILE` (docs/img/report-stale-keepalive.png)")

func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("RSTSCOPE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("Chromium not found (apt-get install chromium, or set RSTSCOPE_CHROMIUM): browser tests skipped")
	return ""
}

// runChromium runs headless Chromium on a local file with the given extra
// flags and returns its standard output, bounded by a timeout.
func runChromium(t *testing.T, bin, file string, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--hide-scrollbars", "--user-data-dir=" + t.TempDir()}
	args = append(args, extra...)
	args = append(args, "file://"+file)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, tail(stderr.String(), 2000))
	}
	return stdout.Bytes()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func writePage(t *testing.T, name string, page []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, page, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// cspMeta is the page's Content-Security-Policy, which forbids scripts.
const cspMeta = `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">`

// measure is a probe for the test copy of the page only (the report itself
// has no script): on load it writes each diagram's rendered size, and the
// size of its RST arrow, into attributes that --dump-dom then shows.
const measure = `<script>
window.addEventListener('load', function () {
  var out = [];
  document.querySelectorAll('.diagram svg').forEach(function (svg) {
    var r = svg.getBoundingClientRect();
    var rst = svg.querySelector('g.rst line');
    var lb = rst ? rst.getBoundingClientRect() : {width: 0};
    var labels = 0;
    svg.querySelectorAll('text.label').forEach(function (t) { if (t.getBBox().width > 0) labels++; });
    out.push([Math.round(r.width), Math.round(r.height), Math.round(lb.width), labels].join(','));
  });
  document.body.setAttribute('data-measured', out.join(';'));
});
</script>`

// The report renders in a real browser: its diagram has a size, its RST
// arrow is drawn, its labels laid out; and a screenshot is not blank.
func TestBrowserRenders(t *testing.T) {
	bin := chromium(t)
	page := render(t, scenario3Data(t))
	if !bytes.Contains(page, []byte(cspMeta)) {
		t.Fatal("page lacks the expected CSP meta; update cspMeta")
	}
	// Test copy: without the CSP (which would block the probe), with the probe.
	probe := bytes.Replace(page, []byte(cspMeta), nil, 1)
	probe = bytes.Replace(probe, []byte("</body>"), []byte(measure+"</body>"), 1)
	dom := runChromium(t, bin, writePage(t, "probe.html", probe), "--virtual-time-budget=3000", "--dump-dom")
	m := regexp.MustCompile(`data-measured="([^"]*)"`).FindSubmatch(dom)
	if m == nil {
		t.Fatalf("the probe did not run; DOM:\n%s", tail(string(dom), 1500))
	}
	parts := strings.Split(string(m[1]), ",")
	if len(parts) != 4 {
		t.Fatalf("want one diagram measured, got %q", m[1])
	}
	n := make([]int, 4)
	for i, p := range parts {
		n[i], _ = strconv.Atoi(p)
	}
	t.Logf("diagram %dx%d, RST arrow %d px wide, %d labels laid out", n[0], n[1], n[2], n[3])
	if n[0] < 400 || n[1] < 300 {
		t.Errorf("diagram rendered %dx%d: too small", n[0], n[1])
	}
	if n[2] < 100 {
		t.Errorf("RST arrow rendered %d px wide", n[2])
	}
	if n[3] != 11 {
		t.Errorf("%d arrow labels laid out, want 11", n[3])
	}

	// The real page (with its CSP, no script), as a screenshot.
	shot := filepath.Join(t.TempDir(), "report.png")
	runChromium(t, bin, writePage(t, "report.html", page), "--window-size=1280,1800", "--screenshot="+shot)
	checkScreenshot(t, shot)
	if *screenshotOut != "" {
		b, err := os.ReadFile(shot)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(*screenshotOut, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkScreenshot decodes the PNG and checks that it shows something: the
// red of the RST arrow and a fair number of distinct colours.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	if b.Dx() < 800 || b.Dy() < 800 {
		t.Fatalf("screenshot %v", b)
	}
	colours := map[[3]uint32]bool{}
	red := 0
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
			if r>>8 > 170 && g>>8 < 80 && bl>>8 < 80 { // the RST colour, #c62828
				red++
			}
		}
	}
	t.Logf("screenshot %dx%d, %d colours, %d red samples", b.Dx(), b.Dy(), len(colours), red)
	if len(colours) < 20 {
		t.Errorf("screenshot has %d colours: blank page?", len(colours))
	}
	if red < 20 {
		t.Errorf("screenshot shows no red RST arrow (%d red samples)", red)
	}
}

// A capture whose HTTP path, reason phrase and packet comment hold script
// does not run it in a browser: the title stays the page's own and no
// injected element appears, with the page's CSP and (to prove the escaping
// alone suffices) without it.
func TestBrowserXSS(t *testing.T) {
	bin := chromium(t)
	page := render(t, xssData(t))
	for _, variant := range []struct {
		name string
		page []byte
	}{
		{"with-csp", page},
		{"without-csp", bytes.Replace(page, []byte(cspMeta), nil, 1)},
	} {
		t.Run(variant.name, func(t *testing.T) {
			if variant.name == "without-csp" && bytes.Contains(variant.page, []byte("Content-Security-Policy")) {
				t.Fatal("could not strip the CSP")
			}
			dom := string(runChromium(t, bin, writePage(t, "xss.html", variant.page), "--virtual-time-budget=3000", "--dump-dom"))
			title := regexp.MustCompile(`(?s)<title>(.*?)</title>`).FindStringSubmatch(dom)
			if title == nil {
				t.Fatalf("no title in DOM:\n%s", tail(dom, 1500))
			}
			if want := "rstscope report: &lt;script&gt;document.title='pwned6'&lt;/script&gt;.pcapng"; title[1] != want {
				t.Errorf("title %q, want %q", title[1], want)
			}
			low := strings.ToLower(dom)
			for _, bad := range []string{"<script", "<img"} {
				if strings.Contains(low, bad) {
					i := strings.Index(low, bad)
					t.Errorf("DOM holds an injected %s element: %s", bad, dom[max(0, i-100):min(len(dom), i+200)])
				}
			}
			if !strings.Contains(dom, "GET /&lt;script&gt;document.title='pwned'&lt;/script&gt;") {
				t.Errorf("the payload is not shown as text in the diagram")
			}
		})
	}
}
