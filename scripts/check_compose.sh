#!/usr/bin/env bash
# Bring the workshop deployment (docker-compose.yml) up for real with IMAGE: web, two Celery workers,
# Redis and PostgreSQL, with a class token. Then, through the web container's API: a request without
# the token is refused; a lesson runs with the token and every run completes; the instructor sees both
# workers connected and lists the runs. Bring it down, leaving no container, network or volume behind.
# podman-compose (PyPI's: Debian's does not expand ${VAR:-} nor scale) where there is no Docker, and
# stand-ins for the redis and postgres images where no registry is reachable (docker/standins/).
# Usage: scripts/check_compose.sh IMAGE        (IMAGE: a deepscope image built from the Dockerfile)
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:?usage: scripts/check_compose.sh IMAGE (a deepscope image built from the Dockerfile)}
# shellcheck source=scripts/containers.sh
source scripts/containers.sh
project="deepscope-compose-$$"

# 1) compose itself
if [ "$engine" = podman ]; then
  python3 -c 'import podman_compose' 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check "podman-compose==1.6.0" >/dev/null
  compose=(python3 -m podman_compose -p "$project")
else
  compose=(docker compose -p "$project")
fi
cleanup() {
  "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# 2) redis and postgres: the real images, or one stand-in for both
redis_image=redis:7-alpine
pg_image=postgres:16-alpine
if ! pullable "$redis_image" || ! pullable "$pg_image"; then
  standin=localhost/deepscope-standin-services:bookworm
  say "$redis_image and $pg_image cannot be pulled here: a stand-in for both from Debian's packages (docker/standins)"
  $engine build "${build_flags[@]}" --build-arg BASE_IMAGE="$base" -t "$standin" docker/standins \
    >"$work/standin.log" 2>&1 || { tail -30 "$work/standin.log" >&2; exit 1; }
  redis_image=$standin
  pg_image=$standin
fi

# 3) up: web + 2 workers + redis + postgres, with a class token and an instructor token
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export DEEPSCOPE_IMAGE="$image" DEEPSCOPE_REDIS_IMAGE="$redis_image" DEEPSCOPE_POSTGRES_IMAGE="$pg_image"
export DEEPSCOPE_HOST_PORT="$port" DEEPSCOPE_TOKEN="class-$$-$RANDOM" DEEPSCOPE_INSTRUCTOR_TOKEN="teacher-$$-$RANDOM"
t0=$(date +%s.%N)
"${compose[@]}" up -d --scale worker=2 >"$work/up.log" 2>&1 || { tail -40 "$work/up.log" >&2; exit 1; }

# 4) through the web container's API
python3 - "$port" "$t0" <<'PY' || { "${compose[@]}" logs >"$work/logs.txt" 2>&1; tail -60 "$work/logs.txt" >&2; exit 1; }
import os, sys, time
import httpx
from deepscope.client import DeepScope

url, t0 = f"http://127.0.0.1:{sys.argv[1]}", float(sys.argv[2])
token, teacher = os.environ["DEEPSCOPE_TOKEN"], {"X-DeepScope-Instructor": os.environ["DEEPSCOPE_INSTRUCTOR_TOKEN"]}
deadline = time.monotonic() + 240
while True:
    try:
        if httpx.get(url + "/healthz", timeout=2).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    if time.monotonic() > deadline:
        sys.exit("the web container never answered /healthz")
    time.sleep(0.5)
healthy = time.time() - t0
refused = httpx.get(url + "/api/runs", timeout=10)
assert refused.status_code == 401, f"a request without the token got {refused.status_code}"
with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}", **teacher}) as instructor:
    while len(instructor.get("/api/instructor/workers").json()["data"]) < 2:
        if time.monotonic() > deadline:
            sys.exit(f"workers connected: {instructor.get('/api/instructor/workers').json()}")
        time.sleep(1)
    workers = instructor.get("/api/instructor/workers").json()["data"]
    with DeepScope(url, token=token) as student:
        runs = student.start_lesson("zero-init")
        done = [student.wait(run["id"], timeout=300) for run in runs]
        outcome = student.outcome("zero-init", runs[0]["group"])
    assert all(run["status"] == "completed" for run in done), [run["status"] for run in done]
    assert outcome["finished"], outcome
    listed = {run["id"] for run in instructor.get("/api/instructor/runs").json()["data"]}
    assert {run["id"] for run in runs} <= listed, "the instructor does not list the lesson's runs"
print(f"check_compose: web + {len(workers)} workers + redis + postgres healthy {healthy:.1f} s after up; "
      f"lesson zero-init: {len(done)} runs completed, {sum(c['held'] is True for c in outcome['checks'])} of "
      f"{len(outcome['checks'])} checks held; the instructor lists them; no token: 401")
PY

# 5) down, and nothing left behind
"${compose[@]}" down -v --remove-orphans >"$work/down.log" 2>&1 || { tail -20 "$work/down.log" >&2; exit 1; }
left=$($engine ps -a --format '{{.Names}}' | grep -c "^${project}" || true)
volumes=$($engine volume ls --format '{{.Name}}' | grep -c "^${project}" || true)
networks=$($engine network ls --format '{{.Name}}' | grep -c "^${project}" || true)
[ "$left$volumes$networks" = 000 ] || { say "left behind: $left containers, $volumes volumes, $networks networks"; exit 1; }
echo "check_compose: brought down; no container, volume or network left"
