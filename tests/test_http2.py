"""Reading the requests inside an h2c connection (wslab.http2): frames built with
hpack's encoder, the way a front end would write them."""

from __future__ import annotations

import base64

import pytest
from hpack import Encoder

from wslab.http2 import CONTINUATION, END_HEADERS, HEADERS, PADDED, PRIORITY, read_streams
from wslab.observations import Observed, parse_event
from wslab.probe.redact import REDACTED, redact_record
from wslab.probe.wire import HTTP2_PREFACE, may_be_http2, split_http2

pytestmark = pytest.mark.fast

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
    requests = read_streams(data)
    assert [(r.stream, r.method, r.path, r.cell) for r in requests] == [
        (1, "CONNECT", "/echo", "aaa"),
        (3, "CONNECT", "/chat?x=1", "bbb"),
        (5, "GET", "/", None),
    ], "the truncated last frame is left out"
    assert requests[0].version == "HTTP/2"
    assert requests[0].headers[:2] == [(":method", "CONNECT"), (":protocol", "websocket")]
    assert ("authorization", "Bearer s3cret") in requests[1].headers


def test_undecodable_block_stops_reading() -> None:
    good = websocket_stream(Encoder(), "/a?wslab-cell=aaa")
    data = frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff") + frame(HEADERS, END_HEADERS, 3, good)
    assert read_streams(data) == []


def test_a_connection_record_names_its_cells_and_gives_each_its_stream() -> None:
    encoder = Encoder()
    frames = b"".join(
        frame(HEADERS, END_HEADERS, stream, websocket_stream(encoder, f"/p?wslab-cell={cell}"))
        for stream, cell in ((1, "aaa"), (3, "bbb"))
    )
    preface = {
        "event": "handshake",
        "listener": "cloudrun-h2c",
        "conn": 1,
        "cell": None,
        "opened_at": 1.0,
        "at": 1.5,
        "peer": ["127.0.0.1", 40000],
        "bytes_received": 24 + len(frames),
        "raw_head": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "request": {"method": "PRI", "target": "*", "path": "*", "version": "HTTP/2.0", "headers": []},
        "response": None,
        "upgraded": False,
        "error": {"type": "InvalidMessage", "text": "did not receive a valid HTTP request", "cause": ""},
    }
    observed = parse_event({**preface, "http2_frames": base64.b64encode(frames).decode()})
    assert isinstance(observed, Observed) and observed.cells == {"aaa", "bbb"}
    view = observed.view("bbb", None)
    assert view.http2_request is not None and view.http2_request.stream == 3
    assert view.request_seen == view.http2_request
    assert observed.view(None, None).http2_request is None
    plain = parse_event(preface)
    assert isinstance(plain, Observed) and plain.streams == [] and plain.cells == set()


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
