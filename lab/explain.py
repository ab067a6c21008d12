"""A server log line, read backwards: which causes make a websockets server log it.

A user has one thing: the error in their server's log (``InvalidUpgrade:
missing Connection header``), perhaps with its traceback. :func:`explain`
finds every cell of a run whose server logged that error, groups the cells by
diagnosed cause and puts the most likely cause first: the one the Replit
topologies show when they show any (that is where this error is met most,
and where it was first reported), then the one most cells showed. It says how
to tell the causes apart from the server's side alone: the request headers
that every request of one cause carried and no request of another did (a
proxy that strips an upgrade leaves ``Sec-WebSocket-Key``; a browser tab never
sent one). Cells whose scenario expects the error are no cause: they are
counted apart. Which websockets API the fix is written for comes from
:func:`wslab.fixes.choose_api`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .diagnosis import PLAIN_HTTP_RULES
from .fixes import ApiChoice, choose_api
from .records import Cell, RequestHead, Run, ServerError, TopologyRecord
from .verdict import GROUPS, judge_run

TITLES = {
    "plain-http-through-keepalive-proxy": "Plain HTTP through a keep-alive proxy",
    "client-sent-no-upgrade": "Plain HTTP with no upgrade at all",
    "proxy-rewrote-connection": "Plain HTTP whose Connection header a proxy rewrote",
    "proxy-removed-upgrade": "A proxy stripped a real WebSocket client's upgrade",
    "proxy-downgraded-http10": "A proxy downgraded a WebSocket client's request to HTTP/1.0",
    "upstream-speaks-http2": "The front end speaks HTTP/2 to the server",
    "server-closed-without-response": "A request websockets cannot parse",
    "server-rejected": "The server refused an intact upgrade",
}
"""Each cause as a person names it (the rule's id stays beside it)."""

GISTS = {
    "plain-http-through-keepalive-proxy": (
        "{who} sends plain HTTP with `Connection: keep-alive` to your WebSocket port, and {proxy} "
        "drops that header"
    ),
    "client-sent-no-upgrade": "{who} sends plain HTTP with no upgrade at all",
    "proxy-rewrote-connection": "{who} sends plain HTTP, and {proxy} rewrites its Connection header",
    "proxy-removed-upgrade": "{proxy} strips the upgrade of a real WebSocket client",
    "proxy-downgraded-http10": "{proxy} downgrades a WebSocket client's request to HTTP/1.0",
    "upstream-speaks-http2": "{proxy} speaks HTTP/2 (h2c) to your server",
    "server-closed-without-response": "{who} sends a request websockets cannot parse",
}
"""What happens, in one clause of Markdown the lab wrote: ``{who}`` are the senders, ``{proxy}``
the proxy in front (both filled in, escaped, by the page)."""

SENDERS = {
    "browser-tab-get": "a browser tab",
    "preview-pane-get": "the preview pane",
    "deploy-health-check": "the deployment health check",
    "head-root": "a HEAD health check",
    "tcp-probe": "a TCP probe",
}
"""Who sends a scenario's requests, for a person; other scenarios go by their title."""

PREFERRED_TELLS = ["sec-websocket-key", "sec-fetch-mode", "sec-fetch-dest", "upgrade-insecure-requests"]
"""The headers a person knows best, first when several tell a cause apart."""

HEADER_CASE = {
    "sec-websocket-key": "Sec-WebSocket-Key",
    "sec-websocket-version": "Sec-WebSocket-Version",
    "sec-websocket-extensions": "Sec-WebSocket-Extensions",
    "sec-websocket-protocol": "Sec-WebSocket-Protocol",
    "sec-ch-ua": "Sec-CH-UA",
    "sec-ch-ua-mobile": "Sec-CH-UA-Mobile",
    "sec-ch-ua-platform": "Sec-CH-UA-Platform",
}

SHOWN_VALUES = {"sec-fetch-mode", "sec-fetch-dest", "sec-fetch-site", "upgrade-insecure-requests"}
"""Headers whose value says what kind of request it is (a key or a user agent says nothing more)."""

LEGACY_WORDING = re.compile(r"\bempty (Connection|Upgrade) header", re.IGNORECASE)
"""The legacy server's words for a request without the header, which the new implementation (the
lab's probe server) logs as 'missing ... header'."""

REPLIT_HINT = re.compile(r"[\w.-]*replit[\w.-]*|/home/runner/workspace\b", re.IGNORECASE)
"""Words of a log line that say it comes from Replit: a *.replit.dev host, a Replit workspace path."""


def header_name(name: str) -> str:
    """A header name as people write it: 'Sec-WebSocket-Key', 'Sec-Fetch-Mode'."""
    return HEADER_CASE.get(name.lower(), "-".join(part.capitalize() for part in name.split("-")))


def is_replit(topology: TopologyRecord) -> bool:
    return topology.name.lower().startswith("replit") or topology.platform.lower().startswith("replit")


@dataclass
class Tell:
    """What tells this cause's requests from another cause's, at the server."""

    other: str
    present: list[str]
    """Headers in every request of this cause and in no request of the other."""
    absent: list[str]
    """Headers in no request of this cause and in every request of the other."""


@dataclass
class Cause:
    """One way the error gets into the log, with the cells that showed it."""

    rule: str
    cause: str
    fix: str
    cells: list[tuple[str, str]] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)
    """Titles of the scenarios (the kinds of client) whose requests led to the error."""
    who: list[str] = field(default_factory=list)
    """The same senders for a person: 'a browser tab', 'the preview pane'."""
    topologies: list[str] = field(default_factory=list)
    through: list[tuple[str, list[str]]] = field(default_factory=list)
    """The topologies grouped by role, in :data:`wslab.verdict.GROUPS` order: (group, names)."""
    replit: list[str] = field(default_factory=list)
    """The Replit topologies among them."""
    replit_who: list[str] = field(default_factory=list)
    """Who sent this cause's requests through them, for a person."""
    tells: list[Tell] = field(default_factory=list)
    """How this cause's requests differ from each other cause's, header by header."""
    marks: list[str] = field(default_factory=list)
    """Headers every request of this cause carried and no request of any other cause did."""
    mark: str = ""
    """The one a person looks for first, as people write it: 'Sec-Fetch-Mode'."""
    mark_value: str | None = None
    """Its value, when every request of the cause carried the same: 'navigate'."""
    request: RequestHead | None = None
    """One request of this cause as the server received it."""

    @property
    def title(self) -> str:
        return TITLES.get(self.rule, self.rule)

    @property
    def plain_http(self) -> bool:
        """Its fix is answering plain HTTP in process_request."""
        return self.rule in PLAIN_HTTP_RULES


