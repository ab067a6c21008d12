"""Records built by hand, for the fast tests of pure logic (diagnosis, expectations, renderers).

Each builder gives the smallest record that says one thing: a request with
these headers, a connection the server answered like this, a transcript that
ended so. The values mirror what the real-proxy tests observe (the same
header sets, statuses and websockets error texts), so the two kinds of tests
describe the same world.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wslab.evidence import Evidence
from wslab.records import (
    ClientKind,
    Closed,
    Components,
    Connection,
    Hold,
    RequestHead,
    ResponseHead,
    Run,
    ScenarioRecord,
    ServerError,
    Settings,
    Step,
    StreamRequest,
    TopologyRecord,
    Transcript,
)
from wslab.topology import Parameter, Topology

CHROME_TAB = [
    ("Host", "127.0.0.1:8080"),
    ("Connection", "keep-alive"),
    ("Upgrade-Insecure-Requests", "1"),
    ("Sec-Fetch-Mode", "navigate"),
    ("Sec-Fetch-Dest", "document"),
]
UPGRADE = [
    ("Host", "127.0.0.1:8080"),
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
]


def without(headers: list[tuple[str, str]], *names: str) -> list[tuple[str, str]]:
    """The headers a proxy forwards after dropping ``names`` (and adding X-Forwarded-For)."""
    dropped = {name.lower() for name in names}
    return [h for h in headers if h[0].lower() not in dropped] + [("X-Forwarded-For", "127.0.0.1")]


def request(
    headers: list[tuple[str, str]], method: str = "GET", version: str = "HTTP/1.1", path: str = "/"
) -> RequestHead:
    return RequestHead(
        method=method, target=f"{path}?wslab-cell=c1", path=path, version=version, headers=headers
    )


def response(status: int, reason: str = "", headers: list[tuple[str, str]] | None = None) -> ResponseHead:
    return ResponseHead(version="HTTP/1.1", status=status, reason=reason, headers=headers or [])


def connection(
    received: RequestHead | None,
    status: int | None = None,
    error: str | None = None,
    error_type: str = "InvalidUpgrade",
    cause: str = "",
    **extra: Any,
) -> Connection:
    """One connection the server saw: what arrived, what websockets answered, its error."""
    return Connection(
        listener="t",
        conn=1,
        cell="c1",
        opened_at=100.0,
        at=100.01,
        peer=("127.0.0.1", 40000),
        bytes_received=200,
        raw_head="",
        request=received,
        response=ResponseHead(status=status) if status is not None else None,
        upgraded=status == 101,
        error=ServerError(type=error_type, text=error, cause=cause) if error else None,
        **extra,
    )


def transcript(
    sent: RequestHead | None,
    status: int | None = None,
    kind: ClientKind = ClientKind.RAW,
    **fields: Any,
) -> Transcript:
    """What the client did: sent this, got this status (None: no response)."""
    return Transcript(
        kind=kind,
        sent=sent,
        received=response(status) if status is not None else None,
        connected=True,
        upgraded=status == 101,
        steps=[Step(step=kind.value or "raw", argument={}, ok=fields.pop("ok", True))],
        **fields,
    )


def evidence(client: Transcript, *server: Connection) -> Evidence:
    return Evidence(client, list(server))


def hold(lived: float, since_last_byte: float, closed: bool = True, scale: float = 0.02) -> Hold:
    """A held connection that lived ``lived`` seconds in the run (faithful: divided by ``scale``)."""
    return Hold(
        seconds=3.0,
        seconds_faithful=150.0,
        closed=closed,
        lived=lived,
        lived_faithful=round(lived / scale, 1),
        since_last_byte=since_last_byte,
        code=1006 if closed else None,
        reason="" if closed else None,
        closed_by="abnormal (TCP closed, no close frame)" if closed else None,
    )


def held(hold_record: Hold) -> Evidence:
    """A connect + hold cell that upgraded, then ended as ``hold_record`` says."""
    client = transcript(request(UPGRADE), 101, kind=ClientKind.CONNECT, hold=hold_record)
    closed = Closed(at=101.0, code=1006, reason="", closed_by="abnormal") if hold_record.closed else None
    return evidence(client, connection(request(UPGRADE), 101, closed=closed))


def topology(fix: str = "FIX THE PROXY", **fields: Any) -> Topology:
    return Topology(
        name="t",
        title="a proxy",
        proxy=fields.pop("proxy", "nginx"),
        port=18099,
        summary="",
        folder=Path("."),
        websocket_fix=fix,
        parameters=(Parameter("idle", 60.0, "[DOC] https://example.invalid/idle"),),
        **fields,
    )


def stream(cell: str = "c1") -> StreamRequest:
    return StreamRequest(
        stream=7,
        cell=cell,
        method="CONNECT",
        target=f"/echo?wslab-cell={cell}",
        path="/echo",
        version="HTTP/2",
        headers=[(":method", "CONNECT"), (":protocol", "websocket"), (":path", f"/echo?wslab-cell={cell}")],
    )


def run_of(cells: list[Any], topologies: list[str], scenarios: list[ScenarioRecord]) -> Run:
    """A run holding these cells, for renderers."""
    return Run(
        started_at="2026-12-02T00:00:00+00:00",
        duration=1.5,
        backend="local",
        options=Settings(concurrency=32, step_timeout=5, cell_timeout=30, settle=1, time_scale=0.02),
        components=Components(
            websockets_server="17.4", websockets_client="17.4", python="3.11.7", proxies={"nginx": "1.22.1"}
        ),
        topologies=[
            TopologyRecord(name=name, title=name, proxy="nginx", config="events {}\n") for name in topologies
        ],
        scenarios=scenarios,
        cells=cells,
    )


def lived_through(
    cause: str = "proxy-reload",
    closed_after: float | None = None,
    code: int | None = None,
    frame: bool = True,
    opened: bool = True,
    back_after: float | None = 0.5,
    instances: tuple[int | None, int | None] = (None, None),
) -> Evidence:
    """A cell whose event step saw ``cause``: kept open (``closed_after`` None) or closed;
    ``instances``: the app instance before the event and the one reached after it."""
    from wslab.records import Lifecycle, LifecycleEvent, NewConnection, Reconnect

    closed = closed_after is not None
    record = Lifecycle(
        event=LifecycleEvent(cause=cause, at=0.0, how="SIGHUP", source="https://example.invalid/reload"),
        watched=2.0,
        survived=not closed,
        closed_after=closed_after,
        code=code if closed else None,
        reason="" if closed else None,
        closed_by=("peer" if frame else "abnormal") if closed else None,
        close_frame_received=closed and frame,
        close_frame_sent=closed and frame,
        sent=20,
        echoed=18 if closed else 20,
        lost=[19, 20] if closed else [],
        sent_after_event=15,
        echoed_after_event=13 if closed else 15,
        reconnect=Reconnect(back_after=back_after, attempts=2) if closed else None,
        new_connection=NewConnection(at=1.0, opened=opened, took=0.01, error=None if opened else "timed out"),
        instance_before=instances[0],
        instance_after=instances[1],
    )
    script = transcript(request(UPGRADE), 101)
    script.upgraded = True
    script.lifecycle = record
    return evidence(script, connection(request(UPGRADE), 101))
