#!/usr/bin/env bash
# OpenSandbox's released Python SDK (opensandbox==1.1.1 from PyPI, in a venv
# under target/) against execd-host, in both framings: argv, set_env (the
# EXECD_ENVS file given, and for legacy the host's own one), bash sessions, exit codes, metrics. Runs
# tests/sdk/test_sdk.py against a throwaway host on a free loopback port
# with an access token; exits non-zero on any failure, or if the host logs
# an error. Bounded: each framing gets SDK_SECONDS (default 120).
#
#   scripts/sdk-compat.sh
#   EXECD_HOST=path/to/execd-host scripts/sdk-compat.sh   # no build
. "$(dirname "$0")/lib.sh"
work=$root/target/sdk-compat
budget=${SDK_SECONDS:-120}
sdk=${SDK_VERSION:-1.1.1}

ensure_venv "$work" "import importlib.metadata as m; assert m.version('opensandbox') == '$sdk'" \
    "opensandbox==$sdk"
build_host
make_sandbox

status=0
for framing in standard legacy; do
    token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    # set_env appends to the file EXECD_ENVS names: a fresh one per run.
    # The legacy run sets none: the host then keeps its own, out of the box.
    rm -rf "$sandbox/envs" "$sandbox/state"
    envs=$sandbox/envs/execd.env
    if [ "$framing" = legacy ]; then envs=; fi
    EXECD_ACCESS_TOKEN=$token EXECD_ENVS=$envs \
        start_host "$work/host.out" "$work/host-$framing.err" --sse-framing "$framing"
    echo "sdk-compat: opensandbox $sdk, $framing framing, execd-host on $host_addr"
    EXECD_ADDR=$host_addr EXECD_TOKEN=$token FRAMING=$framing \
        timeout --kill-after=10 "$budget" "$work/venv/bin/python" "$root/tests/sdk/test_sdk.py" || status=1
    host_survived "$work/host-$framing.err" || status=1
    stop_host
    host_logged_no_errors "$work/host-$framing.err" || status=1
done
echo "sdk-compat: exit $status"
exit "$status"
