#!/usr/bin/env bash
# Build the Dockerfile and run the image for real: health check, a short run through the container's
# API with its events, the HEALTHCHECK and the non-root user; then remove what it started.
# Docker where one answers, else podman (Debian's, with runc: docker/containers.conf says why).
# Where the base image cannot be pulled (no registry), a stand-in is built from Debian's packages with
# debootstrap, once per machine, and the script says so. Prints build time, image size, start time.
# Usage: scripts/check_image.sh            (CONTAINER_ENGINE=docker|podman to choose)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
name="deepscope-check-$$"
tag="localhost/deepscope:check-$$"
say() { printf 'check_image: %s\n' "$*" >&2; }

# 1) the engine
engine=${CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker; else engine=podman; fi
fi
if [ "$engine" = podman ]; then
  if ! command -v podman >/dev/null; then
    say "installing Debian's podman, runc and debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
  fi
  nofile=$(ulimit -Hn); nproc=$(ulimit -Hu); [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
  sed "s/^netns = \"host\"$/netns = \"host\"\ndefault_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]/" \
    docker/containers.conf > "$work/containers.conf"
  export CONTAINERS_CONF="$work/containers.conf"
  build_flags=(--format docker --network host)
else
  build_flags=(--network host)
fi
cleanup() {
  $engine rm -f "$name" >/dev/null 2>&1 || true
  $engine rmi -f "$tag" >/dev/null 2>&1 || true
  rm -rf "$work" docker/wheels/torch-*.whl
}
trap cleanup EXIT

# 2) the base image: the real one, or a stand-in
base=python:3.11-slim
if ! timeout 60 $engine pull -q "$base" >/dev/null 2>&1; then
  base=localhost/deepscope-base:bookworm
  if ! $engine image exists "$base" 2>/dev/null && ! $engine image inspect "$base" >/dev/null 2>&1; then
    say "python:3.11-slim cannot be pulled here: building a stand-in from Debian's packages (debootstrap)"
    rootfs="$work/rootfs"
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates bookworm "$rootfs" \
      >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"  # HTTPS is re-signed here
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
    ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
    ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
    tar -C "$rootfs" -c . | $engine import - "$base" >/dev/null
  else
    say "python:3.11-slim cannot be pulled here: using the stand-in $base built earlier"
  fi
fi

# 3) torch: a CPU wheel this machine's pip finds without downloading, else PyTorch's CPU index
python3 -m pip download -q --no-deps --only-binary=:all: -d docker/wheels torch==2.13.0 >/dev/null 2>&1 || true

# 4) build
t0=$(date +%s.%N)
$engine build "${build_flags[@]}" --build-arg BASE_IMAGE="$base" -t "$tag" . >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log" >&2; exit 1; }
t1=$(date +%s.%N)
size=$($engine image inspect --format '{{.Size}}' "$tag")

# 5) run it and wait for /healthz
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

# 6) a short run through the container's API, completed, with its events
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

# 7) the HEALTHCHECK runs and passes, and the process is not root
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
