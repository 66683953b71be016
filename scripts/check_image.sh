#!/usr/bin/env bash
# Build the Dockerfile and run the image for real: health check, a short run through the container's
# API with its events, the HEALTHCHECK and the non-root user; then remove what it started.
# Then, unless --no-compose, the compose deployment with that image (scripts/check_compose.sh).
# The engine and the base image: scripts/containers.sh. Prints build time, image size, start time.
# Usage: scripts/check_image.sh [--no-compose]     (CONTAINER_ENGINE=docker|podman to choose)
set -euo pipefail
cd "$(dirname "$0")/.."
name="deepscope-check-$$"
tag="localhost/deepscope:check-$$"
# shellcheck source=scripts/containers.sh
source scripts/containers.sh
cleanup() {
  $engine rm -f "$name" >/dev/null 2>&1 || true
  $engine rmi -f "$tag" >/dev/null 2>&1 || true
  rm -rf "$work" docker/wheels/torch-*.whl
}
trap cleanup EXIT

# 1) torch: a CPU wheel this machine's pip finds without downloading, else PyTorch's CPU index
python3 -m pip download -q --no-deps --only-binary=:all: -d docker/wheels torch==2.13.0 >/dev/null 2>&1 || true

# 2) build
t0=$(date +%s.%N)
$engine build "${build_flags[@]}" --build-arg BASE_IMAGE="$base" -t "$tag" . >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log" >&2; exit 1; }
t1=$(date +%s.%N)
size=$($engine image inspect --format '{{.Size}}' "$tag")

# 3) run it and wait for /healthz
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$engine run -d --name "$name" --network host -e DEEPSCOPE_PORT="$port" -e DEEPSCOPE_WORKERS=1 "$tag" >/dev/null
t2=$(date +%s.%N)
python3 - "$port" <<'PY'
import sys, time, urllib.request, json
port = sys.argv[1]
base = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + 120
while True:
    try:
        if urllib.request.urlopen(base + "/healthz", timeout=2).status == 200:
            break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("the container never answered /healthz")
        time.sleep(0.2)
PY
t3=$(date +%s.%N)

# 4) a short run through the container's API, completed, with its events
python3 - "$port" <<'PY'
import json, sys, time, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
req = urllib.request.Request(base + "/api/runs", data=json.dumps(
    {"model": {"depth": 3, "width": 16}, "train": {"epochs": 2}}).encode(), headers={"Content-Type": "application/json"})
run = json.load(urllib.request.urlopen(req, timeout=30))
deadline = time.monotonic() + 120
while run["status"] in ("queued", "running"):
    if time.monotonic() > deadline:
        sys.exit(f"the run is still {run['status']}")
    time.sleep(0.3)
    run = json.load(urllib.request.urlopen(f"{base}/api/runs/{run['id']}", timeout=10))
events = json.load(urllib.request.urlopen(f"{base}/api/runs/{run['id']}/events", timeout=10))
assert run["status"] == "completed", run
assert events["count"] > 3 and events["data"][-1]["status"] == "completed", events["count"]
print(f"check_image: a run completed in the container with {events['count']} events", file=sys.stderr)
PY

# 5) the HEALTHCHECK runs and passes, and the process is not root
$engine healthcheck run "$name" >/dev/null || [ "$engine" = docker ] || { say "HEALTHCHECK failed"; exit 1; }
user=$($engine inspect --format '{{.Config.User}}' "$name")
uid=$($engine exec "$name" id -u)
[ "$user" = 10001 ] && [ "$uid" = 10001 ] || { say "the container runs as $user/$uid, not 10001"; exit 1; }

python3 - "$t0" "$t1" "$t2" "$t3" "$size" "$engine" "$base" <<'PY'
import sys
t0, t1, t2, t3, size = map(float, sys.argv[1:6])
print(f"check_image: {sys.argv[6]} built the image on {sys.argv[7]} in {t1 - t0:.0f} s: {size / 1e9:.2f} GB; "
      f"healthy {t3 - t2:.1f} s after start; HEALTHCHECK passed; runs as uid 10001")
PY

# 6) the compose deployment, with this image
if [ "${1:-}" != --no-compose ]; then
  $engine rm -f "$name" >/dev/null
  bash scripts/check_compose.sh "$tag"
fi
