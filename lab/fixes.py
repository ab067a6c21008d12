"""The code the lab tells you to add to your server: one complete program per websockets API.

Plain HTTP reaching a WebSocket port (a browser tab, a preview pane, a health
check) makes websockets answer 426 and log ``missing Connection header``.
The fix is a ``process_request`` hook that answers such requests before
websockets checks the upgrade, and its code depends on the API the server
uses: the new asyncio API (``websockets.asyncio.server``, what
``websockets.serve`` is since 14.0), the threading one
(``websockets.sync.server``) or the legacy one (``websockets.legacy.server``,
what ``websockets.serve`` was before 14.0), whose hook takes
``(path, request_headers)`` and returns a ``(status, headers, body)`` tuple.

Every program here is whole (imports, the hook, a handler, the server on
``$PORT``): ``tests/test_fix_programs.py`` runs each one on real websockets
releases and checks that a plain GET gets 200 and a WebSocket client still
connects. :func:`choose_api` reads which API a server runs from its log line
(a traceback's paths, the error's wording) or from its release.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

_HOOK_COMMENT = """\
    # Browser tabs, preview panes and health checks send no
    # Sec-WebSocket-Key: answer them with 200 before websockets
    # checks the upgrade (it would answer 426 and log "{wording}
    # Connection header"). A client whose upgrade a proxy stripped
    # keeps its key: it still fails, and shows in the log, until
    # that proxy is fixed."""

_LISTEN_COMMENT = """\
    # 0.0.0.0: platforms (Replit included) only reach a port bound
    # on every interface."""

ASYNCIO_PROGRAM = f"""\
import asyncio
import os
from http import HTTPStatus

from websockets.asyncio.server import serve


def process_request(connection, request):
{_HOOK_COMMENT.format(wording="missing")}
    if "Sec-WebSocket-Key" not in request.headers:
        return connection.respond(HTTPStatus.OK, "OK\\n")
    return None


async def handler(websocket):  # your handler
    async for message in websocket:
        await websocket.send(message)


async def main():
{_LISTEN_COMMENT}
    port = int(os.environ.get("PORT", "8000"))
    async with serve(
        handler, "0.0.0.0", port, process_request=process_request
    ):
        await asyncio.get_running_loop().create_future()  # forever


if __name__ == "__main__":
    asyncio.run(main())
"""

SYNC_PROGRAM = f"""\
import os
from http import HTTPStatus

from websockets.sync.server import serve


def process_request(connection, request):
{_HOOK_COMMENT.format(wording="missing")}
    if "Sec-WebSocket-Key" not in request.headers:
        return connection.respond(HTTPStatus.OK, "OK\\n")
    return None


def handler(websocket):  # your handler
    for message in websocket:
        websocket.send(message)


def main():
{_LISTEN_COMMENT}
    port = int(os.environ.get("PORT", "8000"))
    with serve(
        handler, "0.0.0.0", port, process_request=process_request
    ) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
"""

LEGACY_PROGRAM = f"""\
import asyncio
import os
from http import HTTPStatus

# What websockets.serve was before 14.0:
from websockets.legacy.server import serve


async def process_request(path, request_headers):
{_HOOK_COMMENT.format(wording="empty")}
    if "Sec-WebSocket-Key" not in request_headers:
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        return HTTPStatus.OK, headers, b"OK\\n"
    return None


async def handler(websocket):  # your handler
    async for message in websocket:
        await websocket.send(message)


async def main():
{_LISTEN_COMMENT}
    port = int(os.environ.get("PORT", "8000"))
    async with serve(
        handler, "0.0.0.0", port, process_request=process_request
    ):
        await asyncio.get_running_loop().create_future()  # forever


if __name__ == "__main__":
    asyncio.run(main())
"""


@dataclass(frozen=True)
class Api:
    """One of websockets' server APIs, and the fix written for it."""

    id: str
    name: str
    """For a person: 'the new asyncio API'."""
    module: str
    since: tuple[int, int]
    """The first release that has it (for this program's imports and handler signature)."""
    hook: str
    """process_request's signature on this API."""
    program: str
    """The fix as a complete program."""
    print_headers: str
    """One line to put at the top of process_request to see what each request carried."""
    note: str = ""


ASYNCIO = Api(
    id="asyncio",
    name="the new asyncio API",
    module="websockets.asyncio.server",
    since=(13, 0),
    hook="process_request(connection, request)",
    program=ASYNCIO_PROGRAM,
    print_headers="print(request.path, list(request.headers.raw_items()), flush=True)",
    note="what `websockets.serve` is since 14.0; a hook written for the legacy API as "
    "`(path, request_headers)` receives `(connection, request)` here",
)
SYNC = Api(
    id="sync",
    name="the threading API",
    module="websockets.sync.server",
    since=(12, 0),
    hook="process_request(connection, request)",
    program=SYNC_PROGRAM,
    print_headers="print(request.path, list(request.headers.raw_items()), flush=True)",
)
LEGACY = Api(
    id="legacy",
    name="the legacy API",
    module="websockets.legacy.server",
    since=(10, 1),
    hook="process_request(path, request_headers)",
    program=LEGACY_PROGRAM,
    print_headers="print(path, list(request_headers.raw_items()), flush=True)",
    note="what `websockets.serve` was before 14.0; deprecated since 14.0, so importing it "
    "warns, and the new asyncio API is the way forward",
)
APIS = {api.id: api for api in (ASYNCIO, SYNC, LEGACY)}

