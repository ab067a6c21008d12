"""The requests inside a cleartext HTTP/2 (h2c) connection, read with the standard library.

A front end with HTTP/2 end-to-end (Cloud Run's ``--use-http2``) opens one
h2c connection to the server and multiplexes many clients' requests on it,
each a stream whose HEADERS frame carries ``:method``, ``:path`` (with the
runner's correlation id) and, for a WebSocket, RFC 8441's ``:protocol``.
websockets stops at the connection preface. The probe server reads the
frames that followed itself, so that it can redact what they carry before
anything leaves it: HPACK (RFC 7541) is an encoding, not a protection, and
a base64 copy of the frames would publish every header in clear.

Only what a request record needs is here: the frame layer (RFC 9113 §4.1,
§6.2, §6.10) and an HPACK decoder with its static table, Huffman code and
dynamic table. It depends on the standard library only.
"""

from __future__ import annotations

from typing import Any

from .wire import RequestHead

FRAME_HEADER_BYTES = 9
HEADERS = 0x1
CONTINUATION = 0x9
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY = 0x20
PRIORITY_BYTES = 5
DEFAULT_TABLE_SIZE = 4096
"""SETTINGS_HEADER_TABLE_SIZE's initial value; the probe server never announces another."""
MAX_STRING = 65536
"""No header string in a recorded head can be longer than the head."""

STATIC_TABLE: tuple[tuple[str, str], ...] = (
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
)
"""RFC 7541 Appendix A: index 1 is the first entry."""

_HUFFMAN_LENGTHS = (
    "DNSSSSSSSOUSSUSSSSSSSSUSSSSSSSSS6AACD68BAA8B8666555666666678F6CA"
    "D67777777777777777777777878DJDE6F56565666577666567655677777FBEDS"
    "KMKKMMMNMNNNNNONOOMNONNNNLMNMNNOMLKMMNNLNMMOLMNNLLMLNMNNKMMMNMMN"
    "QQKJMNMPQQQRRQOPJLQRRQROLLQQSRRRKOKLMLLNMMPPOOQNQRQQRRRRRSRRRRRQ"
    "U"
)
"""RFC 7541 Appendix B: the code length of each symbol 0..256 (EOS), one base-32 digit
each. The code is canonical: codes follow from the lengths (shorter first, then by symbol)."""

EOS = 256


class HPACKError(ValueError):
    """A header block that cannot be decoded."""


def _canonical_codes() -> dict[tuple[int, int], int]:
    lengths = [int(digit, 32) for digit in "".join(_HUFFMAN_LENGTHS)]
    codes: dict[tuple[int, int], int] = {}
    code, previous = 0, 0
    for index, symbol in enumerate(sorted(range(len(lengths)), key=lambda s: (lengths[s], s))):
        if index:
            code = (code + 1) << (lengths[symbol] - previous)
        previous = lengths[symbol]
        codes[(previous, code)] = symbol
    return codes


_HUFFMAN = _canonical_codes()
_MAX_CODE_LENGTH = max(length for length, _ in _HUFFMAN)


def huffman_decode(data: bytes) -> bytes:
    """RFC 7541 §5.2: the padding must be at most 7 one bits, and EOS never appears."""
    out = bytearray()
    code, length = 0, 0
    for byte in data:
        for shift in range(7, -1, -1):
            code = (code << 1) | ((byte >> shift) & 1)
            length += 1
            symbol = _HUFFMAN.get((length, code))
            if symbol is not None:
                if symbol == EOS:
                    raise HPACKError("EOS in a Huffman-coded string")
                out.append(symbol)
                code, length = 0, 0
            elif length > _MAX_CODE_LENGTH:
                raise HPACKError("invalid Huffman code")
    if length > 7 or code != (1 << length) - 1:
        raise HPACKError("invalid Huffman padding")
    return bytes(out)


