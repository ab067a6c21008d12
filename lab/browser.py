"""Real headless Chromium as a scenario client.

Two steps use it: ``browser_visit`` (a tab loads the WebSocket URL as a page,
like a person, a preview pane or a link preview) and ``browser_websocket``
(``new WebSocket(url)`` from a page). One Chromium serves a whole run; every
cell gets its own browser context, so no cookie, cache entry or pooled
connection passes between cells. Chromium is driven over the DevTools
protocol with websockets' own client, and the transcript is built from what
Chromium reported it sent and received (its Network events), so a browser cell
carries the same evidence as a raw one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .probe import wire
from .processes import ManagedProcess, log_tail
from .records import BrowserRequest, Close, RequestHead, ResponseHead
from .run_folders import PREFIX, TemporaryRunFolder

CHROMIUM = Path("/usr/lib/chromium/chromium")
"""The binary itself: Debian's /usr/bin/chromium wrapper adds flags of its own."""

INSTALL_HINT = "apt-get install -y chromium"

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]

OPEN_TABS = 4
"""Tabs open at once: more only make Chromium slower on a small machine."""

FAVICON_WAIT = 1.5
"""Seconds a visit waits after the page for Chromium's own follow-up request (/favicon.ico)."""

PAGE = b"<!doctype html><title>wslab page</title><p>The page a WebSocket is opened from.</p>"


CLOSED: dict[str, Any] = {}
"""The answer every pending command gets when the DevTools connection ends."""


LOOPBACK = ("localhost", "127.0.0.1")


def loopback_only(hosts: set[str]) -> list[str]:
    """Flags that keep Chromium's traffic on this machine, ``hosts`` excepted.

    No name resolves but the allowed ones, and whatever Chromium would send to a
    non-loopback address goes to a proxy on port 9 of 127.0.0.1, where nothing
    listens (loopback itself bypasses proxies), so no background request leaves.
    """
    allowed = sorted(hosts - set(LOOPBACK))
    kept = [*LOOPBACK, *allowed]
    rules = ", ".join(["MAP * ~NOTFOUND", *(f"EXCLUDE {host}" for host in kept)])
    flags = [f"--host-resolver-rules={rules}", "--proxy-server=http://127.0.0.1:9"]
    if allowed:
        flags.append(f"--proxy-bypass-list={';'.join(allowed)}")
    return flags


class BrowserUnavailable(Exception):
    """Chromium is missing or would not start; carries why, with the install hint or its log."""


class DevTools:
    """A DevTools protocol connection: commands by id, events queued per session."""

    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for text in self._connection:
                message = json.loads(text)
                if "id" in message:
                    reply = self._replies.get(message["id"])
                    if reply is not None and not reply.done():
                        reply.set_result(message)
                elif message.get("sessionId") in self._events:
                    self._events[message["sessionId"]].put_nowait(message)
        # A result, not an exception: a caller cancelled meanwhile (Ctrl-C) never reads it.
        for reply in self._replies.values():
            if not reply.done():
                reply.set_result(CLOSED)

    async def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> Any:
        """Send one command and return its result; raises RuntimeError with Chromium's message,
        ConnectionError once the DevTools connection is gone."""
        number = next(self._ids)
        reply = self._replies[number] = asyncio.get_running_loop().create_future()
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            await self._connection.send(json.dumps(message))
            answer = await reply
        except ConnectionClosed:
            answer = CLOSED
        finally:
            self._replies.pop(number, None)
        if answer is CLOSED:
            raise ConnectionError("Chromium closed the DevTools connection")
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error'].get('message', answer['error'])}")
        return answer["result"]

    def subscribe(self, session: str) -> asyncio.Queue[dict[str, Any]]:
        self._events[session] = asyncio.Queue()
        return self._events[session]

    def unsubscribe(self, session: str) -> None:
        self._events.pop(session, None)

    async def close(self) -> None:
        await self._connection.close()
        with contextlib.suppress(Exception):
            await self._reader


