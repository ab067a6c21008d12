"""The close frame in one direction of a WebSocket stream, read from frame headers only.

The recording tap (:mod:`wslab.probe.tap`) sees an upgraded connection pass
and must say how it closed, as the probe server does: who sent the first
close frame, with which code and reason. A :class:`CloseScanner` reads each
frame's header (RFC 6455 §5.2: at most 14 bytes) and skips its payload by
counting, so a message of any size costs nothing but arithmetic. Only a close
frame's payload is read (a control frame's is at most 125 bytes), unmasked
with the frame's own key when it has one: clients mask, servers do not, and
the scanner honours the bit rather than assume.

Sans-I/O and standard library only: feed bytes, get the close frame once.
"""

from __future__ import annotations

from dataclasses import dataclass

CLOSE = 0x8
MAX_CONTROL_PAYLOAD = 125
NO_STATUS = 1005
"""The code websockets reports for a close frame without a payload (RFC 6455 §7.1.5)."""


@dataclass(frozen=True)
class CloseFrame:
    """A close frame seen passing."""

    code: int | None
    """The status code; :data:`NO_STATUS` for an empty payload, None for a 1-byte one."""
    reason: str


class CloseScanner:
    """One direction of a WebSocket stream: finds its first close frame.

    :meth:`feed` returns the :class:`CloseFrame` when the chunk completes it,
    else None. After it (or after a frame a WebSocket endpoint could not
    send, which :attr:`gave_up` then names), the rest is ignored.
    """

    def __init__(self) -> None:
        self._header = bytearray()
        self._skip = 0
        self._close: bytearray | None = None
        self._mask = b""
        self.done = False
        self.gave_up: str | None = None

    def feed(self, data: bytes) -> CloseFrame | None:
        if self.done:
            return None
        pos, end = 0, len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                if self._close is not None:
                    self._close += data[pos : pos + step]
                pos += step
                self._skip -= step
                if not self._skip and self._close is not None:
                    return self._closed()
                continue
            pos = self._read_header(data, pos)
            if self.done:
                return None
            if self._close is not None and not self._skip:
                return self._closed()
        return None

    def _read_header(self, data: bytes, pos: int) -> int:
        """Consume header bytes from ``data[pos:]``; returns the new position."""
        header = self._header
        # Two bytes tell the header's whole length; then take just what it lacks.
        if len(header) < 2:
            take = 2 - len(header)
            header += data[pos : pos + take]
            pos += min(take, len(data) - pos)
            if len(header) < 2:
                return pos
        length7 = header[1] & 0x7F
        masked = header[1] & 0x80
        size = 2 + (2 if length7 == 126 else 8 if length7 == 127 else 0) + (4 if masked else 0)
        if len(header) < size:
            take = size - len(header)
            header += data[pos : pos + take]
            pos += min(take, len(data) - pos)
            if len(header) < size:
                return pos
        if length7 == 126:
            length = int.from_bytes(header[2:4], "big")
        elif length7 == 127:
            length = int.from_bytes(header[2:10], "big")
        else:
            length = length7
        opcode = header[0] & 0x0F
        if opcode == CLOSE:
            if length > MAX_CONTROL_PAYLOAD:
                self._give_up(f"a close frame of {length} bytes (at most {MAX_CONTROL_PAYLOAD})")
                return pos
            self._close = bytearray()
            self._mask = bytes(header[size - 4 : size]) if masked else b""
        self._skip = length
        self._header = bytearray()
        return pos

    def _closed(self) -> CloseFrame:
        self.done = True
        payload = bytes(self._close or b"")
        if self._mask:
            mask = self._mask
            payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        if not payload:
            return CloseFrame(NO_STATUS, "")
        if len(payload) == 1:
            return CloseFrame(None, "")
        return CloseFrame(int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace"))

    def _give_up(self, reason: str) -> None:
        self.done = True
        self.gave_up = reason
