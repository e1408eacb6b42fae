#!/usr/bin/env bash
# Rewrites cmd/rstscope/default.pgo, the CPU profile `go build` uses for
# profile-guided optimisation of the rstscope binary (Go 1.21+ picks up
# default.pgo in the main package by itself; pure Go, nothing else changes).
# The profile is the engine's benchmarks over a large real capture: the whole
# pipeline on two goroutines from a mapped file, and one goroutine reading,
# decoding and tracking. Rerun it when the hot path changes much.
#   ../shared/bench/make-capture.sh /tmp/big.pcap
# usage: bench/pgo.sh FILE
set -euo pipefail
FILE=$(realpath "${1:?usage: bench/pgo.sh FILE}")
cd "$(dirname "$0")/.."
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
go test -c -o "$TMP/engine.test" ./internal/engine
RSTSCOPE_BENCH_PCAP=$FILE "$TMP/engine.test" -test.run '^$' -test.bench 'PipelineFile/mapped' \
  -test.benchtime 6x -test.cpuprofile "$TMP/pipeline.prof" >/dev/null
RSTSCOPE_BENCH_PCAP=$FILE "$TMP/engine.test" -test.run '^$' -test.bench 'Stages/track' \
  -test.benchtime 3x -test.cpuprofile "$TMP/track.prof" >/dev/null
go tool pprof -proto "$TMP/pipeline.prof" "$TMP/track.prof" >cmd/rstscope/default.pgo 2>/dev/null
echo "wrote cmd/rstscope/default.pgo ($(stat -c %s cmd/rstscope/default.pgo) bytes)"
