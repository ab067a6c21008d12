"""The lab's evidence as typed records: what one cell saw, and the run around the cells.

Everything a run finds ends up in these records: the request as the client
sent it, the response it got, each connection the server saw, the checks, the
diagnosis, and the run's components and topologies. They are built once,
read by attribute everywhere (expectations, diagnosis, explain, compare and
every renderer), and turned into JSON only at the edge
(:mod:`wslab.results`); the results JSON Schema is generated from them
(``wslab schema``).

Every record is self-contained: a topology carries the config text it ran
with and a cell the proxy's log lines that name it, so no reader of a results
file ever opens a path found in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT = "wslab.results/2"
"""The results format; a change that breaks readers changes the number."""


class Record(BaseModel):
    """A record: unknown fields are refused, so a results file says exactly what it holds."""

    model_config = ConfigDict(extra="forbid")


class Outcome(StrEnum):
    """A cell's verdict against its scenario's expectations."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    """The lab itself could not run the cell (a component failed or died)."""
    BLOCKED = "blocked"
    """A scenario this one depends on failed on the same topology."""
    INFORMATIONAL = "informational"
    """An informational-tier scenario did not match: never a failure."""
    UNAVAILABLE = "unavailable"
    """The topology could not be started here (its binary is not installed)."""
    NOT_MEASURED = "not-measured"
    """This run cannot measure it truthfully (a time limit an accelerated run cannot shorten)."""
    NOT_APPLICABLE = "not-applicable"
    """The scenario needs the lab's probe server (its commands), and this run put the user's
    app behind the topologies instead."""

    @property
    def failing(self) -> bool:
        """Whether this outcome fails a run (exit code 1, or 3 for a lab error)."""
        return self in (Outcome.FAIL, Outcome.ERROR)


@dataclass(frozen=True)
class Style:
    """How every renderer shows an outcome."""

    symbol: str
    colour: str
    """A rich colour name for the terminal."""
    css: str
    """The HTML report's class."""
    label: str
    meaning: str
    """The legend's words for it."""


STYLES: dict[Outcome, Style] = {
    Outcome.PASS: Style("✓", "green", "pass", "pass", "pass"),
    Outcome.FAIL: Style("✗", "red", "fail", "fail", "fail"),
    Outcome.ERROR: Style("!", "magenta", "error", "lab error", "lab error (a part of the lab failed)"),
    Outcome.BLOCKED: Style("⊘", "yellow", "blocked", "blocked", "blocked (a scenario it needs failed)"),
    Outcome.INFORMATIONAL: Style("ℹ", "blue", "info", "informational", "informational, did not match"),
    Outcome.UNAVAILABLE: Style("–", "dim", "unavailable", "unavailable", "unavailable"),
    Outcome.NOT_MEASURED: Style("○", "cyan", "not-measured", "not measured", "not measured in this mode"),
    Outcome.NOT_APPLICABLE: Style(
        "·", "dim", "not-applicable", "not applicable", "not applicable here (the cell says why)"
    ),
}
"""The one symbol and colour table; its order is the legend's."""


def legend() -> str:
    """Every outcome's symbol and meaning on one line: '✓ pass  ✗ fail  ! lab error ...'."""
    return "  ".join(f"{style.symbol} {style.meaning}" for style in STYLES.values())


Header = tuple[str, str]
"""A header line as ``(name, value)``, in wire order and original case."""


def header_value(headers: list[Header], name: str) -> str | None:
    """All values of header ``name`` (any case) joined by ', ', or None if absent."""
    wanted = name.lower()
    values = [value for key, value in headers if key.lower() == wanted]
    return ", ".join(values) if values else None


def header_tokens(value: str | None) -> list[str]:
    """The comma-separated tokens of a header value, lower case (``Connection: keep-alive, Upgrade``)."""
    return [token.strip().lower() for token in (value or "").split(",") if token.strip()]


class RequestHead(Record):
    """A request line and its header lines."""

    method: str
    target: str = Field(description="as written on the wire, with the wslab-cell correlation parameter")
    path: str = Field(description="the target without the wslab-cell parameter")
    version: str
    headers: list[Header] = Field(default_factory=list)

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)

    @property
    def asks_upgrade(self) -> bool:
        """Whether this request carries a WebSocket upgrade (Connection: upgrade + Upgrade: websocket)."""
        return "upgrade" in header_tokens(self.header("Connection")) and "websocket" in header_tokens(
            self.header("Upgrade")
        )


