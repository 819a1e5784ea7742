# What the scripts that test a throwaway execd-host share: a Python venv
# under target/, the host binary, a private sandbox directory, starting
# the host on a free loopback port, and stopping it and cleaning up at
# exit. Sourced by scripts/sdk-compat.sh and scripts/api-fuzz.sh, never
# run:
#
#   . "$(dirname "$0")/lib.sh"
#
# Sourcing turns on `set -euo pipefail`, moves to the repository root and
# sets `root`, `script` (the script's name, for messages) and `host_bin`
# (EXECD_HOST if set, else target/release/execd-host).

set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
script=$(basename "$0" .sh)
host_bin=$(realpath -m "${EXECD_HOST:-$root/target/release/execd-host}")
sandbox=
host_pid=
host_addr=

# ensure_venv DIR PROBE PIP_ARG...: a venv at DIR/venv in which the Python
# code PROBE runs without error; made anew, with the PIP_ARGs installed,
# when it does not.
ensure_venv() {
    local dir=$1 probe=$2
    shift 2
    mkdir -p "$dir"
    if [ -x "$dir/venv/bin/python" ] && "$dir/venv/bin/python" -c "$probe" 2>/dev/null; then
        return 0
    fi
    python3 -m venv "$dir/venv"
    "$dir/venv/bin/pip" install --quiet "$@"
}

# build_host: builds the host, unless EXECD_HOST names the binary to test.
build_host() {
    if [ -z "${EXECD_HOST:-}" ]; then
        cargo build --release --quiet -p execd-host
    fi
}

# make_sandbox: a fresh private directory in `sandbox`, for the host to run
# in (its cwd, HOME and state dir); at exit the host is stopped and the
# directory removed.
make_sandbox() {
    sandbox=$(mktemp -d -t "execd-$script.XXXXXX")
    trap 'stop_host; rm -rf "$sandbox"' EXIT
}

# start_host OUT ERR ARG...: runs the host in the sandbox (HOME there,
# EXECD_LOG=warn, state dir `state` in it) on 127.0.0.1:0 with the extra
# ARGs, its stdout to OUT and stderr to ERR; variables assigned before the
# call reach it too (`EXECD_ACCESS_TOKEN=$t start_host ...`). Sets
# `host_pid`, and `host_addr` once the host prints `listening on ADDR`;
# exits the script, with the host's stderr, if it dies first or does not
# start within 30 s.
start_host() {
    local out=$1 err=$2
    shift 2
    (
        cd "$sandbox"
        HOME=$sandbox EXECD_LOG=warn exec "$host_bin" \
            --listen 127.0.0.1:0 --state-dir "$sandbox/state" "$@"
    ) >"$out" 2>"$err" &
    host_pid=$!
    host_addr=
    for _ in $(seq 1 300); do
        host_addr=$(sed -n 's/^listening on //p' "$out" 2>/dev/null | head -n 1)
        [ -n "$host_addr" ] && return 0
        kill -0 "$host_pid" 2>/dev/null || { cat "$err" >&2; exit 1; }
        sleep 0.1
    done
    echo "$script: the host did not start" >&2
    exit 1
}

# stop_host: SIGTERM to the host, if it runs, and waits for it to exit.
stop_host() {
    if [ -n "$host_pid" ] && kill -0 "$host_pid" 2>/dev/null; then
        kill -TERM "$host_pid" 2>/dev/null || true
        wait "$host_pid" 2>/dev/null || true
    fi
    host_pid=
}

# host_survived ERR: whether the host still runs; if not, says so with the
# end of its stderr (the file ERR).
host_survived() {
    if kill -0 "$host_pid" 2>/dev/null; then
        return 0
    fi
    echo "$script: the host died during the run" >&2
    tail -n 50 "$1" >&2
    return 1
}

# host_logged_no_errors ERR: whether the host's stderr (the file ERR) is
# free of panics and errors; if not, shows the first of them.
host_logged_no_errors() {
    if ! grep -qiE "panicked|ERROR" "$1"; then
        return 0
    fi
    echo "$script: the host logged errors:" >&2
    grep -iE "panicked|ERROR" "$1" | head -n 20 >&2
    return 1
}
