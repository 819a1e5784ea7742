#!/usr/bin/env bash
# The Python client (sdks/python, execd-client) against execd-host: a venv
# under target/ with the package and its `test` extra (from PyPI), then
# `mypy --strict` and its pytest suite, which starts the real host binary
# itself (on free loopback ports, in both framings). Bounded by
# PY_SECONDS (default 300).
#
#   scripts/python-client.sh
#   EXECD_HOST=path/to/execd-host scripts/python-client.sh   # no build
. "$(dirname "$0")/lib.sh"
work=$root/target/python-client
budget=${PY_SECONDS:-300}
pkg=$root/sdks/python

# Reinstalled whenever the venv lacks it: an editable install follows the
# source, so a changed client needs no reinstall.
ensure_venv "$work" "import execd_client, pytest, mypy" -e "$pkg[test]"
build_host
export EXECD_HOST=$host_bin

echo "python-client: mypy --strict"
(cd "$pkg" && "$work/venv/bin/mypy" --strict src)
echo "python-client: pytest against $host_bin"
(cd "$pkg" && timeout --kill-after=10 "$budget" "$work/venv/bin/python" -m pytest -q -rs -p no:cacheprovider tests)
