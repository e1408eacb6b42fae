// Package smaps reads this process's /proc/self/smaps (Linux): what the
// kernel says about the mapping that holds an address, such as how much of
// it is resident or whether it may use transparent huge pages. Tests use
// it to check what a piece of memory costs, not just what the code asked for.
package smaps

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
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