@dataclass
class Explanation:
    query: str
    errors: list[str]
    """The exact error texts that matched, as ``Type: text``."""
    causes: list[Cause]
    """Most likely first: causes the Replit topologies showed, then by cells."""
    cells_matched: int
    """Cells that logged the error from one of the causes."""
    cells_run: int
    websockets: str
    api: ApiChoice
    """Which websockets API the fix is written for, and why."""
    expected: list[tuple[str, list[str]]] = field(default_factory=list)
    """Cells that logged the error because their scenario expects it: (scenario, topologies)."""
    replit: list[str] = field(default_factory=list)
    """The Replit topologies that logged it, in run order."""
    replit_carries: bool | None = None
    """Whether real WebSocket clients got through every one of them (None: not measured)."""
    replit_hint: str = ""
    """The words of the log line that point to Replit, if any."""
    legacy_wording: str = ""
    """The legacy server's words in the log line ('empty Connection header'), read as the new
    implementation's ('missing Connection header'), which the lab's server logs."""

    @property
    def heading(self) -> str:
        """The error line of what was pasted (a traceback's last line)."""
        lines = [line.strip() for line in self.query.splitlines() if line.strip()]
        return lines[-1] if lines else self.query

    @property
    def replit_first(self) -> bool:
        return bool(self.causes and self.causes[0].replit)


def matches(error: ServerError | None, text: str) -> bool:
    """Whether a recorded server error is the one in a log line (either may hold the other); the
    legacy server's 'empty Connection header' is the new implementation's 'missing ...'."""
    wanted = LEGACY_WORDING.sub(r"missing \1 header", " ".join(text.split())).lower()
    if error is None or not wanted:
        return False
    exact = error.text.lower()
    return exact in wanted or wanted in f"{error.type}: {error.text}".lower()


def _headers(request: RequestHead | None) -> dict[str, str]:
    """Header name (lower case) -> value; a repeated header's values joined."""
    found: dict[str, str] = {}
    for name, value in request.headers if request else []:
        key = name.lower()
        found[key] = f"{found[key]}, {value}" if key in found else value
    return found


