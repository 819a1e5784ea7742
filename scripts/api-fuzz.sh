#!/usr/bin/env bash
# API fuzzing: schemathesis (from PyPI, in a venv under target/) against
# specs/execd-api.yaml, on a throwaway execd-host listening on a free
# loopback port. Checks that no response is a 5xx and that status codes,
# content types, headers and bodies conform to the spec, and (a check of
# its own, in the hooks below) that every streamed event's JSON matches
# the spec's `Event` with `event:`/`id:` lines to match. Exits non-zero on
# any failure, or if the host dies or logs an error. Bounded: at most ~5
# minutes.
#
# The host runs what POST /command bodies say, so a hook rewrites every
# generated non-blank `command` into the no-op `: api-fuzz '<the text>'`
# (blank ones and ones with NUL are left as they are: the host must reject
# those before running anything), drops environment variables bash would
# act on, and the host runs in a temporary directory with HOME pointing
# there.
#
#   scripts/api-fuzz.sh                 # default budget
#   MAX_EXAMPLES=200 scripts/api-fuzz.sh
#   EXECD_HOST=path/to/execd-host scripts/api-fuzz.sh   # no build
. "$(dirname "$0")/lib.sh"
work=$root/target/api-fuzz
max_examples=${MAX_EXAMPLES:-100}
budget=${FUZZ_SECONDS:-240}
seed=${SEED:-20261124}
spec=$(realpath -m "${SPEC:-$root/specs/execd-api.yaml}")

ensure_venv "$work" "import importlib.metadata as m; m.version('schemathesis')" "schemathesis>=4,<5"
build_host

cat >"$work/api_fuzz_hooks.py" <<'EOF'
"""Keeps generated commands harmless (the host runs POST /command bodies),
and points most generated ids at commands that exist, so the checks reach
the handlers instead of stopping at 404."""
import json
import os
import zlib

import jsonschema_rs
import schemathesis
import yaml

IDS = os.environ.get("FUZZ_IDS", "").split()
with open(os.environ["FUZZ_SPEC"], encoding="utf-8") as f:
    SPEC = yaml.safe_load(f)
EVENT = jsonschema_rs.validator_for(
    {"$ref": "#/components/schemas/Event", "components": SPEC["components"]}
)

NOOP = ": api-fuzz "
SHELL_ENV = {"ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "IFS"}


@schemathesis.hook("before_call")
def harmless_commands(context, case, kwargs):
    body = case.body
    if not isinstance(body, dict):
        return
    command = body.get("command")
    if (
        isinstance(command, str)
        and command.strip()
        and "\0" not in command
        and not command.startswith(NOOP)
    ):
        # The same case may be sent again (stateful runs, shrinking): wrap once.
        body["command"] = NOOP + "'" + command.replace("'", "'\\''") + "'"
    argv = body.get("argv")
    if (
        isinstance(argv, list)
        and argv
        and all(isinstance(a, str) for a in argv)
        and argv[0]
        and not any("\0" in a for a in argv)
        and argv[0] != "true"
    ):
        # `true` ignores its arguments: the rest still reach the host.
        body["argv"] = ["true"] + argv
    envs = body.get("envs")
    if isinstance(envs, dict):
        for key in list(envs):
            if not isinstance(key, str) or key in SHELL_ENV or key.startswith("BASH"):
                del envs[key]


@schemathesis.hook("before_call")
def use_known_ids(context, case, kwargs):
    for params in (case.path_parameters, case.query):
        if IDS and isinstance(params, dict) and isinstance(params.get("id"), str):
            # Deterministic: 7 in 10 generated ids become a known one.
            n = zlib.crc32(params["id"].encode("utf-8", "replace"))
            if n % 10 < 7:
                params["id"] = IDS[n % len(IDS)]


def sse_events(text):
    """(fields, data) of each event: WHATWG parsing, or bare JSON (legacy)."""
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        fields, data = {}, []
        for line in block.split("\n"):
            if line.startswith(":"):
                continue
            if line.startswith("{"):
                data.append(line)
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
        if data:
            yield fields, "\n".join(data)


@schemathesis.check
def event_payloads_match_spec(ctx, response, case):
    """Every event's JSON matches components/schemas/Event; in standard
    framing `event:` is its type and `id:` its eid (present iff it has one)."""
    if not response.headers.get("content-type", [""])[0].startswith("text/event-stream"):
        return None
    for fields, data in sse_events(response.text):
        event = json.loads(data)
        errors = [e.message for e in EVENT.iter_errors(event)]
        if errors:
            raise AssertionError(f"event {data} does not match Event: {errors[:3]}")
        if fields:
            if fields.get("event") != event.get("type"):
                raise AssertionError(f"event: {fields.get('event')!r} for {data}")
            eid = event.get("eid")
            if fields.get("id") != (None if eid is None else str(eid)):
                raise AssertionError(f"id: {fields.get('id')!r} for {data}")
    return None
EOF

make_sandbox
rm -f "$work/host.out" "$work/host.err"
start_host "$work/host.out" "$work/host.err"
addr=$host_addr
echo "api-fuzz: execd-host pid $host_pid on $addr; schemathesis $("$work/venv/bin/schemathesis" --version)"

# Finished commands for the generated requests to find: background ones
# (with logs), a foreground one, a failed one.
ids=
for body in '{"command":"echo fuzz-out; echo fuzz-err >&2","background":true}' \
    '{"command":"echo fuzz-fg"}' '{"command":"echo x; exit 3","background":true}'; do
    # python3 rather than curl: the venv needs it anyway.
    id=$(BODY=$body ADDR=$addr python3 -c '
import os, urllib.request
req = urllib.request.Request("http://" + os.environ["ADDR"] + "/command",
    data=os.environ["BODY"].encode(), headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=10).read().decode())' \
        | sed -n 's/.*"type":"init","text":"\([0-9a-f]*\)".*/\1/p' | head -n 1)
    [ -n "$id" ] || { echo "api-fuzz: could not start a command" >&2; exit 1; }
    ids="$ids $id"
done
sleep 0.5
export FUZZ_IDS=$ids FUZZ_SPEC=$spec

status=0
(
    cd "$sandbox"
    PYTHONPATH=$work SCHEMATHESIS_HOOKS=api_fuzz_hooks timeout --kill-after=10 "$budget" \
        "$work/venv/bin/schemathesis" run "$spec" \
        --url "http://$addr" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,event_payloads_match_spec \
        --max-examples "$max_examples" \
        --exclude-path /metrics/watch \
        --seed "$seed" \
        --workers 1 \
        --request-timeout 15 \
        --suppress-health-check all \
        --report junit,ndjson --report-dir "$work/report"
) || status=$?

host_survived "$work/host.err" || status=1
host_logged_no_errors "$work/host.err" || status=1
[ "$status" = 124 ] && echo "api-fuzz: over the time budget of ${budget}s" >&2
echo "api-fuzz: exit $status (reports in $work/report)"
exit "$status"
