#!/usr/bin/env bash
# A real Prometheus server scrapes execd-host's --metrics-listen: Debian's
# `prometheus` package (downloaded with apt-get and unpacked under target/,
# nothing installed on the system), a throwaway host with an access token
# (the metrics listener needs none), a known workload (two commands, one
# of them `exit 3`), then the values asked back through Prometheus's HTTP
# API. Skips, saying why, where the package cannot be had. Bounded: the
# scrape wait is PROM_SECONDS (default 60).
#
#   scripts/prometheus-scrape.sh
#   EXECD_HOST=path/to/execd-host scripts/prometheus-scrape.sh   # no build
. "$(dirname "$0")/lib.sh"
work=$root/target/prometheus-scrape
budget=${PROM_SECONDS:-60}
prom_pid=
mkdir -p "$work"

# The package's binary, unpacked once into target/.
prom=$work/root/usr/bin/prometheus
if [ ! -x "$prom" ]; then
    rm -rf "$work/deb" && mkdir -p "$work/deb"
    if ! (cd "$work/deb" && apt-get download prometheus >/dev/null 2>&1); then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq >/dev/null 2>&1 || true
            (cd "$work/deb" && apt-get download prometheus >/dev/null 2>&1) || true
        fi
    fi
    deb=$(ls "$work"/deb/prometheus_*.deb 2>/dev/null | head -n 1 || true)
    if [ -z "$deb" ]; then
        echo "$script: SKIPPED: Debian's prometheus package cannot be downloaded here (no apt-get or no package index)"
        exit 0
    fi
    dpkg -x "$deb" "$work/root"
fi
echo "$script: $("$prom" --version 2>&1 | head -n 1)"

build_host
make_sandbox
trap 'stop_prometheus; stop_host; rm -rf "$sandbox"' EXIT
stop_prometheus() {
    if [ -n "$prom_pid" ] && kill -0 "$prom_pid" 2>/dev/null; then
        kill -TERM "$prom_pid" 2>/dev/null || true
        wait "$prom_pid" 2>/dev/null || true
    fi
    prom_pid=
}

token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
EXECD_ACCESS_TOKEN=$token start_host "$work/host.out" "$work/host.err" \
    --metrics-listen 127.0.0.1:0
metrics_addr=$(sed -n 's/^metrics on //p' "$work/host.out" | head -n 1)
echo "$script: execd-host on $host_addr, metrics on $metrics_addr"

# The workload, through the main listener (which wants the token).
for command in "echo scraped" "exit 3"; do
    body=$(python3 -c 'import json,sys; print(json.dumps({"command": sys.argv[1]}))' "$command")
    curl -sS --max-time 30 -H "X-EXECD-ACCESS-TOKEN: $token" \
        -H 'Content-Type: application/json' -d "$body" "http://$host_addr/command" >/dev/null
done

# Prometheus on a free loopback port, scraping every second.
prom_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$sandbox/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: execd
    static_configs:
      - targets: ["$metrics_addr"]
YAML
"$prom" --config.file="$sandbox/prometheus.yml" --storage.tsdb.path="$sandbox/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
prom_pid=$!

# query EXPR: the value of the first sample of an instant query, or empty.
query() {
    curl -sS --max-time 5 --get --data-urlencode "query=$1" \
        "http://127.0.0.1:$prom_port/api/v1/query" 2>/dev/null |
        python3 -c 'import json,sys
try:
    r = json.load(sys.stdin)["data"]["result"]
    print(r[0]["value"][1] if r else "")
except Exception:
    print("")' || true
}

# Each expected value, waited for (bounded) since scrapes come each second.
status=0
deadline=$((SECONDS + budget))
for expect in \
    'up{job="execd"}=1' \
    'execd_commands_started_total{job="execd"}=2' \
    'execd_commands_ended_total{job="execd",reason="exit"}=2' \
    'execd_commands_running{job="execd"}=0' \
    'execd_events_logged_total{job="execd",stream="stdout"}=1' \
    'sum(execd_http_requests_total{job="execd",route="/command",status="200"})=2' \
    'execd_disk_budget_bytes{job="execd"}>0'; do
    case $expect in
        *'>0') expr=${expect%>0} want=positive ;;
        *) expr=${expect%=*} want=${expect##*=} ;;
    esac
    got= seen=
    while [ -z "$seen" ] && [ "$SECONDS" -lt "$deadline" ]; do
        got=$(query "$expr")
        if [ "$want" = positive ]; then
            python3 -c 'import sys; sys.exit(0 if sys.argv[1] and float(sys.argv[1]) > 0 else 1)' "$got" && seen=1 && break
        elif [ -n "$got" ] && python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) == float(sys.argv[2]) else 1)' "$got" "$want"; then
            seen=1 && break
        fi
        kill -0 "$prom_pid" 2>/dev/null || { echo "$script: prometheus died" >&2; tail -n 20 "$work/prometheus.log" >&2; exit 1; }
        sleep 0.5
    done
    if [ -z "$seen" ]; then
        got=$(query "$expr")
        echo "$script: FAIL $expr: want $want, Prometheus says ${got:-nothing}" >&2
        status=1
    else
        echo "$script: ok   $expr = $got"
    fi
done
host_survived "$work/host.err" || status=1
stop_prometheus
stop_host
host_logged_no_errors "$work/host.err" || status=1
echo "$script: exit $status"
exit "$status"