class ResponseHead(Record):
    """A status line and its header lines."""

    version: str | None = Field(None, description="absent for the server's own answer (websockets')")
    status: int
    reason: str = ""
    headers: list[Header] = Field(default_factory=list)


class StreamRequest(RequestHead):
    """One request inside a cleartext HTTP/2 connection, read from its HEADERS frames."""

    stream: int
    cell: str | None = Field(None, description="the correlation id in its :path")


class ServerError(Record):
    """The error websockets raised for a connection; through a recording tap, what happened instead
    of the app's answer (NoResponse, IncompleteRequest, NoRequest, InvalidResponse, TimeoutError, or
    the error of connecting to an app the tap could not reach)."""

    type: str = Field(description="e.g. InvalidUpgrade; through a tap, e.g. NoResponse")
    text: str = Field(description="exactly what websockets logs, e.g. 'missing Connection header'")
    cause: str = Field("", description="the chained exception, e.g. 'ValueError: unsupported HTTP method'")
    source: Literal["server", "app log"] = Field(
        "server",
        description="server: the lab's probe server raised it; app log: read from the line the "
        "user's app logged for this cell (runs with --app)",
    )


class AppLogLine(Record):
    """What the user's app wrote (runs with --app): one line, or a traceback written at once."""

    at: float = Field(description="UNIX time the lab read it")
    stream: Literal["stdout", "stderr"]
    text: str
    attributed_by: Literal["request id", "connection port", "timing"] | None = Field(
        None,
        description="how it was tied to the cell: its wslab-cell id in the line, the tap's port "
        "toward the app in the line, or the only handshake in flight to the app when it came",
    )


class TapTraffic(Record):
    """What a recording tap (``--forward``) counted on one TCP connection between proxy and app."""

    connection: int = Field(description="the tap's number for the connection; kept-alive requests share it")
    upstream: tuple[str, int] = Field(description="the app's address")
    bytes_to_app: int = Field(description="bytes the tap forwarded to the app on the connection so far")
    bytes_from_app: int = Field(description="bytes the app sent back on it so far")
    ended_by: str | None = Field(
        description="whose side ended first: client (the proxy), app, client-reset, app-reset, or tap "
        "(the app could not be reached); null while both were open"
    )


class TapRecord(TapTraffic):
    """One request as the recording tap in front of the user's app saw it pass."""

    upstream_local_port: int | None = Field(
        description="the tap's own port toward the app, which the app logs as its peer's; null when "
        "the app could not be reached"
    )
    reused: int = Field(description="the request's index on its kept-alive connection: 0 for the first")
    request_forwarded_at: float | None = Field(
        description="UNIX time the request head's last byte went to the app"
    )
    response_at: float | None = Field(description="UNIX time the app's response head arrived")
    gave_up: str | None = Field(
        None,
        description="why the tap stopped following the HTTP/1.x framing on this connection, per side "
        "('request: a head over 65536 bytes'); it still forwarded every byte unchanged, and a request "
        "after it on the connection has no record of its own",
    )


class TapClose(TapTraffic):
    """How an upgraded connection through a recording tap ended, with the app's own close frame."""

    app_code: int | None = Field(description="the code of the close frame the app sent; null if it sent none")
    app_reason: str = ""


class Closed(Record):
    """How an upgraded connection ended, as the server saw it."""

    at: float
    code: int | None = Field(description="of the close frame the server received; 1006 if none")
    reason: str = ""
    closed_by: str = Field(description="client, server or abnormal: who sent the first close frame")
    tap: TapClose | None = Field(None, description="through a recording tap: how the connection ended")


class Connection(Record):
    """One connection the probe server saw: the request exactly as it arrived, and its answer.

    Through a recording tap in front of the user's app, one request: a proxy may send several
    on one kept-alive connection, and each has its own record (``tap.reused`` counts them).
    """

    listener: str = Field(description="the probe listener (one per topology)")
    conn: int = Field(description="the server's connection number; through a tap, the request's")
    cell: str | None = Field(description="the correlation id read from the target")
    opened_at: float = Field(
        description="UNIX time the connection was accepted; through a tap, for a later request on a "
        "kept-alive connection, the time its first byte arrived"
    )
    at: float = Field(description="UNIX time the handshake ended")
    peer: tuple[str, int] | None = Field(description="where the connection came from (the proxy)")
    bytes_received: int
    raw_head: str = Field(description="the request head as received (latin-1), up to the blank line")
    request: RequestHead | None = Field(
        description="parsed leniently from raw_head; null without a request line"
    )
    response: ResponseHead | None = Field(
        description="what websockets (through a tap: the app) answered; null if it closed silently"
    )
    upgraded: bool
    error: ServerError | None
    closed: Closed | None = Field(None, description="for upgraded connections: how they ended")
    http2_request: StreamRequest | None = Field(
        None, description="over h2c: the stream that carried this cell's request"
    )
    attributed: bool = Field(
        True, description="false when no correlation id tied it to the cell, only its time"
    )
    tap: TapRecord | None = Field(
        None, description="when a recording tap stood in front of the user's app: what it saw pass"
    )

    @property
    def request_seen(self) -> RequestHead | None:
        """The request this cell made: its HTTP/2 stream over h2c, else the request line."""
        return self.http2_request or self.request


