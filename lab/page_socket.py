"""A Chromium page's WebSocket with a reconnect loop, watched through lifecycle events.

The ``browser_connect`` step opens it: a page served on loopback runs ``new WebSocket(url)`` and,
from the socket's close handler, opens a new one after a delay (:class:`Retry`), as a web app's
front end does (the browser's WebSocket never reconnects by itself). The ``event`` step then
watches it as it watches websockets' client (the :class:`~wslab.lifecycle.Watched` protocol): the
page sends the numbered messages, and everything is timed by the page itself. What the page's
script cannot see comes from DevTools: each socket's handshake (the app instance it landed on,
in X-Wslab-Instance) and Chromium's error for a socket that did not open.

Times cross from the page (``performance.timeOrigin + performance.now()``, milliseconds) to the
lab (``time.monotonic()``) by one offset measured around a round trip when the page starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from .browser import Chromium, Tab, named, refused_status, request_record, response_record, target_of
from .lifecycle import INSTANCE_HEADER, SEQ_PREFIX, CloseSeen, fate
from .records import (
    BrowserRequest,
    Close,
    Lifecycle,
    LifecycleEvent,
    PageAttempt,
    Reconnect,
    RequestHead,
    ResponseHead,
    header_value,
)

BINDING = "wslabReport"
"""The function the page calls to tell the lab a socket opened or closed (Runtime.addBinding)."""
CLOCK_SAMPLES = 5
"""Round trips to the page for the offset between its clock and the lab's: the shortest wins."""
CLOSE_WAIT = 2.0
"""Seconds the lab waits for the page's last socket to close once it has asked it to."""


class PageFailed(OSError):
    """Chromium refused a DevTools command or the page's script failed: an OSError, so that the
    step fails with it as when the browser's connection is lost."""


@dataclass(frozen=True)
class Retry:
    """The page's reconnect loop: after a close, a new socket ``delay`` seconds later; after each
    attempt that did not open, the wait is multiplied by ``factor``, up to ``cap``; once a socket
    opens, the wait is ``delay`` again. Seconds of this run, not scaled."""

    delay: float = 0.25
    factor: float = 2.0
    cap: float = 4.0

    @classmethod
    def from_step(cls, argument: dict[str, Any] | None) -> Retry:
        """The step's ``retry: {delay, factor, max}``; the defaults for what it leaves out."""
        argument = argument or {}
        default = cls()
        return cls(
            float(argument.get("delay", default.delay)),
            float(argument.get("factor", default.factor)),
            float(argument.get("max", default.cap)),
        )

    def describe(self) -> str:
        """The policy in words, as the Reconnect record keeps it."""
        if self.factor == 1 or self.cap <= self.delay:
            return f"the page's close handler opens a new WebSocket {self.delay:g} s later, every time"
        return (
            f"the page's close handler opens a new WebSocket {self.delay:g} s later; after each "
            f"attempt that did not open the wait is x{self.factor:g}, up to {self.cap:g} s; once "
            f"one opens it is {self.delay:g} s again"
        )


SCRIPT = """(() => {
  const url = %(url)s, prefix = %(prefix)s, retry = %(retry)s;
  const now = () => performance.timeOrigin + performance.now();
  const lab = window.wslab = {sockets: [], sent: {}, echoed: {}, stopped: false, sender: null, socket: null};
  let wait = retry.delay;
  const open = () => {
    const entry = {started: now(), opened: null, closed: null, code: null, reason: "", clean: null};
    const number = lab.sockets.push(entry) - 1;
    const socket = lab.socket = new WebSocket(url);
    socket.onopen = () => {
      entry.opened = now();
      wait = retry.delay;
      %(binding)s(JSON.stringify({socket: number, ...entry}));
    };
    socket.onmessage = (event) => {
      const text = String(event.data);
      if (number === 0 && text.startsWith(prefix)) lab.echoed[text.slice(prefix.length)] = now();
    };
    socket.onclose = (event) => {
      Object.assign(entry, {closed: now(), code: event.code, reason: event.reason, clean: event.wasClean});
      %(binding)s(JSON.stringify({socket: number, ...entry}));
      if (lab.stopped) return;
      if (entry.opened === null) wait = Math.min(wait * retry.factor, retry.cap);
      setTimeout(() => { if (!lab.stopped) open(); }, wait * 1000);
    };
  };
  lab.start = (every) => {
    let seq = 0;
    const tick = () => {
      if (lab.watched.readyState !== WebSocket.OPEN) { clearInterval(lab.sender); return; }
      seq += 1;
      lab.sent[seq] = now();
      lab.watched.send(prefix + seq);
    };
    tick();
    lab.sender = setInterval(tick, every * 1000);
  };
  lab.pending = () => lab.watched.readyState === WebSocket.OPEN ?
    Object.keys(lab.sent).filter((seq) => !(seq in lab.echoed)).length : 0;
  lab.stop = () => clearInterval(lab.sender);
  lab.close = () => {
    lab.stopped = true;
    clearInterval(lab.sender);
    if (lab.socket.readyState <= WebSocket.OPEN) lab.socket.close(1000);
    return lab.sockets.length - 1;
  };
  lab.report = () => ({sockets: lab.sockets, sent: lab.sent, echoed: lab.echoed});
  open();
  lab.watched = lab.socket;
})()"""
"""The page's script: ``open()`` is the reconnect loop; ``start``/``stop`` the numbered messages,
sent on the first socket only (the watched one, as websockets' client sends on its connection)."""


