#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, then runs them.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# 1) Python packages (torch is pinned to the CPU build in pyproject.toml)
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

# 2) Debian's Chromium for the browser tests (Playwright cannot download browsers here)
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "scripts/test.sh: /usr/bin/chromium is missing; install Debian's chromium package (sudo apt-get install chromium)" >&2
    exit 1
  fi
fi

# 3) Redis and PostgreSQL for the scale-out tests: say what to start if they do not answer
python3 - <<'PY'
import socket, sys
missing = []
for name, port, how in (("Redis", 6379, "redis-server --daemonize yes"),
                        ("PostgreSQL", 5432, "pg_ctlcluster <version> main start")):
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        missing.append(f"{name} is not answering on 127.0.0.1:{port}; start it (e.g. {how})")
    finally:
        s.close()
if missing:
    print("\n".join(missing), file=sys.stderr)
    sys.exit(1)
PY

# 4) lint, then the tests
python3 -m ruff check deepscope engine app client devtools tests benchmarks
exec python3 -m pytest "$@"
