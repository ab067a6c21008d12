"""Why a cell did not pass, and what to change: a table of rules over the evidence.

Each rule compares what the client sent with what the server received (and
what came back). The first rule whose condition holds gives the cause and the
fix hint. Rules are pure: the same evidence always gives the same diagnosis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .evidence import Evidence
from .fixes import PROCESS_REQUEST_FIX, SIGTERM_PROGRAM
from .proxies import REGISTRY
from .records import Check, ClientKind, Diagnosis, FaultRecord, Hold, Lifecycle, header_tokens
from .topology import INSTANCE_LIMITS, Topology, cutting_limit

GENERIC_PROXY_FIX = (
    "Configure the proxy to forward the WebSocket upgrade over HTTP/1.1: pass the client's "
    "Upgrade header and set Connection: upgrade on the upstream request."
)

UPGRADE_WEBSOCKETS_FIX = (
    "websockets 17.0 and later answer HEAD with 405 and HTTP/1.0 with 505 and hand such "
    "requests to process_request, where a health check can get 200: pip install -U websockets. "
    "Or have the check use GET over HTTP/1.1."
)


@dataclass(frozen=True)
class Rule:
    id: str
    when: Callable[[Evidence], bool]
    cause: Callable[[Evidence], str]
    fix: Callable[[Evidence, Topology], str]


def _proxy_fix(facts: Evidence, topology: Topology) -> str:
    return topology.websocket_fix or GENERIC_PROXY_FIX


def _answer_plain_http(facts: Evidence, topology: Topology) -> str:
    """Plain HTTP at the WebSocket port: answer it in process_request (the code is in wslab.fixes)."""
    return PROCESS_REQUEST_FIX


def _shown(value: str | None) -> str:
    return f"'{value}'" if value is not None else "absent"


def _server_said(facts: Evidence) -> str:
    if facts.server_error is None:
        return f" The server answered {facts.server_status}." if facts.server_status else ""
    answer = f"answered {facts.server_status}" if facts.server_status else "closed without answering"
    return f" The server {answer}: '{facts.server_error}'."


def _client_got(facts: Evidence) -> str:
    """What the client got, when that differs from what the server answered."""
    if facts.status is not None and facts.status == facts.server_status:
        return ""
    got = f"the proxy answered {facts.status}" if facts.status else "the client got no response"
    return f" Then {got}."


def _http2_stream(facts: Evidence) -> str:
    """Which HTTP/2 stream carried this cell's request, read from the frames the server got."""
    stream = facts.server.http2_request if facts.server else None
    if stream is None:
        return ""
    protocol = stream.header(":protocol")
    carried = f" with :protocol {protocol} (RFC 8441, WebSocket over HTTP/2)" if protocol else ""
    return f" This request was stream {stream.stream} on it: {stream.method} {stream.path}{carried}."


def _why_rewritten(tokens: list[str]) -> str:
    """Which kind of proxy sends this Connection value upstream for a request without Upgrade."""
    if "upgrade" in tokens:
        return (
            " with no Upgrade header, as a proxy that sets Connection: upgrade on every request does "
            '(nginx\'s literal recipe, proxy_set_header Connection "upgrade")'
        )
    if "close" in tokens:
        return (
            ", as a proxy that closes its upstream connection after each request does (lighttpd, "
            "nginx's map $http_upgrade $connection_upgrade recipe)"
        )
    if "keep-alive" in tokens:
        return ", as a proxy that pools its upstream connections does (Apache's mod_proxy_http)"
    return ""


def _cut(facts: Evidence) -> Hold | None:
    """The hold step's record, if the connection it held was cut."""
    hold = facts.transcript.hold
    return hold if hold is not None and hold.closed else None


def _limits(topology: Topology) -> str:
    """The topology's limits on a connection (how it ends an instance is another matter)."""
    limits = [p for p in topology.parameters if p.limit not in INSTANCE_LIMITS]
    if not limits:
        return " This topology configures no such limit itself."
    return " Configured: " + "; ".join(f"{p.name} = {p.seconds:g} s ({p.source})" for p in limits) + "."


