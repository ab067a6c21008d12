"""A plain websockets echo server (new asyncio API), started the way PaaS platforms start one:
it listens on $PORT. It has no health-check fix, so plain HTTP (a browser tab, a preview pane,
a health check) makes websockets log ``InvalidUpgrade: missing Connection header``; run it
with FIXED=1 for the fix (answer plain HTTP with 200 in process_request)."""

import asyncio
import http
import logging
import os

from websockets.asyncio.server import serve


async def echo(websocket):
    async for message in websocket:
        await websocket.send(message)


def health_check(connection, request):
    if "Sec-WebSocket-Key" not in request.headers:
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    return None


async def main():
    process_request = health_check if os.environ.get("FIXED") else None
    async with serve(
        echo, os.environ.get("HOST", "0.0.0.0"), int(os.environ["PORT"]), process_request=process_request
    ):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    logging.basicConfig(format="%(levelname)s %(name)s %(message)s", level=logging.INFO)
    asyncio.run(main())