class Step(Record):
    """One scenario step as the client played it."""

    step: str
    argument: Any
    ok: bool = True
    detail: str | None = None


class Close(Record):
    code: int | None
    reason: str = ""


class Hold(Record):
    """How a WebSocket held open ended (the ``hold`` step)."""

    seconds: float = Field(description="seconds held in this run")
    seconds_faithful: float = Field(description="the same in faithful (documented) seconds")
    closed: bool
    lived: float = Field(description="seconds the connection lived in this run")
    lived_faithful: float
    since_last_byte: float = Field(description="seconds from the last byte received to the end")
    code: int | None
    reason: str | None
    closed_by: str | None

    @property
    def cut_while_idle(self) -> bool:
        """Cut with nothing crossing the connection for (almost) its whole life."""
        return self.closed and self.since_last_byte >= 0.9 * self.lived


class FaultRecord(Record):
    """A network fault a ``fault`` step put on one hop (lab/faults.py), and what came of it."""

    kind: str = Field(description="stall, reset, bandwidth or latency")
    hop: str = Field(description="client-proxy or proxy-server")
    port: int | None = Field(description="the hop's TCP port on 127.0.0.1 that the rules match")
    rate_kbit: int | None = Field(None, description="bandwidth: the hop's rate, both directions together")
    delay_ms: int | None = Field(None, description="latency: added each way")
    applied_at: float | None = Field(description="UNIX time the fault was on; null if it never was")
    cleared_at: float | None = Field(None, description="UNIX time it was taken off")
    commands: list[str] = Field(
        default_factory=list,
        description="the commands that put it on: iptables or tc, and before them what tc faults on the "
        "device share, if this one was the first to need it (an htb root; in a container an ifb device, "
        "a clsact qdisc)",
    )
    not_measured: str | None = Field(
        None, description="why the fault could not be put on here (then the cell is not measured)"
    )
    error: str | None = Field(
        None, description="a command that failed otherwise, or a rule left to the namespace's teardown"
    )
    closed_after: float | None = Field(
        None, description="seconds from the fault to the end of the client's WebSocket, if it ended under it"
    )


EventCause = Literal["proxy-reload", "server-restart", "redeploy", "instance-replacement", "scale-to-zero"]
"""What the lab does while a WebSocket is open (the ``event`` step; lab/lifecycle.py)."""


class LifecycleEvent(Record):
    """An event the lab caused while the cell's WebSocket was open."""

    cause: EventCause
    at: float = Field(description="UNIX time the lab caused it")
    how: str = Field(description="the command or signal, e.g. 'nginx -s reload (SIGHUP to the master)'")
    source: str = Field(description="the documentation URL that says this is how, or 'assumption: ...'")
    assumption: str = Field(
        "", description="what the lab assumes in emulating it (a platform's redeploy as a proxy reload)"
    )
    detail: str = Field("", description="what the lab saw while causing it (a restarted listener's downtime)")
    ends_after: float | None = Field(
        None,
        description="seconds of this run from the event until the old instance is surely gone (a redeploy's "
        "drain and grace; a scale to zero's idle time); null: at once",
    )
    documented: str = Field(
        "",
        description="what the topology file says becomes of open WebSockets at this event, how that is "
        "known and its source ('kept (documented: [DOC] https://...)'); empty: it says nothing",
    )
    documented_kept: bool | None = Field(
        None, description="whether that says open WebSockets are kept; null: it says nothing"
    )


class Sequenced(Record):
    """One sequence-numbered message the client sent during an event step, and its echo."""

    seq: int
    sent: float = Field(description="seconds from the event (negative: before it)")
    echoed: float | None = Field(description="seconds from the event its echo came back; null: lost")