def _ended(facts: Evidence) -> str:
    hold = facts.transcript.hold
    assert hold is not None
    return (
        f"after {hold.lived_faithful:g} s (faithful; {hold.lived:.2f} s in this run), "
        f"{hold.since_last_byte:.2f} s after the last byte, closed by {hold.closed_by}, "
        f"code {hold.code}"
    )


LIMIT_FIXES = {
    "idle-timeout": "Keep data flowing more often than the idle timeout: websockets' default "
    "ping_interval=20 does (keep it, or lower it below the limit), or raise the proxy's idle timeout.",
    "lifetime-cap": "No ping beats a lifetime cap: raise it where the platform allows (Cloud Run: "
    "--timeout up to 3600 s), make clients reconnect on close, or pick a deployment without a cap.",
}


IDLE_DIRECTIVES = {
    "nginx": "proxy_read_timeout (60 s by default; proxy_send_timeout for the other direction)",
    "haproxy": "timeout tunnel (without it, timeout client and timeout server govern the upgraded "
    "connection)",
    "envoy": "the route's idle_timeout and the connection manager's stream_idle_timeout (5 min by default)",
    "varnish": "pipe_timeout",
    "apache": "ProxyTimeout (Timeout when unset, 60 s by default)",
    "lighttpd": "server.max-read-idle and server.max-write-idle",
    "caddy": "reverse_proxy's stream_timeout and the transport's read_timeout",
    "traefik": "the entry point's respondingTimeouts.idleTimeout and the transport's timeouts",
}
"""The setting that ends an upgraded connection nothing crosses, per proxy kind."""


def _stall_at_cut(facts: Evidence) -> FaultRecord | None:
    """The stall that was on when the held WebSocket ended, if one was."""
    if _cut(facts) is None:
        return None
    return next(
        (f for f in facts.transcript.faults if f.kind == "stall" and f.closed_after is not None),
        None,
    )


def _stall_cut(facts: Evidence) -> str:
    stall = _stall_at_cut(facts)
    hold = facts.transcript.hold
    assert stall is not None and hold is not None
    sides = "the proxy and the server" if stall.hop == "proxy-server" else "the client and the proxy"
    server = facts.server.closed if facts.server else None
    if server is not None:
        seen = f"the server saw close code {server.code} ({server.closed_by})"
    else:
        seen = "the server had seen no end of it by then (whatever the proxy sent was dropped)"
    return (
        f"A stall (every packet dropped) between {sides} (port {stall.port}) and the WebSocket ended "
        f"{stall.closed_after:.2f} s after it began, {hold.since_last_byte:.2f} s after the last byte "
        f"the client received: the client saw code {hold.code}, {hold.closed_by}; {seen}. Nothing could "
        "cross the stalled hop, so a timeout for a connection that carries nothing closed it."
    )


def _stall_fix(facts: Evidence, topology: Topology) -> str:
    if topology.direct:
        return (
            "No proxy here: websockets' keepalive (ping_interval, ping_timeout: 20 s each by default) "
            "closes a connection whose pongs stop coming, as they do in a stall."
        )
    directive = IDLE_DIRECTIVES.get(topology.proxy, "its idle timeout for upgraded connections")
    return (
        f"This is the proxy's idle timeout: {topology.proxy} {directive}. It turns a network stall "
        "into a close after that long; raise it to ride out longer stalls, or lower it (with the "
        "client reconnecting on close) to notice dead peers sooner. Pings cannot cross a stall."
        + _limits(topology)
    )


def _life(facts: Evidence, cause: str) -> Lifecycle | None:
    """The event step's record, if its event was ``cause``."""
    record = facts.transcript.lifecycle
    return record if record is not None and record.event.cause == cause else None


def _how_closed(record: Lifecycle) -> str:
    """1006 (the TCP connection dropped, no close frame) or a close frame's code, in words."""
    if not record.close_frame_received:
        return (
            f"{record.closed_after} s after it, with no close frame: the client saw 1006 (abnormal "
            "closure), as when a process holding the connection exits or resets it"
        )
    return f"{record.closed_after} s after it, with a close frame: code {record.code} '{record.reason or ''}'"


def _lost(record: Lifecycle) -> str:
    return f" {len(record.lost)} numbered messages in flight were lost." if record.lost else ""


