# Sourced by scripts/check_image.sh and scripts/check_compose.sh: the container engine and a base image.
# Sets: engine (docker|podman), build_flags, base (python:3.11-slim or its stand-in), work (a temp folder),
# and say(). Docker where one answers, else podman (Debian's, with runc: docker/containers.conf says why).
# Where the base image cannot be pulled (no registry), a stand-in is built from Debian's packages with
# debootstrap, once per machine, and the script says so.
work=$(mktemp -d)
say() { printf '%s: %s\n' "$(basename "$0" .sh)" "$*" >&2; }

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

# pull IMAGE: true when the image is here or can be pulled
pullable() { $engine image inspect "$1" >/dev/null 2>&1 || timeout 60 $engine pull -q "$1" >/dev/null 2>&1; }

base=python:3.11-slim
if ! pullable "$base"; then
  base=localhost/deepscope-base:bookworm
  if ! $engine image inspect "$base" >/dev/null 2>&1; then
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