class PageAttempt(Record):
    """One WebSocket a Chromium page opened (the watched one, then each of its reconnect loop's),
    as the page saw it: its events' times, and its CloseEvent."""

    started: float = Field(description="seconds from the event to new WebSocket() (negative: before it)")
    opened: float | None = Field(description="seconds from the event to its open event; null: never opened")
    closed: float | None = Field(description="seconds from the event to its close event; null: still open")
    code: int | None = Field(None, description="CloseEvent.code (1006: no close frame came)")
    reason: str = Field("", description="CloseEvent.reason")
    clean: bool | None = Field(None, description="CloseEvent.wasClean: the closing handshake completed")
    instance: int | None = Field(
        None,
        description="the app instance in the handshake response's X-Wslab-Instance, as Chromium reported "
        "it over DevTools (the page's script cannot read response headers)",
    )
    error: str | None = Field(None, description="Chromium's error for it over DevTools, if any")


class Reconnect(Record):
    """How a reconnecting client came back after the close: websockets' ``connect`` iterator, or a
    Chromium page's reconnect loop (``new WebSocket()`` again from its close handler)."""

    back_after: float | None = Field(
        description="seconds from the close (as the client saw it) to the new connection's opening "
        "handshake; null: not back"
    )
    attempts: int = Field(description="connection attempts, the successful one included")
    error: str | None = Field(None, description="the last failed attempt's error")
    instance: int | None = Field(None, description="the app instance it landed on (X-Wslab-Instance)")
    client: Literal["websockets", "chromium"] = Field(
        "websockets",
        description="websockets: `async for websocket in connect(uri)` with its own backoff; chromium: "
        "a page's `new WebSocket(url)`, reopened from its close handler as `policy` says",
    )
    policy: str = Field("", description="chromium: how long the page's loop waits before each attempt")
    sockets: list[PageAttempt] = Field(
        default_factory=list,
        description="chromium: every socket of the page from the watched one on, in order",
    )


class NewConnection(Record):
    """A second client opening a WebSocket while the event's effects last (halfway through the watch)."""

    at: float = Field(description="seconds from the event it was attempted")
    opened: bool
    took: float = Field(description="seconds its opening handshake took, or until it failed")
    error: str | None = None
    instance: int | None = Field(None, description="the app instance it landed on (X-Wslab-Instance)")


class Lifecycle(Record):
    """What became of an open WebSocket through an event the lab caused (the ``event`` step)."""

    event: LifecycleEvent
    watched: float = Field(description="seconds the lab watched the connection after the event")
    survived: bool = Field(description="still open, and echoing, at the end of the watch")
    closed_after: float | None = Field(description="seconds from the event to the close; null: open")
    code: int | None = Field(description="the close code the client saw (1006: no close frame)")
    reason: str | None
    closed_by: str | None = Field(description="client, peer, or abnormal (TCP closed, no close frame)")
    close_frame_received: bool
    close_frame_sent: bool
    sent: int = Field(description="sequence-numbered messages the client sent")
    echoed: int = Field(description="of which an echo came back")
    lost: list[int] = Field(description="the sequence numbers sent but never echoed")
    sent_after_event: int
    echoed_after_event: int
    messages: list[Sequenced] = Field(
        default_factory=list, description="each message, for the timeline (at most 200: the last)"
    )
    reconnect: Reconnect | None = Field(None, description="when the scenario reconnects after a close")
    new_connection: NewConnection | None = Field(
        None, description="whether a new client could connect halfway through the watch"
    )
    instance_before: int | None = Field(
        None, description="the app instance the connection was on (X-Wslab-Instance; null: not said)"
    )
    instance_after: int | None = Field(
        None, description="the instance the new client, or else the reconnection, landed on after the event"
    )
    as_documented: bool | None = Field(
        None,
        description="whether what became of the connection (kept or closed) is what the topology file says "
        "(event.documented); null: it says nothing",
    )


class BrowserRequest(Record):
    """One request a browser page made, as Chromium reported it."""

    url: str
    type: str
    sent: RequestHead
    received: ResponseHead | None
    error: str | None = Field(description="Chromium's net error")


class BrowserReport(Record):
    product: str = Field(description="Chromium's version")
    requests: list[BrowserRequest] = Field(
        description="the document, then Chromium's own follow-ups; for a page's WebSocket kept open "
        "(browser_connect), the handshake of each socket its reconnect loop opened"
    )