SIGTERM_PROGRAM = """\
import asyncio
import signal

from websockets.asyncio.server import serve


async def handler(websocket):  # your handler
    async for message in websocket:
        await websocket.send(message)


async def main():
    async with serve(handler, "0.0.0.0", 8080) as server:
        # On SIGTERM, close(): stop accepting, close each connection
        # with 1001 Going Away.
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, server.close)
        await server.wait_closed()


asyncio.run(main())
"""
"""A websockets server that handles SIGTERM as a platform's redeploy expects: every client gets
1001 Going Away at once, not 1006 at the SIGKILL (the lifecycle suite's redeploy rules)."""

PROCESS_REQUEST_FIX = (
    "Answer requests that do not ask for a WebSocket before websockets checks the upgrade, in "
    "process_request. A complete program for websockets' new asyncio API (websockets.serve since "
    '14.0); `wslab explain "<the error>"` gives the legacy API\'s:\n'
    + textwrap.indent(ASYNCIO_PROGRAM, "    ")
    + "or keep browsers, preview panes and health checks off the WebSocket URL."
)
"""The fix diagnosis gives for plain HTTP at the WebSocket port (every cell of ``wslab run``)."""


@dataclass(frozen=True)
class ApiChoice:
    """Which API's code to show, and why."""

    apis: tuple[Api, ...]
    why: str
    """For a person, as Markdown the lab wrote; ``{}`` stands for the evidence."""
    evidence: str = ""
    """The words of the log line (or the release) that decided: the page quotes them as code."""

    @property
    def known(self) -> bool:
        return len(self.apis) == 1


_PATHS = [
    (re.compile(r"websockets/legacy/[\w/]*\.py"), LEGACY),
    (re.compile(r"websockets/asyncio/[\w/]*\.py"), ASYNCIO),
    (re.compile(r"websockets/sync/[\w/]*\.py"), SYNC),
]
_PROTOCOL_PATH = re.compile(r"websockets/server\.py")
"""The Sans-I/O handshake (10.0 and later), which the new APIs share; before 10.0, the legacy server."""
_NEW_WORDING = re.compile(r"missing (?:Connection|Upgrade) header", re.IGNORECASE)
_LEGACY_WORDING = re.compile(r"empty (?:Connection|Upgrade) header", re.IGNORECASE)
"""For a request without the header, the new implementation says 'missing', the legacy one 'empty'."""


def release(version: str | None) -> tuple[int, int] | None:
    """'15.0.1' -> (15, 0); None when it is not a version number."""
    found = re.match(r"\s*(\d+)(?:\.(\d+))?", version or "")
    return (int(found.group(1)), int(found.group(2) or 0)) if found else None


def _new_api(version: tuple[int, int] | None) -> Api:
    """The new implementation's API a server of this release most likely runs."""
    return SYNC if version is not None and version < ASYNCIO.since else ASYNCIO


def choose_api(log: str, version: str | None = None) -> ApiChoice:
    """Which websockets API the server that logged ``log`` runs: a traceback's paths first,
    then the error's wording, then the release (``--websockets``); both main APIs, the new
    asyncio one first, when nothing tells."""
    text = log.replace("\\", "/")
    number = release(version)
    for pattern, api in _PATHS:
        if found := pattern.search(text):
            return ApiChoice((api,), "your traceback runs {}", found.group())
    if found := _PROTOCOL_PATH.search(text):
        if number is not None and number < (10, 0):
            return ApiChoice((LEGACY,), "before websockets 10.0, {} is the legacy server", found.group())
        return ApiChoice(
            (_new_api(number),),
            "your traceback raises in {}, the new implementation's handshake",
            found.group(),
        )
    if found := _LEGACY_WORDING.search(text):
        return ApiChoice((LEGACY,), "only the legacy implementation logs {}", found.group())
    if found := _NEW_WORDING.search(text):
        return ApiChoice(
            (_new_api(number),),
            "only the new implementation logs {} (the legacy one says `empty`)",
            found.group(),
        )
    if number is not None:
        evidence = f"websockets {version}"
        if number >= (14, 0):
            return ApiChoice((ASYNCIO,), "`websockets.serve` is the new asyncio API in {}", evidence)
        if number >= ASYNCIO.since:
            return ApiChoice(
                (LEGACY, ASYNCIO),
                "`websockets.serve` is still the legacy API in {}, beside the new one",
                evidence,
            )
        return ApiChoice((LEGACY,), "`websockets.serve` is the legacy API in {}", evidence)
    return ApiChoice(
        (ASYNCIO, LEGACY),
        "your log line does not say which API your server runs; the new asyncio API "
        "(`websockets.serve` since 14.0) comes first",
    )