def _page_close(record: Lifecycle) -> str:
    """What a Chromium page's close event said of the watched socket ('' when the watched
    connection was websockets' client's: the cause already says all it saw)."""
    again = record.reconnect
    if again is None or again.client != "chromium" or not again.sockets:
        return ""
    watched = again.sockets[0]
    return (
        f" In the browser, the page's close event said code {watched.code}, wasClean "
        f"{str(watched.clean).lower()}"
        + (": its close handler cannot tell this from a lost network" if watched.code == 1006 else "")
    )


def _page_saw(record: Lifecycle) -> str:
    """:func:`_page_close`, and how the page's reconnect loop came back."""
    seen, again = _page_close(record), record.reconnect
    if not seen or again is None:
        return ""
    if again.back_after is None:
        return f"{seen}; its reconnect loop was not back ({again.attempts} attempts; last: {again.error})."
    where = f" on instance {again.instance}" if again.instance is not None else ""
    if again.instance is not None and again.instance == record.instance_before:
        where += ", the same one"
    return (
        f"{seen}; its reconnect loop was back {again.back_after:g} s later{where} "
        f"({again.attempts} attempt{'s' if again.attempts != 1 else ''})."
    )


def _reload_directive(topology: Topology, field: str) -> str:
    reload = REGISTRY[topology.proxy].reload if not topology.direct else None
    return getattr(reload, field) if reload is not None else ""


def _replaced(facts: Evidence) -> Lifecycle | None:
    """The event step's record, if a redeploy or an instance replacement ended its instance."""
    return _life(facts, "redeploy") or _life(facts, "instance-replacement")


def _sigterm_cause(facts: Evidence) -> str:
    record = facts.transcript.lifecycle
    assert record is not None
    return (
        f"The {record.event.cause} ended the connection's instance ({record.event.how}); the "
        f"connection ended {_how_closed(record)}. The app did not close it on SIGTERM, so it lived "
        f"until the SIGKILL.{_lost(record)}{_page_saw(record)}"
    )


def _sigterm_fix(facts: Evidence, topology: Topology) -> str:
    return (
        "Handle SIGTERM in the app and close every connection with 1001 Going Away before the "
        "platform's SIGKILL cuts what is left (each cell's event gives that platform's grace period "
        "and its source). With websockets:\n\n"
        f"{SIGTERM_PROGRAM}\nRun the server itself as the container's command (exec form), not "
        "under a shell that swallows the signal, and make clients reconnect on close "
        "(async for websocket in connect(uri); in a page, a new WebSocket from the close handler)."
    )


def _quiet_cut_cause(facts: Evidence) -> str:
    record = facts.transcript.lifecycle
    assert record is not None
    return (
        f"The quiet WebSocket was closed {_how_closed(record)}, before the instance could scale to "
        f"zero ({record.event.ends_after} s with no request in progress, in this run): an open "
        "WebSocket is a request in progress and keeps its instance, so the scale to zero did not "
        f"close it.{_page_saw(record)}{_kept_warm(record)}"
    )


def _kept_warm(record: Lifecycle) -> str:
    """A page whose loop reopened its WebSocket on the instance it had: while the tab is open, the
    instance always has a request in progress."""
    again = record.reconnect
    if again is None or again.client != "chromium" or again.instance is None:
        return ""
    if again.instance != record.instance_before:
        return ""
    return " A tab left open so keeps its instance from ever scaling to zero (and billed)."


def _quiet_cut_fix(facts: Evidence, topology: Topology) -> str:
    cut = cutting_limit(topology.parameters, float("inf"), None)
    limit = f"its {cut[0].name} ({cut[0].seconds:g} s, {cut[0].limit})" if cut else "a limit on the path"
    return (
        f"What closed it is {limit}. "
        + (topology.websocket_fix or "Raise that limit or have clients reconnect on close.")
        + " An open WebSocket keeps the instance active, and billed, while it is open."
    )


def _against_documentation(record: Lifecycle) -> str:
    """What the topology file says of open WebSockets at this event, and whether this run agrees."""
    if record.as_documented is None:
        return ""
    if record.as_documented:
        return f" That is what its topology file says: {record.event.documented}."
    return f" Its topology file says otherwise: {record.event.documented}; this run is the evidence."