class ClientKind(StrEnum):
    NONE = ""
    CONNECT = "connect"
    RAW = "raw"
    TCP_PROBE = "tcp_probe"
    BROWSER = "browser"


class Transcript(Record):
    """Everything the client did and saw in one cell."""

    kind: ClientKind = ClientKind.NONE
    sent: RequestHead | None = Field(None, description="the request as written on the wire")
    received: ResponseHead | None = Field(None, description="the response head that came back")
    connected: bool = False
    peer_closed_after: float | None = Field(
        None, description="a TCP probe: seconds from its FIN until the front end closed its side too"
    )
    upgraded: bool = False
    subprotocol: str | None = None
    error: str | None = Field(None, description="the first failing step's error")
    timed_out: bool = False
    steps: list[Step] = Field(default_factory=list)
    close: Close | None = None
    hold: Hold | None = None
    lifecycle: Lifecycle | None = Field(None, description="the event step's record: an event the lab caused")
    browser: BrowserReport | None = None
    faults: list[FaultRecord] = Field(default_factory=list, description="network faults its steps put on")

    @property
    def status(self) -> int | None:
        return self.received.status if self.received else None


class Check(Record):
    """One expectation of the scenario against the evidence."""

    name: str
    expected: Any
    actual: Any
    ok: bool


class Diagnosis(Record):
    """Why a cell did not pass, and what to change."""

    rule: str = Field(description="the rule's id in wslab/diagnosis.py")
    cause: str
    fix: str


class Cell(Record):
    """One scenario through one topology: the evidence, the checks, the verdict, the diagnosis."""

    topology: str
    scenario: str
    suite: str
    outcome: Outcome
    summary: str = Field(description="the matrix's short text: a status, no answer, timeout, open 150s...")
    duration: float = 0.0
    cell_id: str | None = Field(None, description="the correlation id its requests carried")
    client: Transcript | None = None
    server: list[Connection] = Field(default_factory=list, description="every connection the server saw")
    checks: list[Check] = Field(default_factory=list)
    diagnosis: Diagnosis | None = None
    error: str | None = Field(None, description="for error, unavailable and blocked cells: why")
    log_tail: str = Field("", description="the proxy's last log lines when it failed or died")
    proxy_log: list[str] = Field(default_factory=list, description="the proxy's log lines naming this cell")
    app_log: list[AppLogLine] = Field(
        default_factory=list, description="with --app: what the user's app logged for this cell"
    )

    @property
    def server_error(self) -> ServerError | None:
        """The first error the server logged for this cell."""
        return next((c.error for c in self.server if c.error), None)


class DeploymentStatus(StrEnum):
    READY = "ready"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"


class Parameter(Record):
    """A time limit a topology is configured with, and where its value comes from."""

    name: str
    seconds: float = Field(description="faithful seconds")
    source: str
    limit: str = Field(
        "idle",
        description="what it limits: idle, lifetime, close-delay or handshake; or how an instance ends: "
        "shutdown-delay, shutdown-grace, idle-to-zero",
    )
    granularity: float = Field(0.001, description="the smallest step the proxy accepts, in seconds")


FactStatus = Literal["documented", "inferred", "assumed", "measured"]


class Fact(Record):
    """What a deployment option is like beyond its time limits (topology.yaml ``facts:``)."""

    value: str = Field(description="a few words, as `wslab compare` shows them")
    status: FactStatus = Field(description="how it is known; measured: the lab observed it")
    source: str = Field(description="[DOC] and the URL, the reasoning, or the assumption")
    holds: bool | None = Field(
        None, description="whether the statement its key makes holds (null: it does not apply)"
    )


class TopologyRecord(Record):
    """A topology as this run stood it up (or could not)."""

    name: str
    title: str = ""
    proxy: str = ""
    role: Literal["direct", "bare", "websocket", "platform"] = "bare"
    proxy_version: str = ""
    summary: str = ""
    platform: str = ""
    parameters: list[Parameter] = Field(default_factory=list)
    behaviours: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    status: DeploymentStatus = DeploymentStatus.READY
    endpoint: str | None = None
    detail: str = Field("", description="why it is not ready")
    log_tail: str = ""
    config: str | None = Field(None, description="the proxy's config as rendered for this run")
    arguments: list[str] = Field(default_factory=list, description="command-line arguments beyond the kind's")
    basis: str = Field("", description="what the config is: a distribution's default, a documented recipe")
    facts: dict[str, Fact] = Field(
        default_factory=dict,
        description="scale_to_zero, cold_start, several_instances, cost: what the option is like beyond "
        "its time limits, each with its status and source",
    )


