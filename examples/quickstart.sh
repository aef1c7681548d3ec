#!/usr/bin/env bash
# Brings up sketch-proxy doing its job: a real Prometheus 2.42 on loopback holding six
# hours of demo data (and scraping itself and the proxy), with sketch-proxy in front.
# Prints the URL to give Grafana and answers one query through the proxy.
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
cargo build --quiet --release --manifest-path "$root/Cargo.toml" -p sketch-proxy -p sketch-proxy-testkit
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
"$target/release/sketch-proxy" --listen="127.0.0.1:$proxy_port" \
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

query='quantile_over_time(0.99, demo_request_duration_seconds[1h])'
cat <<TEXT

sketch-proxy is up at http://127.0.0.1:$proxy_port (Prometheus behind it: http://127.0.0.1:$prometheus_port).
In Grafana, add a Prometheus data source with URL http://127.0.0.1:$proxy_port

One query answered through the proxy:
  promtool query instant http://127.0.0.1:$proxy_port '$query'
TEXT
promtool query instant "http://127.0.0.1:$proxy_port" "$query"
entropy='entropy_over_time(demo_temperature_celsius[1h])'
cat <<TEXT

One Prometheus does not know, evaluated by the proxy over the same data:
  promtool query instant http://127.0.0.1:$proxy_port '$entropy'
TEXT
promtool query instant "http://127.0.0.1:$proxy_port" "$entropy"

if [ "$once" != "--once" ]; then
  echo
  echo "Press Ctrl-C to stop both."
  wait
fi