@dataclass(frozen=True)
class Handshake:
    """What DevTools reported for one socket of the page."""

    sent: RequestHead | None = None
    received: ResponseHead | None = None
    error: str | None = None

    @property
    def instance(self) -> int | None:
        value = header_value(self.received.headers, INSTANCE_HEADER) if self.received else None
        return int(value) if value is not None and value.isdigit() else None


def handshakes(events: list[dict[str, Any]]) -> list[Handshake]:
    """Each WebSocket a tab created, in order (DevTools' Network events): the page's tab opens
    no other, and Chromium may write its URL otherwise than the lab did (a default port)."""
    by_id: dict[str, dict[str, Any]] = {}
    for event in events:
        params = event.get("params", {})
        method = event.get("method", "")
        if method == "Network.webSocketCreated":
            by_id[params["requestId"]] = {method: params}
        elif method.startswith("Network.webSocket") and params.get("requestId") in by_id:
            by_id[params["requestId"]].setdefault(method, params)
    found = []
    for seen in by_id.values():
        url = seen["Network.webSocketCreated"]["url"]
        request = seen.get("Network.webSocketWillSendHandshakeRequest")
        response = seen.get("Network.webSocketHandshakeResponseReceived")
        failure = seen.get("Network.webSocketFrameError")
        found.append(
            Handshake(
                sent=request_record("GET", target_of(url), request["request"]["headers"])
                if request
                else None,
                received=_received(response, failure),
                error=failure["errorMessage"] if failure else None,
            )
        )
    return found


def _received(response: dict[str, Any] | None, failure: dict[str, Any] | None) -> ResponseHead | None:
    """The response head DevTools reported; for a refused upgrade, whose head it does not report,
    the status in Chromium's error (the only place it says it)."""
    if response is not None:
        return response_record(response["response"])
    status = refused_status(failure["errorMessage"]) if failure is not None else None
    return response_record({"status": status}) if status is not None else None


@dataclass
class PageReport:
    """What the page saw, its times on the lab's clock (``time.monotonic()``)."""

    sockets: list[dict[str, Any]]
    """Each socket: started, opened, closed (None: not yet), code, reason, clean."""
    sent: dict[int, float] = field(default_factory=dict)
    echoed: dict[int, float] = field(default_factory=dict)
    handshakes: list[Handshake] = field(default_factory=list)

    def handshake(self, number: int) -> Handshake:
        return self.handshakes[number] if number < len(self.handshakes) else Handshake()


def parse_report(raw: dict[str, Any], offset: float, found: list[Handshake]) -> PageReport:
    """The page's ``wslab.report()`` (milliseconds on its clock) on the lab's clock: each page
    time in seconds plus ``offset``; ``found`` is DevTools' report of each socket."""

    def lab_time(value: float | None) -> float | None:
        return value / 1000 + offset if value is not None else None

    sockets = [
        {
            **entry,
            "started": lab_time(entry["started"]),
            "opened": lab_time(entry.get("opened")),
            "closed": lab_time(entry.get("closed")),
        }
        for entry in raw["sockets"]
    ]
    return PageReport(
        sockets=sockets,
        sent={int(seq): at / 1000 + offset for seq, at in raw.get("sent", {}).items()},
        echoed={int(seq): at / 1000 + offset for seq, at in raw.get("echoed", {}).items()},
        handshakes=found,
    )