Tier = Literal["required", "deployment", "informational"]


class ScenarioRecord(Record):
    id: str
    short: str = Field("", description="its column code in the terminal matrix")
    suite: str
    tier: Tier = "deployment"
    depends_on: list[str] = Field(default_factory=list)
    title: str = ""
    models: str = ""
    description: str = ""
    expect: dict[str, Any] = Field(default_factory=dict)
    source: str = Field("", description="file:line")
    needs_probe_server: bool = Field(
        False, description="relies on the lab's probe server: not applicable against a user's app"
    )


class Components(Record):
    websockets_server: str
    websockets_client: str
    python: str
    proxies: dict[str, str] = Field(default_factory=dict, description="proxy kind -> its binary's version")
    browser: str | None = None

    def tool_versions(self) -> str:
        """The proxies' versions, and the browser's if one ran: 'envoy 1.40.0, haproxy 2.6.12'."""
        tools = [f"{kind} {version}" for kind, version in self.proxies.items()]
        if self.browser:
            tools.append(f"browser {self.browser}")
        return ", ".join(tools)


class Settings(Record):
    """How the cells were played."""

    concurrency: int
    step_timeout: float
    cell_timeout: float
    settle: float = Field(description="seconds waited for a server report that may never come")
    time_scale: float = Field(description="1: faithful; below 1: every time limit that much shorter")
    redacted: bool = Field(
        True,
        description="secrets (Authorization, cookies, API keys, tokens in the query or the subprotocols) "
        "were replaced by [redacted len=N sha256:XXXXXXXX]; false only with --no-redact",
    )
    warm_lab: bool = Field(
        False, description="the cells ran on topologies a `wslab up` kept running (a warm lab)"
    )


class AppRecord(Record):
    """The user's app the topologies were put in front of, instead of the lab's probe server."""

    command: str | None = Field(None, description="--app: the command the lab started (PORT, HOST set)")
    upstream: str | None = Field(None, description="--upstream: HOST:PORT of an app already running")
    image: str | None = Field(None, description="--app-image: the local image put in the stack")
    per_topology: bool = Field(False, description="one app process per topology (--app-per-topology)")
    exit: str = Field("", description="how the app ended if it did during the run")
    unattributed: list[AppLogLine] = Field(
        default_factory=list, description="what the app logged that no cell could be tied to (the last lines)"
    )


class Run(Record):
    """A whole run: components, topologies, scenarios and cells."""

    format: Literal["wslab.results/2"] = FORMAT
    started_at: str = Field(description="ISO 8601, UTC")
    duration: float = Field(description="seconds from the start of the topologies to their teardown")
    backend: str = Field(description="local, compose, containers or remote; merged runs join theirs with +")
    options: Settings
    components: Components
    topologies: list[TopologyRecord]
    scenarios: list[ScenarioRecord]
    cells: Annotated[list[Cell], Field(description="one per topology x scenario")]
    app: AppRecord | None = Field(
        None, description="the user's app, when the run put one behind the topologies"
    )

    def size(self) -> str:
        """``29 topologies × 13 scenarios`` (``1 topology × 1 scenario``)."""
        topologies, scenarios = len(self.topologies), len(self.scenarios)
        return (
            f"{topologies} topolog{'y' if topologies == 1 else 'ies'} × "
            f"{scenarios} scenario{'' if scenarios == 1 else 's'}"
        )

    def took(self) -> str:
        """The run's wall time as a person reads it: ``6.3 s``, ``0.04 s`` (not ``0.0 s``)."""
        return f"{self.duration:.2f} s" if self.duration < 1 else f"{self.duration:.1f} s"

    def server_description(self) -> str:
        """What stood behind the topologies: 'websockets 17.4 (server)', or the user's app."""
        app = self.app
        if app is None:
            return f"websockets {self.components.websockets_server} (server)"
        if app.command:
            return f"your app ({app.command}{', one per topology' if app.per_topology else ''})"
        if app.image:
            return f"your app (image {app.image})"
        return f"your app on {app.upstream}"

    def cell(self, topology: str, scenario: str) -> Cell:
        for cell in self.cells:
            if cell.topology == topology and cell.scenario == scenario:
                return cell
        raise KeyError((topology, scenario))

    def counts(self) -> dict[Outcome, int]:
        """Cells per outcome, in the legend's order."""
        return {outcome: sum(c.outcome == outcome for c in self.cells) for outcome in STYLES}
