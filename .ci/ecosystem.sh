#!/usr/bin/env bash
# Checks mgsd against the real tools it lives with: a Prometheus server
# scraping the demo daemon during an update, promtool on the metrics and
# the alert rules, every dashboard query run by Prometheus, and
# systemd-analyze on the unit. Uses the debug binaries the tests built.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    echo "== installing prometheus (Debian package)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
if ! command -v systemd-analyze >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mport=$(free_port)
pport=$(free_port)
sock=$work/mgsd.sock
mgsctl() { "$root/target/debug/mgsctl" --socket "$sock" "$@"; }

echo "== demo daemon, metrics on 127.0.0.1:$mport"
MGSD_METRICS__LISTEN=127.0.0.1:$mport "$root/target/debug/mgsd" --demo --socket "$sock" >"$work/mgsd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    if mgsctl --json health 2>/dev/null | grep -q '"reachable":12'; then break; fi
    sleep 0.2
done
mgsctl health

echo "== an update"
python3 -c 'import sys; sys.stdout.buffer.write(b"\xff"*65536 + bytes(i*7 % 251 for i in range(196608)))' >"$work/host.img"
image_bytes=$(stat -c %s "$work/host.img")
mgsctl update start sled-0 host-boot-flash --slot 1 --image "$work/host.img" --watch

echo "== a reset (nothing to activate: the plain trigger)"
mgsctl reset sled-1

echo "== Prometheus on 127.0.0.1:$pport"
cat >"$work/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $root/dashboards/prometheus/mgsd-rules.yml
scrape_configs:
  - job_name: mgsd
    static_configs:
      - targets: ["127.0.0.1:$mport"]
YML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$pport" >"$work/prometheus.log" 2>&1 &
pids+=($!)

query() {
    python3 - "$pport" "$1" <<'PY'
import json, sys, urllib.parse, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/api/v1/query?" + urllib.parse.urlencode({"query": sys.argv[2]})
try:
    r = json.load(urllib.request.urlopen(url, timeout=5))
    v = r["data"]["result"]
    print(v[0]["value"][1] if v else "")
except Exception:
    print("")
PY
}
for _ in $(seq 150); do
    [ "$(query 'up{job="mgsd"}')" = "1" ] && [ -n "$(query 'mgsd_update_delivered_bytes')" ] && break
    sleep 0.2
done

expect() {
    local got
    got=$(query "$1")
    if [ "$got" != "$2" ]; then
        echo "FAIL: $1 = '$got', expected '$2'"
        exit 1
    fi
    echo "ok: $1 = $got"
}
expect 'up{job="mgsd"}' 1
expect 'sum(mgsd_sp_reachable)' 12
expect 'mgsd_update_delivered_bytes{sp="sled-0",component="host-boot-flash"}' "$image_bytes"
expect 'mgsd_update_size_bytes{sp="sled-0",component="host-boot-flash"}' "$image_bytes"
expect 'mgsd_update_state{sp="sled-0",component="host-boot-flash",state="complete"}' 1
expect 'mgsd_update_completions_total{sp="sled-0",component="host-boot-flash"}' 1
expect 'mgsd_active_updates' 0
expect 'mgsd_build_info' 1
expect 'mgsd_sp_resets_total{sp="sled-1",outcome="reset",method="plain"}' 1
expect 'count(mgsd_sp_firmware_info{component="sp"} == 1)' 12
# SPs' state is read every few seconds, so the count moves: only ask that
# round trips were measured.
expect 'sum(mgsd_sp_rtt_seconds_count) > bool 0' 1

echo "== promtool check metrics"
python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' \
    "http://127.0.0.1:$mport/metrics" >"$work/metrics.txt"
if ! out=$(promtool check metrics <"$work/metrics.txt" 2>&1) || [ -n "$out" ]; then
    echo "$out"
    exit 1
fi
echo "ok: $(grep -c '^# HELP' "$work/metrics.txt") metrics, no complaint"

echo "== promtool rules"
promtool check rules dashboards/prometheus/mgsd-rules.yml
(cd dashboards/prometheus && promtool test rules mgsd-rules.test.yml)

echo "== dashboards: structure and every query against Prometheus"
python3 .ci/check_dashboards.py "http://127.0.0.1:$pport" dashboards/grafana/*.json

echo "== systemd-analyze verify"
mkdir -p "$work/unit"
sed "s|^ExecStart=/usr/bin/mgsd|ExecStart=$root/target/debug/mgsd|" config/mgsd.service >"$work/unit/mgsd.service"
out=$(systemd-analyze verify "$work/unit/mgsd.service" 2>&1 || true)
if [ -n "$out" ]; then
    echo "$out"
    exit 1
fi
echo "ok: config/mgsd.service verifies cleanly"
