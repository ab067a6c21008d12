"""HTTP/1.x message framing followed on both directions of one connection, never buffered.

The recording tap (:mod:`wslab.probe.tap`) forwards every byte unchanged and
feeds the same bytes to a :class:`Conversation`, which says where each
request and each response head begins and ends, so that every request on a
kept-alive connection gets its own record. It reads only what framing needs
(RFC 9112 §6): ``Content-Length``, ``chunked`` and close-delimited bodies,
no body for a response to HEAD or for 1xx, 204 and 304, a switch of
protocols at 101 (or a 2xx to CONNECT), after which a WebSocket's close
frames are found by :mod:`wslab.probe.wsframes`. A connection that opens
with the HTTP/2 preface is not followed: the bytes the client sent are kept,
up to the head bound, for :func:`wslab.probe.h2c.read_streams`.

It is lenient where that cannot mislead (any method, version or header
spelling) and gives up where it would have to guess (conflicting
``Content-Length``, a request ``Transfer-Encoding`` other than chunked, a
head over the bound, an answer that is not HTTP): it then emits
:class:`GaveUp` saying why, and ignores that direction from there on. It
never raises on input and holds at most one head per direction, one chunk
line, and the bytes a client sends while an upgrade awaits its answer, each
bounded.

Sans-I/O in the h11 spirit: :meth:`Conversation.feed_request` and
:meth:`Conversation.feed_response` take bytes and return events.
Standard library only.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from .wire import HEAD_END
from .wsframes import CloseFrame, CloseScanner

MAX_HEAD = 65536
"""Bytes of a head, through its blank line (the probe server's ``MAX_RECORDED_HEAD``)."""
MAX_LINE = 4096
"""Bytes of a chunk-size line or of one trailer line."""
MAX_PENDING = 8
"""Requests awaiting their answer on one connection (pipelining): each holds its head."""
MAX_HELD = 65536
"""Bytes a client may send after an upgrade request before the answer says what they are."""
HTTP2_HEAD = b"PRI * HTTP/2.0\r\n\r\n"
"""The HTTP/2 connection preface up to its first blank line, which ends it as a head."""


@dataclass(frozen=True)
class RequestStarted:
    """The first byte of a request arrived."""

    index: int
    """0 for the connection's first request, 1 for the next on the kept-alive connection..."""


@dataclass(frozen=True)
class RequestHead:
    """A request head, complete through its blank line."""

    index: int
    head: bytes
    method: str


@dataclass(frozen=True)
class Http2Preface:
    """The connection opened with the HTTP/2 preface: neither direction is followed further,
    and the client's bytes are kept (:attr:`Conversation.http2_data`)."""


@dataclass(frozen=True)
class ResponseHead:
    """A response head, complete through its blank line."""

    index: int
    """The request it answers."""
    head: bytes
    status: int
    final: bool
    """False for an interim answer (100, 102, 103): the request's final one follows."""


@dataclass(frozen=True)
class Switched:
    """Both directions left HTTP/1.x after this response (101, or 2xx to CONNECT)."""

    index: int
    websocket: bool
    """The request asked for ``Upgrade: websocket``: the close frames are looked for."""


@dataclass(frozen=True)
class Closing:
    """A WebSocket close frame passed."""

    from_client: bool
    frame: CloseFrame


@dataclass(frozen=True)
class GaveUp:
    """One direction can no longer be followed; its bytes still pass, unread."""

    side: Literal["request", "response"]
    reason: str


Event = RequestStarted | RequestHead | Http2Preface | ResponseHead | Switched | Closing | GaveUp

# Reading states (plain ints: they are compared on every chunk).
IDLE, HEAD, LENGTH, CHUNK_SIZE, CHUNK_DATA, CHUNK_END = range(6)
TRAILER, UNTIL_CLOSE, WAIT, FRAMES, HTTP2, IGNORED = range(6, 12)


@dataclass
class _Request:
    """A request the conversation has seen start, until its final response head."""

    index: int
    method: str = ""
    switch: bool = False
    """It asked to leave HTTP/1.x (Upgrade, or CONNECT)."""
    websocket: bool = False
    decision: bool | None = None
    """Whether its answer switched protocols; None until the answer came."""


class _Direction:
    """The reading state of one direction."""

    def __init__(self, side: Literal["request", "response"]) -> None:
        self.side = side
        self.state = IDLE
        self.head = bytearray()
        self.head_size = 0
        self.remaining = 0
        self.line = bytearray()
        self.trailer_size = 0
        self.scanner: CloseScanner | None = None
        self.overflowed = False
        """It gave up on a head over the bound: what follows still counts as that head."""


class Conversation:
    """Both directions of one HTTP/1.x connection, as a client and a server exchange them.

    ``feed_request`` takes what the client sent, ``feed_response`` what the
    server answered, each in arrival order; both return the events the bytes
    completed. ``request_head`` is the head of the request being read (what
    arrived of it so far, bounded), for a record made before it completes.
    """

    def __init__(self, max_head: int = MAX_HEAD) -> None:
        self.max_head = max_head
        self._request = _Direction("request")
        self._response = _Direction("response")
        self._pending: deque[_Request] = deque()
        self._started = 0
        self._reading: _Request | None = None
        self._waiting: _Request | None = None
        self._held = bytearray()
        self.http2_data = bytearray()

    @property
    def request_head(self) -> bytes:
        """The head being read (incomplete), or kept when it went over the bound."""
        return bytes(self._request.head)

    @property
    def request_head_size(self) -> int:
        """Bytes of that head received, past the bound included."""
        return self._request.head_size

    def feed_request(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        self._feed_request(data, events)
        return events

    def feed_response(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        direction = self._response
        pos, end = 0, len(data)
        while pos < end:
            state = direction.state
            if state == IDLE:
                if not self._pending:
                    reason = f"the server sent {end - pos} bytes no request asked for"
                    self._give_up(direction, reason, events)
                    break
                direction.state = HEAD
            elif state == HEAD:
                pos, head = self._read_head(direction, data, pos, events)
                if head is not None:
                    self._response_head(head, events)
            elif state == FRAMES:
                self._frames(direction, data[pos:] if pos else data, events)
                break
            elif state in (UNTIL_CLOSE, HTTP2, IGNORED):
                break
            else:
                pos = self._body(direction, data, pos, events)
        return events

    def _feed_request(self, data: bytes, events: list[Event]) -> None:
        direction = self._request
        pos, end = 0, len(data)
        while pos < end:
            state = direction.state
            if state == IDLE:
                if len(self._pending) >= MAX_PENDING:
                    self._give_up(direction, f"more than {MAX_PENDING} requests awaited an answer", events)
                    break
                request = self._reading = _Request(self._started)
                self._started += 1
                self._pending.append(request)
                events.append(RequestStarted(request.index))
                direction.head_size = 0
                direction.state = HEAD
            elif state == HEAD:
                pos, head = self._read_head(direction, data, pos, events)
                if head is not None:
                    self._request_head(head, events)
            elif state == FRAMES:
                self._frames(direction, data[pos:] if pos else data, events)
                break
            elif state == WAIT:
                self._held += data[pos:]
                if len(self._held) > MAX_HELD:
                    self._held = bytearray()
                    reason = f"over {MAX_HELD} bytes sent before the upgrade's answer"
                    self._give_up(direction, reason, events)
                break
            elif state == HTTP2:
                room = self.max_head - len(self.http2_data)
                if room > 0:
                    self.http2_data += data[pos : pos + room]
                break
            elif state == IGNORED:
                if direction.overflowed:
                    direction.head_size += end - pos
                break
            else:
                pos = self._body(direction, data, pos, events)

    def _read_head(
        self, direction: _Direction, data: bytes, pos: int, events: list[Event]
    ) -> tuple[int, bytes | None]:
        """Take head bytes from ``data[pos:]``: (the new position, the head once complete)."""
        head = direction.head
        room = self.max_head - len(head)
        end = -1
        if head:
            # The blank line may straddle two chunks.
            kept = min(3, len(head))
            found = (bytes(head[-kept:]) + data[pos : pos + 3]).find(HEAD_END)
            if found >= 0:
                end = pos + found + len(HEAD_END) - kept
        if end < 0:
            found = data.find(HEAD_END, pos, pos + room)
            if found >= 0:
                end = found + len(HEAD_END)
        if end >= 0 and end - pos <= room:
            head += data[pos:end]
            direction.head_size += end - pos
            complete = bytes(head)
            head.clear()
            return end, complete
        head += data[pos : pos + room]
        direction.head_size += len(data) - pos
        if len(head) >= self.max_head:
            direction.overflowed = True
            self._give_up(direction, f"a head over {self.max_head} bytes", events)
        return len(data), None

    def _request_head(self, head: bytes, events: list[Event]) -> None:
        direction = self._request
        request = self._reading
        assert request is not None
        if request.index == 0 and head == HTTP2_HEAD:
            self.http2_data += head
            events.append(Http2Preface())
            direction.state = HTTP2
            self._response.state = IGNORED
            return
        lines = head.decode("latin-1").split("\r\n")
        request.method = lines[0].partition(" ")[0]
        events.append(RequestHead(request.index, head, request.method))
        headers = _headers(lines[1:])
        upgrade = _tokens(headers.get("upgrade"))
        request.websocket = "websocket" in upgrade
        request.switch = request.method == "CONNECT" or (
            bool(upgrade) and "upgrade" in _tokens(headers.get("connection"))
        )
        coding = _tokens(headers.get("transfer-encoding"))
        if coding:
            if coding[-1] != "chunked":
                self._give_up(direction, f"a request Transfer-Encoding of {', '.join(coding)}", events)
                return
            direction.state = CHUNK_SIZE
            return
        length = _content_length(headers.get("content-length"))
        if length is None:
            self._give_up(direction, f"a Content-Length of {headers['content-length']!r}", events)
        elif length:
            direction.state, direction.remaining = LENGTH, length
        else:
            self._end_of_message(direction, events)

    def _response_head(self, head: bytes, events: list[Event]) -> None:
        direction = self._response
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/") or not (code.isascii() and code.isdigit()):
            self._give_up(direction, f"an answer that is not an HTTP/1.x response: {lines[0][:80]!r}", events)
            return
        status = int(code)
        request = self._pending[0]
        if 100 <= status < 200 and status != 101:
            events.append(ResponseHead(request.index, head, status, final=False))
            direction.state = IDLE
            return
        self._pending.popleft()
        events.append(ResponseHead(request.index, head, status, final=True))
        switched = status == 101 or (request.method == "CONNECT" and 200 <= status < 300)
        request.decision = switched
        if switched:
            request.websocket = request.websocket and status == 101
            events.append(Switched(request.index, request.websocket))
            self._switch(direction, request.websocket)
            if self._waiting is request:
                self._release(events)
            elif self._reading is request and self._request.state == IDLE:
                # A server may switch without being asked: the client's next bytes follow it.
                self._switch(self._request, request.websocket)
            return
        if self._waiting is request:
            self._release(events)
        headers = _headers(lines[1:])
        if request.method == "HEAD" or status in (204, 304):
            direction.state = IDLE
            return
        coding = _tokens(headers.get("transfer-encoding"))
        if coding:
            direction.state = CHUNK_SIZE if coding[-1] == "chunked" else UNTIL_CLOSE
            return
        if "content-length" not in headers:
            direction.state = UNTIL_CLOSE
            return
        length = _content_length(headers["content-length"])
        if length is None:
            self._give_up(direction, f"a Content-Length of {headers['content-length']!r}", events)
        elif length:
            direction.state, direction.remaining = LENGTH, length
        else:
            direction.state = IDLE

    def _body(self, direction: _Direction, data: bytes, pos: int, events: list[Event]) -> int:
        """Take body bytes (a length, or chunks) from ``data[pos:]``; the new position."""
        state = direction.state
        if state in (LENGTH, CHUNK_DATA):
            step = min(direction.remaining, len(data) - pos)
            direction.remaining -= step
            if not direction.remaining:
                if state == LENGTH:
                    self._end_of_message(direction, events)
                else:
                    direction.state = CHUNK_END
            return pos + step
        pos, line = self._read_line(direction, data, pos, events)
        if line is None:
            return pos
        if state == CHUNK_SIZE:
            size = line.split(b";", 1)[0].strip(b" \t")
            if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
                self._give_up(direction, f"a chunk size line of {bytes(line[:40])!r}", events)
            elif int(size, 16):
                direction.state, direction.remaining = CHUNK_DATA, int(size, 16)
            else:
                direction.state, direction.trailer_size = TRAILER, 0
        elif state == CHUNK_END:
            if line:
                self._give_up(direction, f"chunk data followed by {bytes(line[:40])!r}", events)
            else:
                direction.state = CHUNK_SIZE
        elif not line:
            self._end_of_message(direction, events)
        else:
            direction.trailer_size += len(line)
            if direction.trailer_size > self.max_head:
                self._give_up(direction, f"a trailer over {self.max_head} bytes", events)
        return pos

    def _read_line(
        self, direction: _Direction, data: bytes, pos: int, events: list[Event]
    ) -> tuple[int, bytes | None]:
        """Take one line (without its CRLF) from ``data[pos:]``; None while it is incomplete."""
        line = direction.line
        found = data.find(b"\n", pos, pos + MAX_LINE - len(line))
        if found < 0:
            line += data[pos : pos + MAX_LINE]
            if len(line) >= MAX_LINE:
                self._give_up(direction, f"a chunk line over {MAX_LINE} bytes", events)
            return len(data), None
        line += data[pos:found]
        complete = bytes(line[:-1] if line.endswith(b"\r") else line)
        line.clear()
        return found + 1, complete

    def _end_of_message(self, direction: _Direction, events: list[Event]) -> None:
        if direction is self._response:
            direction.state = IDLE
            return
        request = self._reading
        assert request is not None
        if request.decision:
            self._switch(direction, request.websocket)
        elif request.switch and request.decision is None:
            direction.state = WAIT
            self._waiting = request
        else:
            direction.state = IDLE

    def _release(self, events: list[Event]) -> None:
        """The upgrade the client waits on was answered: read what it sent meanwhile."""
        request, held = self._waiting, bytes(self._held)
        assert request is not None
        self._waiting, self._held = None, bytearray()
        if request.decision:
            self._switch(self._request, request.websocket)
        else:
            self._request.state = IDLE
        if held:
            self._feed_request(held, events)

    def _switch(self, direction: _Direction, websocket: bool) -> None:
        direction.state = FRAMES if websocket else IGNORED
        direction.scanner = CloseScanner() if websocket else None

    def _frames(self, direction: _Direction, data: bytes, events: list[Event]) -> None:
        scanner = direction.scanner
        assert scanner is not None
        frame = scanner.feed(data)
        if frame is not None:
            events.append(Closing(direction is self._request, frame))
        if scanner.done:
            direction.state = IGNORED
            if scanner.gave_up:
                events.append(GaveUp(direction.side, scanner.gave_up))

    def _give_up(self, direction: _Direction, reason: str, events: list[Event]) -> None:
        direction.state = IGNORED
        events.append(GaveUp(direction.side, reason))


def _headers(lines: list[str]) -> dict[str, str]:
    """Header lines by lower-case name, repeated ones joined by ', '."""
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            value = value.strip(" \t")
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _tokens(value: str | None) -> list[str]:
    return [token.strip().lower() for token in (value or "").split(",") if token.strip()]


def _content_length(value: str | None) -> int | None:
    """0 without the header; None unless every listed value is the same decimal number."""
    if value is None:
        return 0
    values = {item.strip() for item in value.split(",")}
    if len(values) != 1:
        return None
    number = values.pop()
    return int(number) if number.isascii() and number.isdigit() and len(number) <= 18 else None
