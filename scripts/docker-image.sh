#!/usr/bin/env bash
# Builds deploy/Dockerfile and checks the image: the container starts, its
# probes answer without the token, the main listener wants it, and a
# command runs as the unprivileged user. Where no Docker daemon answers,
# says so and exits 0 (CI machines have the client, not the daemon).
#
#   scripts/docker-image.sh
set -euo pipefail
cd "$(dirname "$0")/.."
script=docker-image
if ! command -v docker >/dev/null || ! timeout 20 docker info >/dev/null 2>&1; then
    echo "$script: SKIPPED: no Docker daemon answers here (docker info failed); the image was not built"
    exit 0
fi
tag=execd-host:check
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
docker build -f deploy/Dockerfile --build-arg GIT_COMMIT="$commit" -t "$tag" .
token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
container=$(docker run -d --rm -e EXECD_ACCESS_TOKEN="$token" \
    -p 127.0.0.1::44772 -p 127.0.0.1::9464 "$tag")
trap 'docker stop -t 10 "$container" >/dev/null 2>&1 || true' EXIT
api=$(docker port "$container" 44772/tcp | head -n 1)
metrics=$(docker port "$container" 9464/tcp | head -n 1)
ready=
for _ in $(seq 1 100); do
    if curl -fsS --max-time 2 "http://$metrics/readyz" >/dev/null 2>&1; then
        ready=1 && break
    fi
    sleep 0.3
done
[ -n "$ready" ] || { echo "$script: /readyz never answered 200" >&2; docker logs "$container" >&2; exit 1; }
curl -fsS --max-time 5 "http://$metrics/healthz" | grep -qx ok
status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$api/ping")
[ "$status" = 401 ] || { echo "$script: /ping without the token answered $status, not 401" >&2; exit 1; }
out=$(curl -fsS --max-time 30 -H "X-EXECD-ACCESS-TOKEN: $token" -H 'Content-Type: application/json' \
    -d '{"command":"id -un"}' "http://$api/command")
echo "$out" | grep -q '"text":"execd"' || { echo "$script: the command did not run as execd: $out" >&2; exit 1; }
echo "$script: ok: $tag answers its probes, wants its token, runs commands as execd"
