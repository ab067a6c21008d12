#!/bin/sh
# Container entry point of every proxy service: fill the ${WSLAB_*} placeholders of
# the topology's config template (the file the local backend uses too), then run
# the proxy in the foreground.
#   render.sh TEMPLATE OUTPUT COMMAND [ARG...]
set -eu
template=$1
output=$2
shift 2
mkdir -p "$WSLAB_RUN_DIR"
sed -e "s|\${WSLAB_LISTEN_HOST}|$WSLAB_LISTEN_HOST|g" \
    -e "s|\${WSLAB_LISTEN_PORT}|$WSLAB_LISTEN_PORT|g" \
    -e "s|\${WSLAB_UPSTREAM_HOST}|$WSLAB_UPSTREAM_HOST|g" \
    -e "s|\${WSLAB_UPSTREAM_PORT}|$WSLAB_UPSTREAM_PORT|g" \
    -e "s|\${WSLAB_RUN_DIR}|$WSLAB_RUN_DIR|g" \
    "$template" > "$output"
exec "$@"
