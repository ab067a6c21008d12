"""A server log line, read backwards: which causes make a websockets server log it.

A user has one thing: the error in their server's log (``InvalidUpgrade:
missing Connection header``). :func:`explain` finds every cell of a run whose
server logged that error, groups the cells by diagnosed cause, and says how to
tell the causes apart from the server's side alone: the request headers that
every request of one cause carried and no request of another did (a proxy
that strips an upgrade leaves ``Sec-WebSocket-Key``; a browser tab never sent one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .records import Cell, RequestHead, Run, ServerError

AS_EXPECTED = "as-expected"
"""The group of cells whose scenario expects this error (the server's answer was right)."""


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
    topologies: list[str] = field(default_factory=list)
    tells: list[Tell] = field(default_factory=list)
    """How this cause's requests differ from each other cause's, header by header."""
    request: RequestHead | None = None
    """One request of this cause as the server received it."""


@dataclass
class Explanation:
    query: str
    errors: list[str]
    """The exact error texts that matched, as ``Type: text``."""
    causes: list[Cause]
    cells_matched: int
    cells_run: int
    websockets: str


def matches(error: ServerError | None, text: str) -> bool:
    """Whether a recorded server error is the one in a log line (either may hold the other)."""
    wanted = " ".join(text.split()).lower()
    if error is None or not wanted:
        return False
    exact = error.text.lower()
    return exact in wanted or wanted in f"{error.type}: {error.text}".lower()


def _names(request: RequestHead | None) -> set[str]:
    return {name.lower() for name, _ in request.headers} if request else set()


def explain(result: Run, text: str) -> Explanation:
    """Every cause of ``text`` in ``result``, most cells first."""
    titles = {scenario.id: scenario.title for scenario in result.scenarios}
    causes: dict[str, Cause] = {}
    requests: dict[str, list[set[str]]] = {}
    errors: set[str] = set()
    for cell in result.cells:
        logged = [c for c in cell.server if c.error and matches(c.error, text)]
        if not logged:
            continue
        errors.update(f"{c.error.type}: {c.error.text}" for c in logged if c.error)
        cause = causes.setdefault(_rule(cell), _new_cause(cell))
        cause.cells.append((cell.topology, cell.scenario))
        _add(cause.senders, titles.get(cell.scenario, cell.scenario))
        _add(cause.topologies, cell.topology)
        cause.request = cause.request or logged[0].request
        requests.setdefault(cause.rule, []).extend(_names(c.request) for c in logged)
    always = {rule: set.intersection(*seen) for rule, seen in requests.items()}
    anywhere = {rule: set.union(*seen) for rule, seen in requests.items()}
    for rule, cause in causes.items():
        for other in causes:
            present = sorted(always[rule] - anywhere[other])
            absent = sorted(always[other] - anywhere[rule])
            if other != rule and (present or absent):
                cause.tells.append(Tell(other, present, absent))
    return Explanation(
        query=text,
        errors=sorted(errors),
        causes=sorted(causes.values(), key=lambda c: -len(c.cells)),
        cells_matched=sum(len(c.cells) for c in causes.values()),
        cells_run=len(result.cells),
        websockets=result.components.websockets_server,
    )


def _rule(cell: Cell) -> str:
    return cell.diagnosis.rule if cell.diagnosis else AS_EXPECTED


def _new_cause(cell: Cell) -> Cause:
    if cell.diagnosis:
        return Cause(cell.diagnosis.rule, cell.diagnosis.cause, cell.diagnosis.fix)
    return Cause(AS_EXPECTED, "The scenario expects this error: the server's answer was the right one.", "")


def _add(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)