class Decoder:
    """One connection's HPACK decoding state (its dynamic table)."""

    def __init__(self, max_size: int = DEFAULT_TABLE_SIZE) -> None:
        self.settings_max = max_size
        self.max_size = max_size
        self.size = 0
        self.dynamic: list[tuple[str, str]] = []

    def _integer(self, data: bytes, offset: int, prefix: int) -> tuple[int, int]:
        if offset >= len(data):
            raise HPACKError("truncated integer")
        limit = (1 << prefix) - 1
        value = data[offset] & limit
        offset += 1
        if value < limit:
            return value, offset
        shift = 0
        while True:
            if offset >= len(data) or shift > 28:
                raise HPACKError("truncated or oversized integer")
            byte = data[offset]
            offset += 1
            value += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value, offset

    def _string(self, data: bytes, offset: int) -> tuple[str, int]:
        if offset >= len(data):
            raise HPACKError("truncated string")
        huffman = data[offset] & 0x80
        length, offset = self._integer(data, offset, 7)
        if length > MAX_STRING or offset + length > len(data):
            raise HPACKError("truncated string")
        raw = data[offset : offset + length]
        return (huffman_decode(raw) if huffman else raw).decode("latin-1"), offset + length

    def _entry(self, index: int) -> tuple[str, str]:
        if 1 <= index <= len(STATIC_TABLE):
            return STATIC_TABLE[index - 1]
        dynamic = index - len(STATIC_TABLE) - 1
        if index < 1 or dynamic >= len(self.dynamic):
            raise HPACKError(f"no table entry {index}")
        return self.dynamic[dynamic]

    def _add(self, name: str, value: str) -> None:
        self.dynamic.insert(0, (name, value))
        self.size += len(name) + len(value) + 32
        self._evict()

    def _evict(self) -> None:
        while self.size > self.max_size and self.dynamic:
            name, value = self.dynamic.pop()
            self.size -= len(name) + len(value) + 32

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        """The header fields of one complete header block, in order (RFC 7541 §6)."""
        fields = []
        offset = 0
        while offset < len(block):
            byte = block[offset]
            if byte & 0x80:
                index, offset = self._integer(block, offset, 7)
                fields.append(self._entry(index))
                continue
            if byte & 0xE0 == 0x20:
                size, offset = self._integer(block, offset, 5)
                if size > self.settings_max:
                    raise HPACKError("table size update over the limit")
                self.max_size = size
                self._evict()
                continue
            indexing = byte & 0xC0 == 0x40
            index, offset = self._integer(block, offset, 6 if indexing else 4)
            if index:
                name = self._entry(index)[0]
            else:
                name, offset = self._string(block, offset)
            value, offset = self._string(block, offset)
            if indexing:
                self._add(name, value)
            fields.append((name, value))
        return fields


def frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream id, payload) of every complete frame, in order."""
    found = []
    offset = 0
    while offset + FRAME_HEADER_BYTES <= len(data):
        length = int.from_bytes(data[offset : offset + 3], "big")
        kind, flags = data[offset + 3], data[offset + 4]
        stream = int.from_bytes(data[offset + 5 : offset + 9], "big") & 0x7FFFFFFF
        start = offset + FRAME_HEADER_BYTES
        if start + length > len(data):
            break
        found.append((kind, flags, stream, data[start : start + length]))
        offset = start + length
    return found


def _header_fragment(flags: int, payload: bytes) -> bytes:
    """A HEADERS payload without its padding and priority fields (RFC 9113 §6.2)."""
    if flags & PADDED:
        pad = payload[0] if payload else 0
        payload = payload[1 : max(1, len(payload) - pad)]
    if flags & PRIORITY:
        payload = payload[PRIORITY_BYTES:]
    return payload


def read_streams(data: bytes) -> list[dict[str, Any]]:
    """The request of every stream whose header block arrived whole, in arrival order.

    Each is a request record like the probe server's (method, target, path,
    version ``HTTP/2``, headers in order with the pseudo-headers first) with
    its ``stream`` id and the ``cell`` id in its ``:path``. Reading stops at
    the first block that cannot be decoded, since every later block depends
    on the same compression state.
    """
    decoder = Decoder()
    requests = []
    block, stream = b"", None
    for kind, flags, stream_id, payload in frames(data):
        if kind == HEADERS:
            block, stream = _header_fragment(flags, payload), stream_id
        elif kind == CONTINUATION and stream_id == stream:
            block += payload
        else:
            continue
        if not flags & END_HEADERS:
            continue
        try:
            headers = decoder.decode(block)
        except HPACKError:
            break
        pseudo = dict(headers)
        head = RequestHead(pseudo.get(":method", ""), pseudo.get(":path", ""), "HTTP/2", headers)
        requests.append({"stream": stream_id, "cell": head.cell, **head.to_dict()})
        block, stream = b"", None
    return requests