def explain(result: Run, text: str, websockets: str | None = None) -> Explanation:
    """Every cause of ``text`` in ``result``, most likely first; ``websockets`` is the release the
    user runs (``--websockets``), for the fix's API."""
    titles = {scenario.id: scenario.title for scenario in result.scenarios}
    records = {topology.name: topology for topology in result.topologies}
    causes: dict[str, Cause] = {}
    requests: dict[str, list[dict[str, str]]] = {}
    errors: set[str] = set()
    expected: dict[str, list[str]] = {}
    for cell in result.cells:
        logged = [c for c in cell.server if c.error and matches(c.error, text)]
        if not logged:
            continue
        errors.update(f"{c.error.type}: {c.error.text}" for c in logged if c.error)
        if cell.diagnosis is None:
            _add(expected.setdefault(cell.scenario, []), cell.topology)
            continue
        cause = causes.setdefault(cell.diagnosis.rule, _new_cause(cell))
        cause.cells.append((cell.topology, cell.scenario))
        _add(cause.senders, titles.get(cell.scenario, cell.scenario))
        _add(cause.who, _who(cell.scenario, titles))
        _add(cause.topologies, cell.topology)
        if cell.topology in records and is_replit(records[cell.topology]):
            _add(cause.replit, cell.topology)
            _add(cause.replit_who, _who(cell.scenario, titles))
        cause.request = cause.request or logged[0].request
        requests.setdefault(cause.rule, []).extend(_headers(c.request) for c in logged)
    _tell_apart(causes, requests)
    for cause in causes.values():
        cause.through = _grouped(cause.topologies, result.topologies)
    ordered = sorted(causes.values(), key=lambda c: (not c.replit, -len(c.cells), c.rule))
    order = [t.name for t in result.topologies]
    replit = sorted({name for cause in ordered for name in cause.replit}, key=order.index)
    hint = REPLIT_HINT.search(text)
    legacy = LEGACY_WORDING.search(text)
    return Explanation(
        query=text,
        errors=sorted(errors),
        causes=ordered,
        cells_matched=sum(len(c.cells) for c in ordered),
        cells_run=len(result.cells),
        websockets=result.components.websockets_server,
        api=choose_api(text, websockets),
        expected=list(expected.items()),
        replit=replit,
        replit_carries=_carries(result, replit),
        replit_hint=hint.group() if hint else "",
        legacy_wording=legacy.group() if legacy else "",
    )


def _tell_apart(causes: dict[str, Cause], requests: dict[str, list[dict[str, str]]]) -> None:
    """Each cause's tells against every other, and the headers that mark it against all others."""
    always = {rule: set.intersection(*(set(r) for r in seen)) for rule, seen in requests.items()}
    anywhere = {rule: set.union(*(set(r) for r in seen)) for rule, seen in requests.items()}
    for rule, cause in causes.items():
        others = [other for other in causes if other != rule]
        for other in others:
            present = sorted(always[rule] - anywhere[other])
            absent = sorted(always[other] - anywhere[rule])
            if present or absent:
                cause.tells.append(Tell(other, present, absent))
        if not others:
            continue
        cause.marks = sorted(always[rule] - set.union(*(anywhere[other] for other in others)))
        if cause.marks:
            name = min(cause.marks, key=lambda n: (n not in PREFERRED_TELLS, _rank(n), n))
            values = {request[name] for request in requests[rule]}
            cause.mark = header_name(name)
            cause.mark_value = values.pop() if len(values) == 1 and name in SHOWN_VALUES else None


def _rank(name: str) -> int:
    return PREFERRED_TELLS.index(name) if name in PREFERRED_TELLS else 0


def _grouped(names: list[str], topologies: list[TopologyRecord]) -> list[tuple[str, list[str]]]:
    """``names`` by role, in the groups' order, each group in run order."""
    roles = {t.name: t.role for t in topologies}
    order = {t.name: index for index, t in enumerate(topologies)}
    groups: dict[str, list[str]] = {}
    for name in sorted(names, key=lambda n: order.get(n, len(order))):
        role = roles.get(name, "")
        groups.setdefault(GROUPS.get(role, role or "other"), []).append(name)
    rank = {title: index for index, title in enumerate(GROUPS.values())}
    return sorted(groups.items(), key=lambda item: rank.get(item[0], len(rank)))


def _carries(result: Run, names: list[str]) -> bool | None:
    """Whether real WebSocket clients passed through every one of ``names``."""
    if not names:
        return None
    verdicts = {t.name: t.carries for t in judge_run(result).topologies}
    seen = [verdicts.get(name) for name in names]
    if any(carries is False for carries in seen):
        return False
    return True if all(carries for carries in seen) else None


def _who(scenario: str, titles: dict[str, str]) -> str:
    return SENDERS.get(scenario, titles.get(scenario, scenario))


def _new_cause(cell: Cell) -> Cause:
    assert cell.diagnosis is not None
    return Cause(cell.diagnosis.rule, cell.diagnosis.cause, cell.diagnosis.fix)


def _add(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)
