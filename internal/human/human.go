// Package human formats numbers for people, the same way in every report:
// durations ("6.0 s", "250 ms", "40 µs") and byte counts ("27.3 KiB").
package human

import "fmt"

// Duration writes ns briefly, with about two significant digits.
func Duration(ns int64) string {
	s := float64(ns) / 1e9
	switch {
	case s >= 2*86400:
		return fmt.Sprintf("%.0f days", s/86400)
	case s >= 3*3600:
		return fmt.Sprintf("%.1f h", s/3600)
	case s >= 10:
		return fmt.Sprintf("%.0f s", s)
	case s >= 1:
		return fmt.Sprintf("%.1f s", s)
	case s >= 0.001:
		return fmt.Sprintf("%.0f ms", s*1000)
	}
	return fmt.Sprintf("%.0f µs", s*1e6)
}

// Seconds is Duration for a float number of seconds.
func Seconds(s float64) string { return Duration(int64(s * 1e9)) }

// Bytes writes a byte count in binary units.
func Bytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
