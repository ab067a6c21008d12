"""Reading the requests inside an h2c connection (lab.http2): frames built with
hpack's encoder, the way a front end would write them."""

from __future__ import annotations

import base64

from hpack import Encoder

from lab.http2 import (
    CONTINUATION,
    END_HEADERS,
    HEADERS,
    PADDED,
    PRIORITY,
    for_cell,
    read_connection,
    read_requests,
)
from lab.probe.redact import REDACTED, redact_record
from lab.probe.wire import HTTP2_PREFACE, may_be_http2, split_http2

SETTINGS = 0x4


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def websocket_stream(encoder: Encoder, path: str, *extra: tuple[str, str]) -> bytes:
    return encoder.encode(
        [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "app"),
            ("sec-websocket-version", "13"),
            *extra,
        ]
    )


def test_streams_are_read_with_padding_priority_and_continuation() -> None:
    encoder = Encoder()
    first = websocket_stream(encoder, "/echo?wslab-cell=aaa")
    second = websocket_stream(encoder, "/chat?x=1&wslab-cell=bbb", ("authorization", "Bearer s3cret"))
    third = encoder.encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "app")])
    data = b"".join(
        [
            frame(SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00\x64"),
            frame(HEADERS, END_HEADERS | PADDED, 1, bytes([3]) + first + b"\x00" * 3),
            frame(HEADERS, PRIORITY, 3, b"\x00\x00\x00\x00\x10" + second[:10]),
            frame(CONTINUATION, END_HEADERS, 3, second[10:]),
            frame(HEADERS, END_HEADERS, 5, third),
            frame(HEADERS, END_HEADERS, 7, third)[:-4],
        ]
    )
    requests = read_requests(data)
    assert [(r["stream"], r["method"], r["path"], r["cell"]) for r in requests] == [
        (1, "CONNECT", "/echo", "aaa"),
        (3, "CONNECT", "/chat?x=1", "bbb"),
        (5, "GET", "/", None),
    ], "the truncated last frame is left out"
    assert requests[0]["version"] == "HTTP/2"
    assert requests[0]["headers"][:2] == [[":method", "CONNECT"], [":protocol", "websocket"]]
    assert ["authorization", "Bearer s3cret"] in requests[1]["headers"]


def test_undecodable_block_stops_reading() -> None:
    good = websocket_stream(Encoder(), "/a?wslab-cell=aaa")
    data = frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff") + frame(HEADERS, END_HEADERS, 3, good)
    assert read_requests(data) == []


def test_a_connection_record_names_its_cells_and_gives_each_its_stream() -> None:
    encoder = Encoder()
    frames = b"".join(
        frame(HEADERS, END_HEADERS, stream, websocket_stream(encoder, f"/p?wslab-cell={cell}"))
        for stream, cell in ((1, "aaa"), (3, "bbb"))
    )
    record = {"conn": 1, "cell": None, "http2_frames": base64.b64encode(frames).decode()}
    read = read_connection(record)
    assert "http2_frames" not in read and read["cells"] == ["aaa", "bbb"]
    view = for_cell(read, "bbb")
    assert view["http2_request"]["stream"] == 3 and "cells" not in view and "http2_requests" not in view
    assert "http2_request" not in for_cell(read, None)
    assert read_connection({"conn": 2}) == {"conn": 2}


def test_preface_detection() -> None:
    assert may_be_http2(b"PRI * HT") and may_be_http2(HTTP2_PREFACE + b"\x00")
    assert not may_be_http2(b"POST / HTTP/1.1\r\n")
    assert split_http2(HTTP2_PREFACE + b"frames") == (HTTP2_PREFACE, b"frames")
    assert split_http2(b"PRI * HTTP/2.0\r\n\r\n") is None


def test_redaction_covers_the_stream_and_drops_undecoded_frames() -> None:
    stream = {
        "stream": 1,
        "method": "CONNECT",
        "target": "/x?token=tok-123&wslab-cell=c",
        "path": "/x?token=tok-123",
        "version": "HTTP/2",
        "headers": [[":path", "/x"], ["authorization", "Bearer auth-789"], ["cookie", "sid=cookie-456"]],
    }
    redacted = redact_record({"raw_head": "", "http2_request": stream, "http2_frames": "AAAA"})
    assert "http2_frames" not in redacted
    for secret in ("tok-123", "auth-789", "cookie-456"):
        assert secret not in str(redacted)
    assert redacted["http2_request"]["headers"][1] == ["authorization", REDACTED]