LIFECYCLE_RULES: list[Rule] = [
    Rule(
        "reload-closed-websocket",
        lambda f: (r := _life(f, "proxy-reload")) is not None and r.closed_after is not None,
        lambda f: (
            f"The proxy's reload ({f.transcript.lifecycle.event.how}) closed the open WebSocket "
            f"{_how_closed(f.transcript.lifecycle)} instead of letting it finish."
            f"{_lost(f.transcript.lifecycle)}{_page_saw(f.transcript.lifecycle)}"
            f"{_against_documentation(f.transcript.lifecycle)}"
        ),
        lambda f, t: (
            (f"Its documentation: {drains}. " if (drains := _reload_directive(t, "drains")) else "")
            + "Give old connections time to finish after a reload: "
            + (_reload_directive(t, "directive") or "the proxy's shutdown timeout for old workers")
            + ". And make clients reconnect on close (websockets: async for websocket in connect(uri); "
            "a page: a new WebSocket from the close handler, after a delay)."
        ),
    ),
    Rule(
        "reload-refused-new-connections",
        lambda f: (
            (r := _life(f, "proxy-reload")) is not None
            and r.new_connection is not None
            and not r.new_connection.opened
        ),
        lambda f: (
            "The open WebSocket outlived the reload, but a new client could not connect "
            f"{f.transcript.lifecycle.new_connection.at:g} s after it "
            f"({f.transcript.lifecycle.new_connection.error}): the proxy stops taking new connections "
            "while old ones drain, and an open WebSocket drains only when it ends."
        ),
        lambda f, t: (
            "Let the new configuration serve at once: "
            + (_reload_directive(t, "new_connections") or "see the proxy's graceful-restart settings")
            + "; or bound the drain: "
            + (_reload_directive(t, "directive") or "the proxy's shutdown timeout")
            + "."
        ),
    ),
    Rule(
        "restart-close-without-frame",
        lambda f: (
            (r := _life(f, "server-restart")) is not None
            and r.closed_after is not None
            and not r.close_frame_received
        ),
        lambda f: (
            "The server closed with 1001 Going Away as it stopped, but the client got no close frame: "
            f"the connection ended {_how_closed(f.transcript.lifecycle)}. The proxy did not pass the "
            f"server's close frame on.{_lost(f.transcript.lifecycle)}{_page_saw(f.transcript.lifecycle)}"
        ),
        lambda f, t: (
            "Treat 1006 like 1001 in clients: reconnect with backoff (websockets' connect() iterator "
            "does). Check the proxy's tunnel handling: it should relay frames until the server closes TCP."
        ),
    ),
    Rule(
        "restart-not-back",
        lambda f: (
            (r := _life(f, "server-restart")) is not None
            and r.reconnect is not None
            and r.reconnect.back_after is None
        ),
        lambda f: (
            f"After the server restart the reconnecting client was not back within its budget "
            f"({f.transcript.lifecycle.reconnect.attempts} attempts; last: "
            f"{f.transcript.lifecycle.reconnect.error})."
            + (f"{seen}." if (seen := _page_close(f.transcript.lifecycle)) else "")
        ),
        lambda f, t: (
            "Read the proxy's log: it may mark the server down after failed attempts and wait its "
            "health-check interval before sending traffic again (HAProxy check inter, nginx "
            "max_fails/fail_timeout, lighttpd's gw-server re-enable)."
        ),
    ),
    Rule(
        "redeploy-cut-without-close",
        lambda f: (
            (r := _replaced(f)) is not None and r.closed_after is not None and not r.close_frame_received
        ),
        _sigterm_cause,
        _sigterm_fix,
    ),
    Rule(
        "scale-to-zero-closed-quiet-connection",
        lambda f: (r := _life(f, "scale-to-zero")) is not None and r.closed_after is not None,
        _quiet_cut_cause,
        _quiet_cut_fix,
    ),
]
"""Outcomes of the lifecycle suite's events (lab/lifecycle.py), before the general rules."""


