#!/usr/bin/env bash
# Times rstscope's full analysis against tcpdump's and tshark's stateless RST
# filters on the same capture, in one run, and prints the ratios, the CPU
# time and the peak memory of each. Make a large real capture first:
#   ../shared/bench/make-capture.sh /tmp/big.pcap
# usage: bench/compare.sh FILE [RUNS]
#
# The capture is copied to a tmpfs (/dev/shm) when there is room: on this
# project's machines a kernel memory monitor (DAMON, kdamond) pages out page
# cache that sat idle for a while, so a file "in the page cache" is partly
# read from disk again between runs, and timings drift by a third. Memory in
# a tmpfs cannot be paged out on a machine without swap.
set -euo pipefail
FILE=${1:?usage: bench/compare.sh FILE [RUNS]}
RUNS=${2:-3}
cd "$(dirname "$0")/.."
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"; [ -n "${SHM:-}" ] && rm -f "$SHM"' EXIT
BIN=$TMP/rstscope
CGO_ENABLED=0 go build -o "$BIN" ./cmd/rstscope

size=$(stat -c %s "$FILE")
avail=$(df --output=avail -B1 /dev/shm 2>/dev/null | tail -1 || echo 0)
if [ "$avail" -gt $((size * 2)) ]; then
  SHM=/dev/shm/rstscope-compare-$$.pcap
  cp "$FILE" "$SHM"
  IN=$SHM
  where="tmpfs copy"
else
  IN=$FILE
  cat "$IN" >/dev/null
  where="page cache (no room in /dev/shm: expect drift)"
fi

# best wall time (s), CPU time of that run (s) and peak RSS (KB) over RUNS runs
measure() {
  local best="" cpu="" mem=0 tf
  tf=$(mktemp)
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -o "$tf" -f "%e %U %S %M" "$@" >/dev/null 2>&1 || true
    local t u s m
    read -r t u s m <"$tf"
    if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; cpu=$(awk "BEGIN{print $u+$s}"); fi
    [ "$m" -gt "$mem" ] && mem=$m
  done
  rm -f "$tf"
  echo "$best $cpu $mem"
}
row() { printf '%-38s %6.2f s %6.2f s CPU %8d KB%s\n' "$1" "$2" "$3" "$4" "${5:-}"; }

packets=$(tcpdump -nn -r "$IN" 2>/dev/null | wc -l)
echo "capture: $FILE, $packets packets, $(du -h "$FILE" | cut -f1), read from $where; best of $RUNS; $(nproc) CPUs"
read -r rs_t rs_c rs_m < <(measure "$BIN" analyze -q "$IN")
row "rstscope analyze FILE" "$rs_t" "$rs_c" "$rs_m"
read -r st_t st_c st_m < <(measure sh -c "exec \"$BIN\" analyze -q - <\"$IN\"")
row "rstscope analyze - <FILE (stdin)" "$st_t" "$st_c" "$st_m"
read -r r1_t r1_c r1_m < <(measure "$BIN" analyze -q --workers 1 "$IN")
row "rstscope analyze --workers 1 FILE" "$r1_t" "$r1_c" "$r1_m"
read -r js_t js_c js_m < <(measure "$BIN" analyze -q --json "$IN")
row "rstscope analyze --json FILE" "$js_t" "$js_c" "$js_m"
if command -v tcpdump >/dev/null; then
  read -r td_t td_c td_m < <(measure tcpdump -nn -r "$IN" 'tcp[tcpflags] & tcp-rst != 0')
  row "tcpdump RST filter (stateless)" "$td_t" "$td_c" "$td_m"
  awk -v a="$rs_t" -v b="$st_t" -v c="$r1_t" -v t="$td_t" 'BEGIN{printf "rstscope/tcpdump time: file %.2fx, stdin %.2fx, one goroutine %.2fx\n", a/t, b/t, c/t}'
else
  echo "tcpdump: not installed (apt-get install tcpdump)"
fi
if command -v tshark >/dev/null; then
  RUNS=1
  read -r ts_t ts_c ts_m < <(measure tshark -r "$IN" -Y tcp.flags.reset==1)
  row "tshark RST display filter" "$ts_t" "$ts_c" "$ts_m" "   rstscope/tshark time $(awk "BEGIN{printf \"%.3fx\", $rs_t/$ts_t}")"
else
  echo "tshark: not installed (apt-get install tshark)"
fi
awk -v t="$rs_t" -v n="$packets" -v m="$rs_m" 'BEGIN{printf "rstscope: %.0f ns per packet, peak %.0f MB\n", t*1e9/n, m/1024}'
