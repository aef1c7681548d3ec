#!/usr/bin/env bash
# Brings up sketch-proxy doing its job: a real Prometheus 2.42 on loopback holding six
# hours of demo data (and scraping itself and the proxy), with sketch-proxy in front.
# The proxy keeps the rule query below warm as sketches: it backfills them from the six
# hours Prometheus holds, and new demo samples arrive through its remote write, which
# feeds them and forwards every sample to Prometheus. Prints the URL to give Grafana,
# then a sketch-served answer beside the exact one, with both latencies and the bound.
#
#   examples/quickstart.sh          run until Ctrl-C
#   examples/quickstart.sh --once   stop after the demo query
#
# Ports: PROMETHEUS_PORT (default 19091) and PROXY_PORT (default 19090), on 127.0.0.1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prometheus_port=${PROMETHEUS_PORT:-19091}
proxy_port=${PROXY_PORT:-19090}
once=${1:-}

"$root/.ci/install-deps"
echo "building sketch-proxy (release)…"
cargo build --quiet --release --manifest-path "$root/Cargo.toml" -p sketch-proxy -p sketch-proxy-testkit \
  -p sketch-proxy-demo-writer
target=$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

work=$(mktemp -d -t sketch-proxy-quickstart-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "loading six hours of demo data…"
"$target/release/demo-data" 6 >"$work/demo.om"
promtool tsdb create-blocks-from openmetrics "$work/demo.om" "$work/data" >/dev/null
cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ['127.0.0.1:$prometheus_port']}]
  - job_name: sketch-proxy
    static_configs: [{targets: ['127.0.0.1:$proxy_port']}]
YAML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --storage.tsdb.retention.time=30d --web.listen-address="127.0.0.1:$prometheus_port" \
  --web.enable-remote-write-receiver --log.level=warn 2>"$work/prometheus.log" &
pids+=($!)
# Where the history ends: the live samples go on from there.
history_end=$(($(grep -v '^#' "$work/demo.om" | tail -n 1 | awk '{print $NF}') + 15))
rule='quantile_over_time(0.99, demo_request_duration_seconds[1h])'
cat >"$work/sketch-proxy.yml" <<YAML
ingest:
  enabled: true
  queue_dir: $work/queue
sketches:
  queries:
    - '$rule'
  query_retain: 6h
YAML
"$target/release/sketch-proxy" --config="$work/sketch-proxy.yml" --listen="127.0.0.1:$proxy_port" \
  --upstream="http://127.0.0.1:$prometheus_port" 2>"$work/sketch-proxy.log" &
pids+=($!)

for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$proxy_port/-/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
if ! curl -fsS "http://127.0.0.1:$proxy_port/-/ready" >/dev/null; then
  echo "sketch-proxy did not become ready; logs:" >&2
  cat "$work/prometheus.log" "$work/sketch-proxy.log" >&2
  exit 1
fi

echo "writing the demo samples since the history ended through the proxy's remote write…"
next=$("$target/release/demo-write" "http://127.0.0.1:$proxy_port" "$history_end")
"$target/release/demo-write" "http://127.0.0.1:$proxy_port" "$next" --follow &
pids+=($!)

echo "backfilling the rule's sketches from Prometheus…"
backfilled() {
  curl -fsS "http://127.0.0.1:$proxy_port/api/v1/status/sketches" | python3 -c '
import json, sys
rules = json.load(sys.stdin)["data"]["rules"]
sys.exit(0 if rules and all(r["backfill"] and r["backfill"]["state"] == "done" and r["coverage"] for r in rules) else 1)'
}
for _ in $(seq 1 1200); do backfilled && break; sleep 0.1; done
if ! backfilled; then
  echo "the backfill did not finish in 2 minutes; logs:" >&2
  cat "$work/sketch-proxy.log" >&2
  exit 1
fi

cat <<TEXT

sketch-proxy is up at http://127.0.0.1:$proxy_port (Prometheus behind it: http://127.0.0.1:$prometheus_port).
In Grafana, add a Prometheus data source with URL http://127.0.0.1:$proxy_port
Sketch status: http://127.0.0.1:$proxy_port/api/v1/status/sketches

TEXT
# Asked from sketches and exactly (sketch=off: forwarded to Prometheus), three times
# each; the fastest time is shown.
encode() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$1"; }
ask() {
  local best=""
  for _ in 1 2 3; do
    t=$(curl -fsS -o "$work/$1.json" -D "$work/$1.headers" -w '%{time_total}' \
      "http://127.0.0.1:$proxy_port/api/v1/$2")
    best=$(python3 -c 'import sys; a = [float(x) for x in sys.argv[1:] if x]; print(min(a))' "$best" "$t")
  done
  echo "$best"
}
compare() {
  local title=$1 request=$2
  sketch_s=$(ask sketch "$request")
  exact_s=$(ask exact "$request&sketch=off")
  python3 - "$work" "$sketch_s" "$exact_s" "$title" <<'PY'
import json, sys
work, sketch_s, exact_s, title = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def load(name):
    body = json.load(open(f"{work}/{name}.json"))
    path = next((l.split(":", 1)[1].strip() for l in open(f"{work}/{name}.headers")
                 if l.lower().startswith("x-answered-by:")), "?")
    points = {}
    for s in body["data"]["result"]:
        for t, v in s.get("values", [s.get("value")]):
            points[(json.dumps(s["metric"], sort_keys=True), t)] = float(v)
    return body, path, points
sketch, sketch_path, got = load("sketch")
exact, exact_path, want = load("exact")
worst = max(abs(got[k] - v) / abs(v) for k, v in want.items() if k in got and v)
print(f"{title} ({len(want)} points):")
print(f"  from sketches: {sketch_s * 1000:8.1f} ms   X-Answered-By: {sketch_path}")
print(f"  exact:         {exact_s * 1000:8.1f} ms   X-Answered-By: {exact_path}   (sketch=off)")
print(f"  speed-up {exact_s / sketch_s:.0f}x; largest relative difference {worst * 100:.3f}%")
for w in sketch.get("warnings", []):
    print(f"  the answer's warning: {w}")
print()
PY
}
now=$(date +%s)
compare "The 5 h Grafana panel of $rule at a 60 s step" \
  "query_range?query=$(encode "$rule")&start=$((now - 5 * 3600))&end=$now&step=60"
long='quantile_over_time(0.99, demo_request_duration_seconds[5h])'
compare "Instant $long (1,200 samples a window: sketched)" \
  "query?query=$(encode "$long")&time=$now"

entropy='entropy_over_time(demo_temperature_celsius[1h])'
cat <<TEXT
A function Prometheus does not know, evaluated by the proxy over the same data:
  promtool query instant http://127.0.0.1:$proxy_port '$entropy'
TEXT
promtool query instant "http://127.0.0.1:$proxy_port" "$entropy"

if [ "$once" != "--once" ]; then
  echo
  echo "Press Ctrl-C to stop."
  wait
fi