RULES: list[Rule] = [
    *LIFECYCLE_RULES,
    Rule("stall-idle-timeout", lambda f: _stall_at_cut(f) is not None, _stall_cut, _stall_fix),
    Rule(
        "timeout",
        lambda f: f.transcript.timed_out,
        lambda f: (
            f"Timed out: {f.transcript.error}."
            + (" The request reached the server." if f.reached_server else " Nothing reached the server.")
        ),
        lambda f, t: (
            "Read the proxy's log: it may hold the request (or a response it never delivers) "
            "instead of answering. Check that it forwards the upgrade at all, and its timeouts for "
            "upgraded connections (nginx proxy_read_timeout, HAProxy timeout tunnel, Envoy "
            "stream_idle_timeout)."
        ),
    ),
    Rule(
        "idle-timeout",
        lambda f: (hold := _cut(f)) is not None and hold.cut_while_idle,
        lambda f: (
            f"The open WebSocket was cut while nothing crossed it, {_ended(f)}: an idle timeout on the path."
        ),
        lambda f, t: LIMIT_FIXES["idle-timeout"] + _limits(t),
    ),
    Rule(
        "lifetime-cap",
        lambda f: (hold := _cut(f)) is not None and not hold.cut_while_idle,
        lambda f: (
            f"The WebSocket was cut although pings kept crossing it, {_ended(f)}: a cap on "
            "the connection's lifetime, such as a request timeout."
        ),
        lambda f, t: LIMIT_FIXES["lifetime-cap"] + _limits(t),
    ),
    Rule(
        "upstream-speaks-http2",
        lambda f: f.server_request is not None and f.server_request.method == "PRI",
        lambda f: (
            "The front end spoke HTTP/2 (h2c) to the server: it received the HTTP/2 connection "
            f"preface '{f.server_request.method} {f.server_request.target} "
            f"{f.server_request.version}', which websockets, an HTTP/1.1 server, cannot read "
            f"('{f.server_error}'). Every request fails this way, WebSocket or not."
            f"{_http2_stream(f)}{_client_got(f)}"
        ),
        _proxy_fix,
    ),
    Rule(
        "proxy-downgraded-http10",
        lambda f: (
            f.client_asked_upgrade
            and f.server_request is not None
            and f.sent is not None
            and f.sent.version == "HTTP/1.1"
            and f.server_request.version == "HTTP/1.0"
        ),
        lambda f: (
            "The proxy downgraded the request to HTTP/1.0 (the server received "
            f"Connection: {_shown(f.received_header('Connection'))}, Upgrade: "
            f"{_shown(f.received_header('Upgrade'))}); a WebSocket upgrade needs HTTP/1.1, so it "
            f"cannot succeed through this proxy.{_server_said(f)}{_client_got(f)}"
        ),
        _proxy_fix,
    ),
    Rule(
        "proxy-upgraded-http10",
        lambda f: (
            f.sent is not None
            and f.sent.version == "HTTP/1.0"
            and f.server_request is not None
            and f.server_request.version == "HTTP/1.1"
            and f.transcript.upgraded
        ),
        lambda f: (
            "The client asked for an upgrade over HTTP/1.0, which RFC 6455 does not allow; "
            "the proxy forwarded it as HTTP/1.1, so the server saw a valid handshake and the client "
            "got 101 instead of an error."
        ),
        lambda f, t: (
            "Have the proxy refuse upgrades from HTTP/1.0 clients, e.g. nginx: "
            'if ($server_protocol = "HTTP/1.0") { return 505; }'
        ),
    ),
    Rule(
        "proxy-removed-upgrade",
        lambda f: f.client_asked_upgrade and f.reached_server and not f.server_got_upgrade,
        lambda f: (
            "The proxy removed the upgrade the client sent: the client sent Connection: "
            f"{_shown(f.sent_header('Connection'))} and Upgrade: {_shown(f.sent_header('Upgrade'))}, "
            f"the server received Connection: {_shown(f.received_header('Connection'))} and Upgrade: "
            f"{_shown(f.received_header('Upgrade'))}. Both are hop-by-hop headers, dropped unless the "
            f"proxy is set up to forward WebSocket upgrades.{_server_said(f)}"
        ),
        _proxy_fix,
    ),
    Rule(
        "proxy-rejected-upgrade",
        lambda f: f.client_asked_upgrade and not f.reached_server and f.status is not None,
        lambda f: (
            f"The proxy rejected the upgrade itself: it answered {f.status}"
            + (", a page instead of 101 Switching Protocols," if 200 <= f.status < 300 else "")
            + " and nothing reached the server."
        ),
        _proxy_fix,
    ),
    Rule(
        "server-closed-without-response",
        lambda f: (
            f.reached_server
            and f.server_status is None
            and f.server_error is not None
            and f.server_request is not None
        ),
        lambda f: (
            f"websockets could not parse this {f.server_request.method} "
            f"{f.server_request.version} request ({f.server.error.cause}) and closed the "
            f"connection without any response.{_client_got(f)}"
        ),
        lambda f, t: UPGRADE_WEBSOCKETS_FIX,
    ),
    Rule(
        "plain-http-through-keepalive-proxy",
        lambda f: (
            not f.client_asked_upgrade
            and f.reached_server
            and f.sent_header("Connection") is not None
            and f.received_header("Connection") is None
            and f.server_refused
        ),
        lambda f: (
            "Plain HTTP through a keep-alive proxy, not a WebSocket client: the client sent "
            f"no upgrade (Connection: {_shown(f.sent_header('Connection'))}, as a browser tab, a "
            "preview pane or a health check does), and the proxy dropped that hop-by-hop header, "
            f"so the request reached the server with no Connection header at all.{_server_said(f)} "
            "Real WebSocket clients are not affected by this."
        ),
        _answer_plain_http,
    ),
    Rule(
        "proxy-rewrote-connection",
        lambda f: (
            not f.client_asked_upgrade
            and f.reached_server
            and f.server_refused
            and (
                "Connection header" in (f.server_error or "Connection header")
                or "Upgrade header" in (f.server_error or "")
            )
            and f.server_request is not None
            and f.server_request.version == "HTTP/1.1"
            and f.received_header("Connection") is not None
            and header_tokens(f.received_header("Connection")) != header_tokens(f.sent_header("Connection"))
        ),
        lambda f: (
            "Plain HTTP, not a WebSocket client: the client sent no upgrade (Connection: "
            f"{_shown(f.sent_header('Connection'))}), and the proxy sent Connection: "
            f"{_shown(f.received_header('Connection'))} to the server instead"
            f"{_why_rewritten(header_tokens(f.received_header('Connection')))}.{_server_said(f)} "
            "Real WebSocket clients are not affected by this."
        ),
        _answer_plain_http,
    ),
    Rule(
        "client-sent-no-upgrade",
        lambda f: not f.client_asked_upgrade and f.reached_server and f.server_refused,
        lambda f: (
            "The client sent no upgrade: plain HTTP (a browser tab, a preview pane, a health "
            f"check) reached the WebSocket port.{_server_said(f)}{_client_got(f)}"
        ),
        _answer_plain_http,
    ),
    Rule(
        "server-rejected",
        lambda f: f.server_got_upgrade and f.server_refused,
        lambda f: (
            "The upgrade reached the server intact and the server rejected it: "
            + (f"'{f.server_error}'." if f.server_error else f"it answered {f.server_status}.")
        ),
        lambda f, t: (
            "Read the server's error: the client's handshake is missing or has a value "
            "the server does not accept (subprotocol, origin, version)."
        ),
    ),
    Rule(
        "nothing-reached-server",
        lambda f: not f.reached_server and f.transcript.kind != ClientKind.TCP_PROBE,
        lambda f: (
            "Nothing reached the server."
            + _client_got(f)
            + (f" Client error: {f.transcript.error}." if f.transcript.error else "")
        ),
        lambda f, t: "Read the proxy's log for why it did not forward the request.",
    ),
]


PLAIN_HTTP_RULES = frozenset(rule.id for rule in RULES if rule.fix is _answer_plain_http)
"""The causes whose fix is answering plain HTTP in process_request (explain shows the code once)."""


def diagnose(evidence: Evidence, topology: Topology, failed: list[Check]) -> Diagnosis:
    """The cause and fix hint for a cell that did not pass: the first rule that holds."""
    for rule in RULES:
        if rule.when(evidence):
            return Diagnosis(rule=rule.id, cause=rule.cause(evidence), fix=rule.fix(evidence, topology))
    mismatches = "; ".join(f"{c.name}: expected {c.expected!r}, got {c.actual!r}" for c in failed)
    return Diagnosis(
        rule="expectation-mismatch",
        cause=f"The exchange completed but did not match the scenario: {mismatches}.",
        fix="Compare what the client sent with what the server received in the evidence.",
    )
