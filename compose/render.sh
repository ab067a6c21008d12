#!/bin/sh
# Container entry point of every proxy service: fill the ${WSLAB_*} placeholders of
# the topology's config template (the file the local backend uses too) from the
# environment, write the proxy's version to $WSLAB_VERSION_FILE (from $WSLAB_VERSION_COMMAND),
# then run the proxy in the foreground.
#   render.sh TEMPLATE OUTPUT COMMAND [ARG...]
set -eu
template=$1
output=$2
shift 2
# The output may sit in a folder of the run folder (Traefik's watched directory, lab/proxies.py).
mkdir -p "$WSLAB_RUN_DIR" "$(dirname "$output")"
script=""
for name in $(env | sed -n 's/^\(WSLAB_[A-Z0-9_]*\)=.*/\1/p'); do
  value=$(printenv "$name" | sed 's/[|&\\]/\\&/g')
  script="${script}s|\${${name}}|${value}|g;"
done
sed -e "$script" "$template" > "$output"
missing=$(grep -o '\${WSLAB_[A-Z0-9_]*}' "$output" | sort -u | tr '\n' ' ' || true)
if [ -n "$missing" ]; then
  echo "render.sh: no value for $missing" >&2
  exit 2
fi
# The proxy's version, where the runner (which cannot exec into this container) reads it:
# the stack's versions volume, when there is one.
if [ -n "${WSLAB_VERSION_FILE:-}" ] && [ -d "$(dirname "$WSLAB_VERSION_FILE")" ]; then
  $WSLAB_VERSION_COMMAND >"$WSLAB_VERSION_FILE" 2>&1 || true
fi
exec "$@"
