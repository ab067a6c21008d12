"""Reading the requests inside an h2c connection (wslab.probe.h2c, the probe server's own
HPACK decoder, and wslab.http2): frames built with hpack's encoder, the way a front end
would write them."""

from __future__ import annotations

import base64
import random
import string

import pytest
from hpack import Decoder as ReferenceDecoder
from hpack import Encoder

from wslab.http2 import CONTINUATION, END_HEADERS, HEADERS, PADDED, PRIORITY, read_streams
from wslab.observations import Observed, parse_event
from wslab.probe.h2c import Decoder, HPACKError, huffman_decode
from wslab.probe.h2c import read_streams as read_stream_dicts
from wslab.probe.redact import REDACTED_PATTERN, redact_record, redacted
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


def test_the_probe_decoder_agrees_with_hpack() -> None:
    """Random header lists through hpack's encoder (Huffman or not, table size updates,
    evictions) decode to the same fields as with hpack's own decoder."""
    rng = random.Random(7)
    names = [":path", ":method", "authorization", "cookie", "x-a", "user-agent", "sec-websocket-protocol"]
    for trial in range(200):
        encoder, ours, reference = Encoder(), Decoder(), ReferenceDecoder()
        if trial % 3 == 0:
            encoder.header_table_size = rng.choice([0, 100, 256, 4096])
        for _ in range(5):
            fields = [
                (
                    rng.choice(names),
                    "".join(rng.choice(string.printable[:94]) for _ in range(rng.randint(0, 80))),
                )
                for _ in range(rng.randint(1, 8))
            ]
            block = encoder.encode(fields, huffman=rng.random() < 0.7)
            expected = [
                (n.decode("latin-1"), v.decode("latin-1")) for n, v in reference.decode(block, raw=True)
            ]
            assert ours.decode(block) == expected


def test_the_probe_decoder_refuses_bad_blocks() -> None:
    for block in (b"\x80", b"\xff\xff\xff\xff", b"\x40\x85ab", b"\x3f\xe1\x3f"):
        with pytest.raises(HPACKError):
            Decoder().decode(block)
    with pytest.raises(HPACKError):
        huffman_decode(b"\x00")  # '0' then seven zero bits of padding: padding must be ones


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
    # What the probe server of this release sends: the streams it read itself.
    decoded = parse_event({**preface, "http2_streams": read_stream_dicts(frames)})
    assert isinstance(decoded, Observed) and decoded.cells == {"aaa", "bbb"}
    assert decoded.view("aaa", None).http2_request == observed.view("aaa", None).http2_request


def test_preface_detection() -> None:
    assert may_be_http2(b"PRI * HT") and may_be_http2(HTTP2_PREFACE + b"\x00")
    assert not may_be_http2(b"POST / HTTP/1.1\r\n")
    assert split_http2(HTTP2_PREFACE + b"frames") == (HTTP2_PREFACE, b"frames")
    assert split_http2(b"PRI * HTTP/2.0\r\n\r\n") is None


def test_redaction_covers_the_streams_and_drops_undecoded_frames() -> None:
    stream = {
        "stream": 1,
        "method": "CONNECT",
        "target": "/x?token=tok-123&wslab-cell=c",
        "path": "/x?token=tok-123",
        "version": "HTTP/2",
        "headers": [
            [":path", "/x?token=tok-123&wslab-cell=c"],
            ["authorization", "Bearer auth-789"],
            ["cookie", "sid=cookie-456"],
            ["sec-websocket-protocol", "access_token, eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"],
        ],
    }
    record = {"raw_head": "", "http2_request": stream, "http2_streams": [stream], "http2_frames": "AAAA"}
    result = redact_record(record)
    assert "http2_frames" not in result
    for secret in ("tok-123", "auth-789", "cookie-456", "eyJhbGciOiJIUzI1NiJ9"):
        assert secret not in str(result)
    for request in (result["http2_request"], result["http2_streams"][0]):
        assert request["headers"][0] == [":path", f"/x?token={redacted('tok-123')}&wslab-cell=c"]
        assert request["headers"][1] == ["authorization", f"Bearer {redacted('auth-789')}"]
        assert request["headers"][2] == ["cookie", f"sid={redacted('cookie-456')}"]
        assert REDACTED_PATTERN.search(request["headers"][3][1])
