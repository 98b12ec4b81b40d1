#!/usr/bin/env bash
# Instructions per unit of admission work, counted by callgrind: unlike times, they repeat
# exactly on these shared machines, so a change shows up even when it is a few percent. Each
# scenario of benches/instructions.rs runs once to warm up, then ITERATIONS times inside the
# function callgrind counts; the table gives instructions per iteration and the ratio to the
# floor (instantiate and call of the smallest component). Needs valgrind.
# Usage: benches/instructions.sh [iterations, default 20]
# PROFILE=dev counts the test build's code (dependencies optimised, ours not) without a release
# build: good for where the policies' time goes (their code is compiled the same either way),
# not for the host's figures.
set -euo pipefail
cd "$(dirname "$0")/.."
iterations=${1:-20}
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
binary=$(cargo bench --profile "${PROFILE:-bench}" --bench instructions --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "instructions" and m.get("executable"):
        print(m["executable"])')
# Natively first: compiles the test component into the cache, which valgrind would take minutes for.
SCENARIO=floor "$binary"
count() {
  SCENARIO=$1 ITERATIONS=$iterations valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    --smc-check=all-non-file --toggle-collect='*instructions::measure*' "$binary" 2>&1 \
    | awk '/Collected :/ {print $4}'
}
floor=$(( $(count floor) / iterations ))
printf '| scenario | instructions per iteration | vs floor |\n|---|---|---|\n'
printf '| floor: instantiate + call of an empty policy | %d | 1.0× |\n' "$floor"
for scenario in policy:replica-quorum policy:spread policy:storage policy:images policy:resources policies mutate validate; do
  per=$(( $(count "$scenario") / iterations ))
  case $scenario in
    mutate|validate) label="/$scenario in process: the 3 API server reviews (CREATE, UPDATE, scale)" ;;
    policies) label="the five built-in policies" ;;
    *) label="${scenario#policy:}: instantiate + evaluate" ;;
  esac
  awk -v l="$label" -v n="$per" -v f="$floor" 'BEGIN {printf "| %s | %d | %.1f× |\n", l, n, n / f}'
done
