// Package smaps reads this process's /proc/self/smaps (Linux): what the
// kernel says about the mapping that holds an address, such as how much of
// it is resident or whether it may use transparent huge pages. Tests use
// it to check what a piece of memory costs, not just what the code asked for.
package smaps

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/rstscope/rstscope/internal/hugepage"
)

// Field returns the value of the field name ("Rss", "THPeligible", ...)
// of the mapping that holds addr, as smaps writes it ("1204 kB", "1").
func Field(addr uintptr, name string) (string, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		first, _, _ := strings.Cut(line, " ")
		if lo, hi, ok := strings.Cut(first, "-"); ok && !strings.HasSuffix(first, ":") {
			// A mapping's line: "lo-hi perms offset dev inode path".
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			in = err1 == nil && err2 == nil && uintptr(a) <= addr && addr < uintptr(b)
			continue
		}
		if v, ok := strings.CutPrefix(line, name+":"); ok && in {
			return strings.TrimSpace(v), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("smaps: no mapping with %s holds %#x", name, addr)
}

// KB returns a field given in kB ("Rss", "AnonHugePages", ...) as a number.
func KB(addr uintptr, name string) (int, error) {
	v, err := Field(addr, name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSuffix(v, " kB"))
}

// HugeEligible reports whether the kernel may back the first whole huge
// page within [p, p+n) with a transparent huge page ("THPeligible: 1"),
// for a test of memory the code advised. skip, when not empty, says why
// the answer means nothing here (not Linux, huge pages switched off, no
// smaps to read, no whole huge page in the range), for the test to skip
// or fail with.
func HugeEligible(p, n uintptr) (eligible bool, skip string) {
	if runtime.GOOS != "linux" {
		return false, "MADV_HUGEPAGE is Linux's"
	}
	if b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil || strings.Contains(string(b), "[never]") {
		return false, fmt.Sprintf("transparent huge pages are off here (%q, %v)", b, err)
	}
	off, size := hugepage.Range(p, n)
	if size == 0 {
		return false, "the range holds no whole huge page"
	}
	v, err := Field(p+off, "THPeligible")
	if err != nil {
		return false, fmt.Sprintf("cannot read /proc/self/smaps: %v", err)
	}
	return v == "1", ""
}
