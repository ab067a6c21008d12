"""The requests inside an h2c connection, as records.

A front end with HTTP/2 end-to-end (Cloud Run's ``--use-http2``) opens one
cleartext HTTP/2 connection to the server and multiplexes many clients'
requests on it. The probe server reads each stream's HEADERS itself
(:mod:`wslab.probe.h2c`) and reports them, redacted, as ``http2_streams``;
a probe server of an earlier release reported the raw frames instead
(``http2_frames``, base64), which :func:`read_frames` still reads.
"""

from __future__ import annotations

import base64
from typing import Any

from .probe.h2c import CONTINUATION, END_HEADERS, HEADERS, PADDED, PRIORITY
from .probe.h2c import read_streams as read_stream_dicts
from .records import StreamRequest

__all__ = ["CONTINUATION", "END_HEADERS", "HEADERS", "PADDED", "PRIORITY", "read_frames", "read_streams"]


def read_streams(frames: bytes) -> list[StreamRequest]:
    """The request of every stream whose header block arrived whole, in arrival order
    (see :func:`wslab.probe.h2c.read_streams`)."""
    return [StreamRequest.model_validate(stream) for stream in read_stream_dicts(frames)]


def read_frames(encoded: str) -> list[StreamRequest]:
    """:func:`read_streams` of an earlier probe server's ``http2_frames`` field (base64)."""
    return read_streams(base64.b64decode(encoded))


def stream_records(streams: list[Any]) -> list[StreamRequest]:
    """The probe server's ``http2_streams`` field as records."""
    return [StreamRequest.model_validate(stream) for stream in streams if isinstance(stream, dict)]