def closed_as(entry: dict[str, Any]) -> CloseSeen:
    """The close of a socket as its page saw it. The page closes nothing while it watches, so a
    close came from the other side; the CloseEvent's 1006 means no close frame came (RFC 6455
    7.1.5), and wasClean that the closing handshake completed, Chromium's close frame included."""
    code = entry.get("code")
    closed = entry.get("closed") is not None
    received = closed and code != 1006
    return CloseSeen(
        code=code,
        reason=entry.get("reason", ""),
        closed_by=("peer" if received else "abnormal") if closed else None,
        frame_received=received,
        frame_sent=bool(entry.get("clean")),
    )


def page_lifecycle(event: LifecycleEvent, report: PageReport, event_at: float, watched: float) -> Lifecycle:
    """The watched (first) socket's fate, as the lifecycle record keeps any client's."""
    first = report.sockets[0]
    return fate(
        event,
        report.sent,
        report.echoed,
        event_at,
        watched,
        first["closed"],
        closed_as(first),
        report.handshake(0).instance,
    )


def page_reconnect(report: PageReport, retry: Retry, event_at: float) -> Reconnect:
    """How the page's loop came back after the watched socket's close: the sockets it opened after
    it, until the first that opened."""
    closed = report.sockets[0]["closed"]
    assert closed is not None
    after = report.sockets[1:]
    back = next((n for n, entry in enumerate(after, 1) if entry["opened"] is not None), None)
    tried = after[:back] if back is not None else after
    failed = [n for n, entry in enumerate(tried, 1) if entry["opened"] is None]
    error = None
    if failed:
        last = report.sockets[failed[-1]]
        error = report.handshake(failed[-1]).error or (
            f"closed with {last['code']} before opening" if last["closed"] is not None else "no answer yet"
        )
    return Reconnect(
        back_after=round(report.sockets[back]["opened"] - closed, 3) if back is not None else None,
        attempts=len(tried),
        error=error,
        instance=report.handshake(back).instance if back is not None else None,
        client="chromium",
        policy=retry.describe(),
        sockets=[_socket_record(report, n, event_at) for n in range(len(report.sockets))],
    )


def _socket_record(report: PageReport, number: int, event_at: float) -> PageAttempt:
    entry = report.sockets[number]

    def since(value: float | None) -> float | None:
        return round(value - event_at, 3) if value is not None else None

    handshake = report.handshake(number)
    return PageAttempt(
        started=round(entry["started"] - event_at, 3),
        opened=since(entry["opened"]),
        closed=since(entry["closed"]),
        code=entry.get("code"),
        reason=entry.get("reason") or "",
        clean=entry.get("clean"),
        instance=handshake.instance,
        error=handshake.error,
    )


