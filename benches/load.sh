#!/usr/bin/env bash
# Load benchmark of the webhook over HTTPS with keep-alive on 127.0.0.1, with the `oha` load
# generator (cargo install oha). Not a test: it prints figures, side by side, in one run:
#   - a floor endpoint (GET /healthz: TLS + HTTP, no admission work), /mutate and /validate at
#     full speed (throughput, p50/p99/p99.9);
#   - /mutate and /validate at a fixed 1,000 requests/s (p99);
#   - the server's peak resident memory (VmHWM).
# Usage: benches/load.sh [seconds per run, default 10] [connections, default 16]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
connections=${2:-16}
command -v oha >/dev/null || { echo "oha is missing: cargo install oha --locked" >&2; exit 1; }

cargo build --release --quiet
port=$((20000 + RANDOM % 20000))
log=$(mktemp)
tmp=$(mktemp -d)
target/release/mysql-webhook serve --dev --no-controller --addr "127.0.0.1:$port" 2>"$log" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$log" "$tmp"' EXIT
for _ in $(seq 50); do
  curl -sf --cacert certs/dev/ca.crt "https://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done

review=tests/data/create-annotated.json
run() { # name, rate (0 = unbounded), oha arguments...
  local name=$1 rate=$2; shift 2
  local rate_args=()
  [ "$rate" -gt 0 ] && rate_args=(-q "$rate")
  oha --no-tui --output-format json -z "${seconds}s" -c "$connections" "${rate_args[@]}" \
    --cacert certs/dev/ca.crt "$@" > "$tmp/oha.json"
  python3 - "$name" "$tmp/oha.json" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
ms = lambda v: f"{v * 1000:8.3f}"
print(f"| {name:<22} | {s['requestsPerSec']:9.0f} | {ms(p['p50'])} | {ms(p['p99'])} | {ms(p['p99.9'])} | {s['successRate'] * 100:6.2f}% {codes} |")
PY
}

echo "| run                    |     req/s | p50 (ms) | p99 (ms) | p99.9 (ms) | success |"
echo "|---|---|---|---|---|---|"
run "floor GET /healthz" 0 "https://127.0.0.1:$port/healthz"
run "POST /mutate" 0 -m POST -H 'content-type: application/json' -D "$review" "https://127.0.0.1:$port/mutate"
run "POST /validate" 0 -m POST -H 'content-type: application/json' -D "$review" "https://127.0.0.1:$port/validate"
run "/mutate @ 1000 req/s" 1000 -m POST -H 'content-type: application/json' -D "$review" "https://127.0.0.1:$port/mutate"
run "/validate @ 1000 req/s" 1000 -m POST -H 'content-type: application/json' -D "$review" "https://127.0.0.1:$port/validate"
echo
echo "peak RSS of the server: $(awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$server/status")"
echo "(server and load generator share this machine's $(nproc) cores)"
