#!/usr/bin/env bash
# Load benchmark of the webhook on 127.0.0.1 over HTTPS with keep-alive. Not a test: it prints
# figures, in one run, so that they can be compared with each other on a noisy machine:
#   1. a new pod: time from start to /readyz with an empty compile cache, and the peak memory
#      then (the built-ins are precompiled into the binary; see README "Performance");
#   2. at full speed with wrk (16 connections): a floor (GET /healthz: TLS and HTTP, no
#      work), /mutate and /validate on the API server's own reviews (tests/data/apiserver/:
#      CREATE, UPDATE and scale, with managedFields and oldObject) in turn: req/s, p50/p99, and
#      the server's CPU per request (utime+stime from /proc) with its ratio to the floor's;
#   3. /mutate and /validate at a fixed 1,000 req/s (hey, over HTTP/2 like the API server): p99;
#   4. a realistic low rate: one review every 20 ms on one keep-alive connection; the client's
#      p50 and p99 and the server's own p50 (from its latency histogram on /metrics);
#   5. the server's peak resident memory (VmHWM) through all of it.
# The five built-in policies run on /validate (--dev with no policies.yaml).
# Usage: benches/load.sh [seconds per run, default 10] [connections, default 16]
# Needs wrk (Debian: apt-get install wrk); hey (Debian: apt-get install hey) for step 3.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
connections=${2:-16}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

# BINARY=path measures another build (an older commit's, for a before/after in one sitting).
if [ -z "${BINARY:-}" ]; then
  cargo build --release --quiet
fi
binary=${BINARY:-${CARGO_TARGET_DIR:-target}/release/mysql-webhook}
tmp=$(mktemp -d)
server=
stop() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; server=; }
trap 'stop; rm -rf "$tmp"' EXIT
ticks=$(getconf CLK_TCK)
data=tests/data/apiserver
mutates=("$data"/mutate-*.json)
validates=("$data"/validate-*.json)

