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
from typing import Any

from hpack import Decoder
from hpack.exceptions import HPACKError

from .probe.wire import RequestHead

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


def read_requests(frames: bytes) -> list[dict[str, Any]]:
    """The request of every stream whose header block arrived whole, in arrival order.

    Each is a request record like the probe server's (method, target, path,
    version ``HTTP/2``, headers in order with the pseudo-headers first) plus
    ``stream`` and ``cell``. Reading stops at the first block HPACK cannot
    decode, since every later block depends on the same compression state.
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
        head = RequestHead(pseudo.get(":method", ""), pseudo.get(":path", ""), "HTTP/2", headers)
        requests.append({"stream": stream_id, "cell": head.cell, **head.to_dict()})
        block, stream = b"", None
    return requests


def read_connection(record: dict[str, Any]) -> dict[str, Any]:
    """A handshake record with its ``http2_frames`` replaced by the requests they held
    (``http2_requests``) and the cells those name (``cells``)."""
    if "http2_frames" not in record:
        return record
    read = {key: value for key, value in record.items() if key != "http2_frames"}
    requests = read_requests(base64.b64decode(record["http2_frames"]))
    read["http2_requests"] = requests
    read["cells"] = [request["cell"] for request in requests if request["cell"]]
    return read


def for_cell(connection: dict[str, Any], cell: str | None) -> dict[str, Any]:
    """One cell's view of a read connection: the stream that carried its request
    (``http2_request``) instead of every stream on it."""
    view = {key: value for key, value in connection.items() if key not in ("http2_requests", "cells")}
    stream = next((r for r in connection.get("http2_requests", []) if cell and r["cell"] == cell), None)
    if stream is not None:
        view["http2_request"] = stream
    return view