class PageSocket:
    """A page's WebSocket and its reconnect loop, in a tab of its own (:func:`open_page_socket`);
    implements :class:`~wslab.lifecycle.Watched` for the event step."""

    def __init__(self, tab: Tab, url: str, retry: Retry) -> None:
        self.tab = tab
        self.url = url
        self.retry = retry
        self.offset = 0.0
        """Add to a page time in seconds to get ``time.monotonic()``."""
        self.seen: dict[int, dict[str, Any]] = {}
        """Each socket's last report through the binding (page times)."""
        self._changed = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._closed: Close | None = None

    async def begin(self, timeout: float) -> Handshake:
        """Run the page's script and wait up to ``timeout`` s for its first socket to open or
        fail; DevTools' report of that socket's handshake."""
        self._pump = asyncio.create_task(self._read())
        self.offset = await self._clock_offset()
        await self._evaluate(
            SCRIPT
            % {
                "url": json.dumps(self.url),
                "prefix": json.dumps(SEQ_PREFIX),
                "retry": json.dumps(dataclasses.asdict(self.retry)),
                "binding": BINDING,
            }
        )
        await self._until(lambda: bool(self.seen.get(0)), timeout)
        return self._handshakes()[0] if self._handshakes() else Handshake()

    @property
    def first(self) -> dict[str, Any] | None:
        """The watched socket's last report (page times), if it gave one."""
        return self.seen.get(0)

    async def _read(self) -> None:
        """Keep the tab's events, and wake the waiters at each report of the page."""
        while True:
            event = await self.tab.queue.get()
            self.tab.events.append(event)
            params = event.get("params", {})
            if event.get("method") == "Runtime.bindingCalled" and params.get("name") == BINDING:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    entry = json.loads(params["payload"])
                    self.seen[int(entry["socket"])] = entry
                    self._changed.set()

    async def _until(self, done: Callable[[], bool], seconds: float) -> bool:
        """Wait up to ``seconds`` for ``done()``, re-checked at each report of the page."""
        deadline = time.monotonic() + seconds
        while True:
            self._changed.clear()
            if done():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def _clock_offset(self) -> float:
        """What to add to a page time in seconds to get ``time.monotonic()``: the page's clock
        read halfway through the shortest of a few round trips (its error is half of that)."""
        samples = []
        for _ in range(CLOCK_SAMPLES):
            before = time.monotonic()
            page_ms = await self._evaluate("performance.timeOrigin + performance.now()")
            after = time.monotonic()
            samples.append((after - before, (before + after) / 2 - page_ms / 1000))
        return min(samples)[1]

    async def _evaluate(self, expression: str) -> Any:
        try:
            return await self.tab.evaluate(expression)
        except RuntimeError as error:
            raise PageFailed(f"Chromium: {error}") from None

    def _lab_time(self, page_ms: float | None) -> float | None:
        return page_ms / 1000 + self.offset if page_ms is not None else None

    def _handshakes(self) -> list[Handshake]:
        return handshakes(self.tab.events)

    # The Watched protocol.

    @property
    def closed_at(self) -> float | None:
        return self._lab_time(self.first.get("closed")) if self.first else None

    async def start(self, every: float) -> None:
        await self._evaluate(f"wslab.start({every!r})")

    async def wait_closed(self, seconds: float) -> float | None:
        await self._until(lambda: self.closed_at is not None, seconds)
        return self.closed_at

    async def stop(self, drain: float) -> None:
        await self._evaluate("wslab.stop()")
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline and await self._evaluate("wslab.pending()"):
            await asyncio.sleep(0.02)

    async def record(self, event: LifecycleEvent, event_at: float) -> Lifecycle:
        watched = time.monotonic() - event_at
        return page_lifecycle(event, await self.report(), event_at, watched)

    async def reconnect(self, event_at: float, budget: float) -> Reconnect:
        closed = self.closed_at
        assert closed is not None
        await self._until(
            lambda: any(n > 0 and entry.get("opened") is not None for n, entry in self.seen.items()),
            closed + budget - time.monotonic(),
        )
        return page_reconnect(await self.report(), self.retry, event_at)

    async def close(self) -> Close:
        """Stop the loop and close the page's last socket with 1000 (once)."""
        if self._closed is None:
            last = await self._evaluate("wslab.close()")
            await self._until(lambda: (self.seen.get(last) or {}).get("closed") is not None, CLOSE_WAIT)
            entry = self.seen.get(last) or {}
            self._closed = Close(code=entry.get("code"), reason=entry.get("reason") or "")
        return self._closed

    def close_seen(self) -> Close:
        first = self.first or {}
        return Close(code=first.get("code"), reason=first.get("reason") or "")

    def requests(self) -> list[BrowserRequest]:
        """Each handshake Chromium sent for the page's sockets, with what came back."""
        return [
            BrowserRequest(
                url=self.url, type="WebSocket", sent=seen.sent, received=seen.received, error=seen.error
            )
            for seen in self._handshakes()
            if seen.sent is not None
        ]

    async def report(self) -> PageReport:
        """Everything the page saw until now, on the lab's clock."""
        raw = await self._evaluate("wslab.report()")
        return parse_report(raw, self.offset, self._handshakes())

    async def end(self) -> None:
        """Stop reading the tab's events (the tab itself closes with its context)."""
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump


@contextlib.asynccontextmanager
async def open_page_socket(
    browser: Chromium, url: str, retry: Retry, timeout: float
) -> AsyncIterator[PageSocket]:
    """A fresh tab on the loopback page, ready to run a :class:`PageSocket` (``begin``); on the
    way out its loop stops and its last socket closes, then the tab goes."""
    async with browser.tab() as tab:
        await tab.call("Page.navigate", {"url": browser.page_url})
        await tab.wait_for(lambda events: bool(named(events, "Page.loadEventFired")), timeout)
        await tab.call("Runtime.addBinding", {"name": BINDING})
        page = PageSocket(tab, url, retry)
        try:
            yield page
        finally:
            with contextlib.suppress(OSError):
                if page.first is not None:
                    await page.close()
            await page.end()