start() { # a server with an empty compile cache; prints ms to ready and the peak RSS then
  port=$((20000 + RANDOM % 20000))
  mkdir -p "$tmp/cache"; rm -rf "${tmp:?}/cache"/*
  local began; began=$(date +%s%N)
  "$binary" serve --dev --no-controller --policy-cache "$tmp/cache" --addr "127.0.0.1:$port" 2>"$tmp/log" &
  server=$!
  until curl -sf --cacert certs/dev/ca.crt "https://127.0.0.1:$port/readyz" >/dev/null; do
    kill -0 "$server" 2>/dev/null || { cat "$tmp/log" >&2; exit 1; }
    sleep 0.005
  done
  local ready; ready=$(date +%s%N)
  printf '%s ms to ready, peak RSS %s\n' $(((ready - began) / 1000000)) "$(peak)"
}
peak() { awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$server/status"; }
cpu() { awk '{print $14 + $15}' "/proc/$server/stat"; }

echo "## A new pod (empty compile cache), three starts"
for _ in 1 2 3; do start; stop; done
start >/dev/null

echo
echo "## Full speed: wrk, $connections connections, ${seconds}s a run, $(nproc) cores shared with the load generator"
echo "| run | req/s | p50 (ms) | p99 (ms) | p99.9 (ms) | server CPU per request (µs) | vs floor | errors |"
echo "|---|---|---|---|---|---|---|---|"
floor=
full() { # name, path, bodies...
  local name=$1 path=$2; shift 2
  local before after
  before=$(cpu)
  wrk -t2 -c"$connections" -d"${seconds}s" -s benches/reviews.lua "https://127.0.0.1:$port$path" -- "$@" \
    | awk '/^RESULT/' > "$tmp/wrk"
  after=$(cpu)
  read -r _ requests duration p50 p99 p999 errors < "$tmp/wrk"
  local per_request; per_request=$(( (after - before) * 1000000 * 1000 / ticks / requests ))  # ns
  [ -z "$floor" ] && floor=$per_request
  awk -v n="$name" -v r="$requests" -v d="$duration" -v a="$p50" -v b="$p99" -v c="$p999" \
      -v cpu="$per_request" -v f="$floor" -v e="$errors" 'BEGIN {
    printf "| %s | %.0f | %.2f | %.2f | %.2f | %.0f | %.1f× | %d |\n", n, r / (d / 1e6), a / 1e3, b / 1e3, c / 1e3, cpu / 1e3, cpu / f, e }'
}
full "floor GET /healthz" /healthz
full "POST /mutate" /mutate "${mutates[@]}"
full "POST /validate" /validate "${validates[@]}"

echo
if command -v hey >/dev/null; then
  # HTTP/2 like the API server's webhook client; 10 workers of 100 req/s each. hey waits for a
  # response before a worker's next request, so a slow answer delays the next ones: at a rate
  # the server can't hold, the achieved rate falls below 1,000 (shown).
  echo "## At a fixed 1,000 req/s: hey, HTTP/2, 10 workers × 100 req/s, ${seconds}s, the CREATE review"
  echo "| run | req/s | p50 (ms) | p99 (ms) | errors |"
  echo "|---|---|---|---|---|"
  for endpoint in mutate validate; do
    # -host: hey sends the URL's host:port as the TLS server name, which rustls refuses.
    hey -h2 -host localhost -z "${seconds}s" -c 10 -q 100 -m POST -T application/json \
      -D "$data/$endpoint-create-statefulset.json" "https://127.0.0.1:$port/$endpoint" > "$tmp/hey"
    awk -v n="/$endpoint @ 1000 req/s" '
      /Requests\/sec:/ {rate = $2}
      /50% in/ {p50 = $3} /99% in/ {p99 = $3}
      /^Error distribution:/ {errors = 1}
      END {printf "| %s | %.0f | %.2f | %.2f | %s |\n", n, rate, p50 * 1e3, p99 * 1e3, errors ? "yes (see hey)" : "0"}' "$tmp/hey"
  done
else
  echo "(hey is not installed: no fixed-rate runs; apt-get install hey)"
fi

echo
echo "## Low rate: one review every 20 ms on one keep-alive connection, 300 reviews an endpoint"
echo "| endpoint | client p50 (ms) | client p99 (ms) | server p50 (ms) |"
echo "|---|---|---|---|"
python3 - "$port" certs/dev/ca.crt "${mutates[*]}" "${validates[*]}" <<'PY'
import http.client, re, ssl, sys, time
port, ca, mutates, validates = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
context = ssl.create_default_context(cafile=ca)
connection = http.client.HTTPSConnection("127.0.0.1", port, context=context)

def get(path):
    connection.request("GET", path)
    response = connection.getresponse()
    return response.read().decode()

def buckets(endpoint):
    found = []
    for labels, n in re.findall(r'admission_duration_seconds_bucket\{([^}]*)\} (\d+)', get("/metrics")):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if labels.get("endpoint") == endpoint:
            found.append((float("inf") if labels["le"] == "+Inf" else float(labels["le"]), int(n)))
    return sorted(found)

def server_median(before, after):
    counts = [(le, a - b) for (le, b), (_, a) in zip(before, after)]
    total = counts[-1][1]
    previous_le, previous_count = 0.0, 0
    for le, count in counts:
        if count >= total / 2:
            share = (total / 2 - previous_count) / max(count - previous_count, 1)
            return (previous_le + share * (le - previous_le)) * 1e3
        previous_le, previous_count = le, count
    return float("nan")

for endpoint, files in (("mutate", mutates), ("validate", validates)):
    bodies = [open(f, "rb").read() for f in files]
    before = buckets(endpoint)
    latencies = []
    for i in range(300):
        began = time.perf_counter()
        connection.request("POST", "/" + endpoint, body=bodies[i % len(bodies)],
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        latencies.append(time.perf_counter() - began)
        time.sleep(max(0.0, 0.020 - (time.perf_counter() - began)))
    after = buckets(endpoint)
    latencies.sort()
    p = lambda q: latencies[int(q * (len(latencies) - 1))] * 1e3
    print(f"| /{endpoint} | {p(0.5):.2f} | {p(0.99):.2f} | {server_median(before, after):.2f} |")
PY

echo
echo "peak RSS of the server through the load: $(peak)"
