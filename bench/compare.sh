#!/usr/bin/env bash
# Times rstscope's full analysis against tcpdump's and tshark's stateless RST
# filters on the same capture, in one run, and prints the ratios and the peak
# memory of each. Make a large real capture first:
#   ../shared/bench/make-capture.sh /tmp/big.pcap
# usage: bench/compare.sh FILE [RUNS]
set -euo pipefail
FILE=${1:?usage: bench/compare.sh FILE [RUNS]}
RUNS=${2:-3}
cd "$(dirname "$0")/.."
BIN=$(mktemp -d)/rstscope
trap 'rm -rf "$(dirname "$BIN")"' EXIT
CGO_ENABLED=0 go build -o "$BIN" ./cmd/rstscope
cat "$FILE" >/dev/null # page cache, so every tool reads from memory

# best wall time (s) and peak RSS (KB) over RUNS runs of a command
measure() {
  local best="" mem=0 tf
  tf=$(mktemp)
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -o "$tf" -f "%e %M" "$@" >/dev/null 2>&1 || true
    local t m
    read -r t m <"$tf"
    if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; fi
    [ "$m" -gt "$mem" ] && mem=$m
  done
  rm -f "$tf"
  echo "$best $mem"
}

packets=$(tcpdump -nn -r "$FILE" 2>/dev/null | wc -l)
echo "capture: $FILE, $packets packets, $(du -h "$FILE" | cut -f1)"
read -r rs_t rs_m < <(measure "$BIN" analyze -q "$FILE")
printf '%-34s %8.2f s %8d KB   (%d CPUs)\n' "rstscope analyze (full tracking)" "$rs_t" "$rs_m" "$(nproc)"
read -r r1_t r1_m < <(measure "$BIN" analyze -q --workers 1 "$FILE")
printf '%-34s %8.2f s %8d KB\n' "rstscope analyze --workers 1" "$r1_t" "$r1_m"
if command -v tcpdump >/dev/null; then
  read -r td_t td_m < <(measure tcpdump -nn -r "$FILE" 'tcp[tcpflags] & tcp-rst != 0')
  printf '%-34s %8.2f s %8d KB   rstscope/tcpdump time %.2fx\n' "tcpdump RST filter (stateless)" "$td_t" "$td_m" "$(awk "BEGIN{print $rs_t/$td_t}")"
else
  echo "tcpdump: not installed (apt-get install tcpdump)"
fi
if command -v tshark >/dev/null; then
  RUNS=1
  read -r ts_t ts_m < <(measure tshark -r "$FILE" -Y tcp.flags.reset==1)
  printf '%-34s %8.2f s %8d KB   rstscope/tshark time %.3fx\n' "tshark RST display filter" "$ts_t" "$ts_m" "$(awk "BEGIN{print $rs_t/$ts_t}")"
else
  echo "tshark: not installed (apt-get install tshark)"
fi
awk -v t="$rs_t" -v n="$packets" -v m="$rs_m" 'BEGIN{printf "rstscope: %.0f ns per packet, peak %.0f MB\n", t*1e9/n, m/1024}'
