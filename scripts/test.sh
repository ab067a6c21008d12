#!/usr/bin/env bash
# The test command: makes sure a Docker engine is running and the offline images are
# built (only what changed is rebuilt), then runs the whole test suite with pytest.
# Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || { echo "no Docker engine: run scripts/install.sh first" >&2; exit 2; }
  dockerd >/tmp/wslab-dockerd.log 2>&1 &
  dockerd_pid=$!
  # Stop the engine this script started, whatever happens to the tests.
  trap 'kill "$dockerd_pid" 2>/dev/null; wait "$dockerd_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 /tmp/wslab-dockerd.log >&2; exit 2; }
fi

bash scripts/build-offline-images.sh
python3 -m pytest "$@"