@dataclass
class Tab:
    """One cell's page, in a browser context of its own, and the events it produced."""

    devtools: DevTools
    session: str
    queue: asyncio.Queue[dict[str, Any]]
    events: list[dict[str, Any]] = field(default_factory=list)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return await self.devtools.call(method, params, self.session)

    async def wait_for(self, done: Any, timeout: float) -> bool:
        """Collect events until ``done(events)`` is true or ``timeout`` s pass; return which."""
        deadline = time.monotonic() + timeout
        while not done(self.events):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                self.events.append(await asyncio.wait_for(self.queue.get(), remaining))
            except TimeoutError:
                return False
        return True

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"].get("text", "script failed"))
        return result["result"].get("value")

    def named(self, method: str) -> list[dict[str, Any]]:
        return named(self.events, method)


class Chromium:
    """One headless Chromium for a run, started on first use, with a loopback page server."""

    def __init__(self) -> None:
        self.hosts: set[str] = set()
        """Host names beyond loopback that pages may reach: a remote target's, if any."""
        self._profile: TemporaryRunFolder | None = None
        self._process: ManagedProcess | None = None
        self._devtools: DevTools | None = None
        self._pages: asyncio.Server | None = None
        self._starting: asyncio.Task[None] | None = None
        self.tab_slot = asyncio.Semaphore(OPEN_TABS)
        """Held by the runner around a browser cell, so that a cell's timeouts start with its tab."""
        self.version = ""

    async def ensure_started(self) -> None:
        """Start Chromium once, however many cells ask at the same time."""
        if self._starting is None:
            self._starting = asyncio.create_task(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        if not CHROMIUM.exists():
            raise BrowserUnavailable(f"Chromium is not installed ({CHROMIUM} missing): {INSTALL_HINT}")
        # A folder a kill -9 of the run leaves is removed by the next command (lab/run_folders.py).
        self._profile = TemporaryRunFolder(prefix=f"{PREFIX}chromium-")
        folder = self._profile.path
        log = folder / "chromium.log"
        argv = [
            str(CHROMIUM),
            *FLAGS,
            *loopback_only(self.hosts),
            f"--user-data-dir={folder / 'profile'}",
            "about:blank",
        ]
        self._process = ManagedProcess("chromium", argv, log)
        await self._process.start()
        port_file = folder / "profile" / "DevToolsActivePort"
        deadline = time.monotonic() + 20
        while len(lines := (port_file.read_text().split() if port_file.exists() else [])) < 2:
            if not self._process.running or time.monotonic() > deadline:
                raise BrowserUnavailable(f"Chromium did not open its DevTools port:\n{log_tail(log)}")
            await asyncio.sleep(0.05)
        socket = await connect(
            f"ws://127.0.0.1:{lines[0]}{lines[1]}", max_size=None, ping_interval=None, proxy=None
        )
        self._devtools = DevTools(socket)
        self.version = (await self._devtools.call("Browser.getVersion"))["product"]
        self._pages = await asyncio.start_server(_serve_page, "127.0.0.1", 0)

    @property
    def page_url(self) -> str:
        assert self._pages is not None
        return f"http://127.0.0.1:{self._pages.sockets[0].getsockname()[1]}/"

    @contextlib.asynccontextmanager
    async def tab(self) -> AsyncIterator[Tab]:
        """A fresh browser context with one blank page, its network events recorded."""
        await self.ensure_started()
        devtools = self._devtools
        assert devtools is not None
        context = (await devtools.call("Target.createBrowserContext"))["browserContextId"]
        try:
            target = await devtools.call(
                "Target.createTarget", {"url": "about:blank", "browserContextId": context}
            )
            attached = await devtools.call(
                "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
            )
            tab = Tab(devtools, attached["sessionId"], devtools.subscribe(attached["sessionId"]))
            try:
                for domain in ("Network", "Page", "Runtime"):
                    await tab.call(f"{domain}.enable")
                yield tab
            finally:
                devtools.unsubscribe(tab.session)
        finally:
            with contextlib.suppress(RuntimeError, ConnectionError):
                await devtools.call("Target.disposeBrowserContext", {"browserContextId": context})

    async def stop(self) -> None:
        """Close everything this browser started; safe to call when it never started."""
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            with contextlib.suppress(BaseException):
                await self._starting
        if self._pages is not None:
            self._pages.close()
        if self._devtools is not None:
            with contextlib.suppress(Exception):
                await self._devtools.close()
        if self._process is not None:
            await self._process.stop()
        if self._profile is not None:
            self._profile.remove()


async def _serve_page(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every request with the blank page WebSocket cells open their socket from."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        await reader.readuntil(b"\r\n\r\n")
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
            + f"Content-Length: {len(PAGE)}\r\n\r\n".encode()
        )
        writer.write(head + PAGE)
        await writer.drain()
    writer.close()


def request_record(method: str, target: str, headers: dict[str, str]) -> RequestHead:
    """A request Chromium sent, in the probe server's record shape (Chromium gives no raw head)."""
    return RequestHead.model_validate(
        wire.RequestHead(method, target, "HTTP/1.1", list(headers.items())).to_dict()
    )


def response_record(response: dict[str, Any], raw: str | None = None) -> ResponseHead:
    """The response head Chromium reported (``status``, ``statusText``, ``headers``): parsed
    from its raw text when Chromium gave one, here or in ``headersText``."""
    raw = raw or response.get("headersText")
    head = wire.parse_response_head(raw.encode("latin-1", "replace")) if raw else None
    if head is None:
        headers = list(response.get("headers", {}).items())
        head = wire.ResponseHead("HTTP/1.1", response["status"], response.get("statusText", ""), headers)
    return ResponseHead.model_validate(head.to_dict())


@dataclass
class Exchange:
    """What Chromium reported for one step: the evidence a transcript needs."""

    sent: RequestHead | None = None
    received: ResponseHead | None = None
    upgraded: bool = False
    subprotocol: str | None = None
    error: str | None = None
    close: Close | None = None
    requests: list[BrowserRequest] = field(default_factory=list)
    """Every request the page made, in order: the document and Chromium's own follow-ups."""
    detail: str = ""


def named(events: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    return [event["params"] for event in events if event.get("method") == method]


def _loaded(events: list[dict[str, Any]], kind: str, suffix: str = "") -> bool:
    """Whether a request of this resource type (and URL ending) has finished or failed."""
    ended = {
        params["requestId"]
        for method in ("Network.loadingFinished", "Network.loadingFailed")
        for params in named(events, method)
    }
    return any(
        params["requestId"] in ended
        for params in named(events, "Network.requestWillBeSent")
        if params.get("type") == kind and params["request"]["url"].endswith(suffix)
    )


def _headers_reported(events: list[dict[str, Any]]) -> bool:
    """Whether every HTTP request has its requestWillBeSentExtraInfo (the headers as written)."""
    reported = {params["requestId"] for params in named(events, "Network.requestWillBeSentExtraInfo")}
    return all(
        params["requestId"] in reported
        for params in named(events, "Network.requestWillBeSent")
        if params["request"]["url"].startswith(("http:", "https:"))
    )


def target_of(url: str) -> str:
    """The request target of a URL: its path and query."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _page_requests(tab: Tab) -> list[BrowserRequest]:
    """The HTTP requests of a tab, each with the headers Chromium wrote and what came back."""
    extra = {p["requestId"]: p for p in tab.named("Network.requestWillBeSentExtraInfo")}
    raw_heads = {p["requestId"]: p.get("headersText") for p in tab.named("Network.responseReceivedExtraInfo")}
    responses = {p["requestId"]: p["response"] for p in tab.named("Network.responseReceived")}
    failures = {p["requestId"]: p["errorText"] for p in tab.named("Network.loadingFailed")}
    requests = []
    for sent in tab.named("Network.requestWillBeSent"):
        number = sent["requestId"]
        url = sent["request"]["url"]
        if not url.startswith(("http:", "https:")):
            continue  # the images of Chromium's own error page (data: URLs)
        headers = extra.get(number, {}).get("headers") or sent["request"]["headers"]
        response = responses.get(number)
        requests.append(
            BrowserRequest(
                url=url,
                type=sent.get("type", ""),
                sent=request_record(sent["request"]["method"], target_of(url), headers),
                received=response_record(response, raw_heads.get(number)) if response else None,
                error=failures.get(number),
            )
        )
    return requests


async def visit(browser: Chromium, url: str, timeout: float) -> Exchange:
    """Load ``url`` as a page in a fresh tab, as a person or a preview pane would.

    Waits for the document, then up to :data:`FAVICON_WAIT` s for the requests
    Chromium makes on its own after it (``/favicon.ico``), which reach the
    server as well.
    """
    async with browser.tab() as tab:
        await tab.call("Page.navigate", {"url": url})
        loaded = await tab.wait_for(lambda events: _loaded(events, "Document"), timeout)
        if loaded:
            await tab.wait_for(lambda events: _loaded(events, "Other", "/favicon.ico"), FAVICON_WAIT)
        # The headers Chromium wrote come in their own event, at times after the response.
        await tab.wait_for(_headers_reported, FAVICON_WAIT)
        requests = _page_requests(tab)
    page = requests[0] if requests else None
    exchange = Exchange(requests=requests)
    if page is None:
        exchange.error = "Chromium sent no request"
        return exchange
    exchange.sent, exchange.received = page.sent, page.received
    if not loaded:
        exchange.error = f"the page did not load within {timeout:g} s"
    elif page.received is None:
        exchange.error = f"Chromium: {page.error or 'no response'}"
    exchange.detail = "; then ".join(
        f"{r.sent.method} {r.sent.path} -> "
        + (str(r.received.status) if r.received else r.error or "nothing")
        for r in requests
    )
    return exchange


WEBSOCKET_SCRIPT = """new Promise((resolve) => {
  const log = {opened: false, protocol: null, messages: [], code: null, reason: "", clean: false};
  const outgoing = %(messages)s;
  const socket = new WebSocket(%(url)s, %(protocols)s);
  socket.onopen = () => {
    log.opened = true;
    log.protocol = socket.protocol;
    outgoing.forEach((message) => socket.send(message));
    if (!outgoing.length) socket.close(1000);
  };
  socket.onmessage = (event) => {
    log.messages.push(String(event.data));
    if (log.messages.length >= outgoing.length) socket.close(1000);
  };
  socket.onclose = (event) => {
    Object.assign(log, {code: event.code, reason: event.reason, clean: event.wasClean});
    resolve(log);
  };
  setTimeout(() => { log.timedOut = true; resolve(log); }, %(milliseconds)d);
})"""


async def open_websocket(
    browser: Chromium, url: str, subprotocols: list[str], messages: list[str], timeout: float
) -> Exchange:
    """``new WebSocket(url)`` from a page served on loopback; send ``messages`` and wait for each
    to come back, then close with 1000."""
    async with browser.tab() as tab:
        await tab.call("Page.navigate", {"url": browser.page_url})
        await tab.wait_for(lambda events: bool(named(events, "Page.loadEventFired")), timeout)
        script = WEBSOCKET_SCRIPT % {
            "url": json.dumps(url),
            "protocols": json.dumps(subprotocols),
            "messages": json.dumps(messages),
            "milliseconds": int(timeout * 1000),
        }
        log = await tab.evaluate(script)
        await tab.wait_for(lambda events: bool(named(events, "Network.webSocketClosed")), 1.0)
    exchange = Exchange(upgraded=bool(log["opened"]), subprotocol=log["protocol"] or None)
    request = next(iter(tab.named("Network.webSocketWillSendHandshakeRequest")), None)
    if request is not None:
        exchange.sent = request_record("GET", target_of(url), request["request"]["headers"])
    response = next(iter(tab.named("Network.webSocketHandshakeResponseReceived")), None)
    failure = next(iter(tab.named("Network.webSocketFrameError")), None)
    if response is not None:
        exchange.received = response_record(response["response"])
    elif failure is not None and (status := refused_status(failure["errorMessage"])) is not None:
        exchange.received = response_record({"status": status})
    if log["code"] is not None:
        exchange.close = Close(code=log["code"], reason=log["reason"] or "")
    if not log["opened"]:
        why = failure["errorMessage"] if failure else f"closed with {log['code']} before opening"
        exchange.error = "Chromium: " + ("no answer in time" if log.get("timedOut") else why)
    elif log["messages"] != messages:
        exchange.error = f"Chromium sent {messages!r} and received {log['messages']!r}"
    closed = f"closed with {log['code']}" if log["code"] is not None else "still open"
    exchange.detail = f"opened, {len(log['messages'])} of {len(messages)} messages echoed, {closed}"
    return exchange


def refused_status(message: str) -> int | None:
    """The status in Chromium's 'Unexpected response code: 403', the only place a page sees it."""
    prefix = "Unexpected response code: "
    if prefix not in message:
        return None
    code = message.split(prefix, 1)[1].split()[0]
    return int(code) if code.isdigit() else None
