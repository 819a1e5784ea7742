#!/usr/bin/env bash
# OpenSandbox's released Python SDK (opensandbox==1.1.1 from PyPI, in a venv
# under target/) against execd-host, in both framings: argv, set_env (the
# EXECD_ENVS file), bash sessions, exit codes, metrics. Runs
# tests/sdk/test_sdk.py against a throwaway host on a free loopback port
# with an access token; exits non-zero on any failure, or if the host logs
# an error. Bounded: each framing gets SDK_SECONDS (default 120).
#
#   scripts/sdk-compat.sh
#   EXECD_HOST=path/to/execd-host scripts/sdk-compat.sh   # no build
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$root/target/sdk-compat
budget=${SDK_SECONDS:-120}
sdk=${SDK_VERSION:-1.1.1}
host_bin=$(realpath -m "${EXECD_HOST:-$root/target/release/execd-host}")

mkdir -p "$work"
if [ ! -x "$work/venv/bin/python" ] || ! "$work/venv/bin/python" -c "import importlib.metadata as m; assert m.version('opensandbox') == '$sdk'" 2>/dev/null; then
    python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install --quiet "opensandbox==$sdk"
fi
if [ -z "${EXECD_HOST:-}" ]; then
    cargo build --release --quiet -p execd-host
fi

sandbox=$(mktemp -d -t execd-sdk.XXXXXX)
host_pid=
stop_host() {
    if [ -n "$host_pid" ] && kill -0 "$host_pid" 2>/dev/null; then
        kill -TERM "$host_pid" 2>/dev/null || true
        wait "$host_pid" 2>/dev/null || true
    fi
    host_pid=
}
trap 'stop_host; rm -rf "$sandbox"' EXIT

status=0
for framing in standard legacy; do
    token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    # set_env appends to the file EXECD_ENVS names: a fresh one per run.
    rm -rf "$sandbox/envs" "$sandbox/state"
    (
        cd "$sandbox"
        HOME=$sandbox EXECD_LOG=warn EXECD_ACCESS_TOKEN=$token EXECD_ENVS=$sandbox/envs/execd.env \
            exec "$host_bin" --listen 127.0.0.1:0 --state-dir "$sandbox/state" --sse-framing "$framing"
    ) >"$work/host.out" 2>"$work/host-$framing.err" &
    host_pid=$!
    addr=
    for _ in $(seq 1 300); do
        addr=$(sed -n 's/^listening on //p' "$work/host.out" 2>/dev/null | head -n 1)
        [ -n "$addr" ] && break
        kill -0 "$host_pid" 2>/dev/null || { cat "$work/host-$framing.err" >&2; exit 1; }
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "sdk-compat: the host did not start" >&2; exit 1; }
    echo "sdk-compat: opensandbox $sdk, $framing framing, execd-host on $addr"
    EXECD_ADDR=$addr EXECD_TOKEN=$token FRAMING=$framing \
        timeout --kill-after=10 "$budget" "$work/venv/bin/python" "$root/tests/sdk/test_sdk.py" || status=1
    if ! kill -0 "$host_pid" 2>/dev/null; then
        echo "sdk-compat: the host died" >&2
        status=1
    fi
    stop_host
    if grep -qiE "panicked|ERROR" "$work/host-$framing.err"; then
        echo "sdk-compat: the host logged errors:" >&2
        grep -iE "panicked|ERROR" "$work/host-$framing.err" | head -n 20 >&2
        status=1
    fi
done
echo "sdk-compat: exit $status"
exit "$status"
