"""The requests inside an h2c connection the probe server could not read.

A front end with HTTP/2 end-to-end (Cloud Run's ``--use-http2``) opens one
cleartext HTTP/2 connection to the server and multiplexes many clients'
requests on it, each a stream whose HEADERS frame carries ``:method``,
``:path`` (with the runner's correlation id) and, for a WebSocket, RFC 8441's
``:protocol``. websockets stops at the connection preface; the probe server
keeps the frames that followed (``http2_frames``, base64) and this module
reads them, so every cell finds the stream that carried its request.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

from hpack import Decoder
from hpack.exceptions import HPACKError

from .probe import wire
from .records import StreamRequest

FRAME_HEADER_BYTES = 9
HEADERS = 0x1
CONTINUATION = 0x9
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY = 0x20
PRIORITY_BYTES = 5


def _frames(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, stream id, payload) of every complete frame, in order."""
    offset = 0
    while offset + FRAME_HEADER_BYTES <= len(data):
        length = int.from_bytes(data[offset : offset + 3], "big")
        kind, flags = data[offset + 3], data[offset + 4]
        stream = int.from_bytes(data[offset + 5 : offset + 9], "big") & 0x7FFFFFFF
        start = offset + FRAME_HEADER_BYTES
        if start + length > len(data):
            return
        yield kind, flags, stream, data[start : start + length]
        offset = start + length


def _header_fragment(flags: int, payload: bytes) -> bytes:
    """A HEADERS payload without its padding and priority fields (RFC 9113 §6.2)."""
    if flags & PADDED:
        pad = payload[0] if payload else 0
        payload = payload[1 : len(payload) - pad]
    if flags & PRIORITY:
        payload = payload[PRIORITY_BYTES:]
    return payload


def read_streams(frames: bytes) -> list[StreamRequest]:
    """The request of every stream whose header block arrived whole, in arrival order.

    Each is a request record like the probe server's (method, target, path,
    version ``HTTP/2``, headers in order with the pseudo-headers first) with
    its stream id and the correlation id in its ``:path``. Reading stops at
    the first block HPACK cannot decode, since every later block depends on
    the same compression state.
    """
    decoder = Decoder()
    requests = []
    block, stream = b"", None
    for kind, flags, stream_id, payload in _frames(frames):
        if kind == HEADERS:
            block, stream = _header_fragment(flags, payload), stream_id
        elif kind == CONTINUATION and stream_id == stream:
            block += payload
        else:
            continue
        if not flags & END_HEADERS:
            continue
        try:
            fields = decoder.decode(block, raw=True)
        except HPACKError:
            break
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in fields]
        pseudo = dict(headers)
        head = wire.RequestHead(pseudo.get(":method", ""), pseudo.get(":path", ""), "HTTP/2", headers)
        requests.append(
            StreamRequest.model_validate({"stream": stream_id, "cell": head.cell, **head.to_dict()})
        )
        block, stream = b"", None
    return requests


def read_frames(encoded: str) -> list[StreamRequest]:
    """:func:`read_streams` of the probe server's ``http2_frames`` field (base64)."""
    return read_streams(base64.b64decode(encoded))
