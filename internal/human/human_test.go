package human

import "testing"

func TestDuration(t *testing.T) {
	for ns, want := range map[int64]string{6e9: "6.0 s", 65e9: "65 s", 250e6: "250 ms", 40e3: "40 µs", 1e9: "1.0 s",
		3 * 3600e9: "3.0 h", 7200e9: "7200 s", 96970195e9: "1122 days"} {
		if got := Duration(ns); got != want {
			t.Errorf("Duration(%d) = %q, want %q", ns, got, want)
		}
	}
	if got := Bytes(27955); got != "27.3 KiB" {
		t.Errorf("Bytes = %q", got)
	}
	if got := Bytes(512); got != "512 bytes" {
		t.Errorf("Bytes = %q", got)
	}
}
