"""`wslab explain` as Markdown (the terminal shows it through rich).

The page answers first: the most likely cause for the context (Replit's when
the Replit topologies show the error), the fix as a complete program for the
user's websockets API, and what in their own log tells the causes apart; then
every cause with who sent the requests, through which topologies (grouped by
role, never cut short) and its evidence.

The log line asked about, the error texts, header names and values, topology
names, scenario titles, the request line and the causes quote what requests
carried or what a results file says: each goes through
:mod:`wslab.reports.safe_text`, so the page shows them and they do nothing.
The sentences and code the lab writes itself (:data:`wslab.explain.GISTS`,
:mod:`wslab.fixes`) are Markdown as they stand.
"""

from __future__ import annotations

import re

from ..explain import GISTS, Cause, Explanation, header_name
from ..fixes import Api
from .safe_text import markdown_block, markdown_code, markdown_text

FIX_TITLE = "The fix"


def _codes(items: list[str]) -> str:
    """Every item, as code, none left out."""
    return ", ".join(markdown_code(item) for item in items)


def _either(items: list[str]) -> str:
    """'a, b or c', escaped."""
    words = [markdown_text(item) for item in items]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _cells(count: int) -> str:
    return f"{count} cell{'' if count == 1 else 's'}"


def _gist(cause: Cause, who: list[str], proxy: str) -> str:
    """What happens in this cause, in one clause."""
    template = GISTS.get(cause.rule)
    if template is None:
        return markdown_text(cause.title)
    return template.format(who=_either(who) if who else "a client", proxy=proxy)


def _lead(explanation: Explanation) -> list[str]:
    """The most likely cause for the context, named first, and why it is first."""
    first = explanation.causes[0]
    if not explanation.replit_first:
        gist = _gist(first, first.who, "the proxy in front")
        share = f"{len(first.cells)} of {explanation.cells_matched} cells"
        why = "most cells showed it." if len(explanation.causes) > 1 else "it is the only cause."
        return [f"**Most likely** ({share}): {gist}. It comes first because {why}"]
    replit = [cause for cause in explanation.causes if cause.replit]
    names = _codes(explanation.replit)
    clauses = "; ".join(_gist(cause, cause.replit_who, "Replit's proxy") for cause in replit)
    lines = [f"**Most likely, on Replit** ({names}): {clauses}."]
    if all(cause.plain_http for cause in replit):
        lines.append(
            "None of these is a WebSocket client: answer them in `process_request` (the code below), "
            "and websockets stops logging the error for them."
        )
    if explanation.replit_carries:
        lines.append(
            "Real WebSocket clients do connect through Replit: every WebSocket client scenario passed."
        )
    elif explanation.replit_carries is False:
        lines.append("Real WebSocket clients fail through Replit too: see the causes below.")
    if explanation.replit_hint:
        lines.append(
            "Replit comes first because your log line points there "
            f"({markdown_code(explanation.replit_hint)})."
        )
    else:
        lines.append(
            "Replit comes first because this error was first reported from a Replit dev URL, and the "
            "Replit topologies reproduce it; elsewhere, read the causes below in order, most cells first."
        )
    return [" ".join(lines)]


def _counts(explanation: Explanation) -> str:
    count = len(explanation.causes)
    line = (
        f"The server (websockets {markdown_text(explanation.websockets)}) logged "
        + _codes(explanation.errors)
        + f" in {explanation.cells_matched} of {explanation.cells_run} cells of this run, "
        + (f"from {count} causes." if count > 1 else "from one cause.")
    )
    if explanation.legacy_wording:
        line += (
            f" Your line has the legacy server's words, {markdown_code(explanation.legacy_wording)}: "
            "the lab's server runs the new implementation, which logs the same request as "
            f"{markdown_code(re.sub('(?i)empty', 'missing', explanation.legacy_wording, count=1))}."
        )
    return line + (" " + _expected(explanation) if explanation.expected else "")


def _expected(explanation: Explanation) -> str:
    """The cells whose scenario expects the error: one line, not a cause."""
    count = sum(len(topologies) for _, topologies in explanation.expected)
    where = "; ".join(
        f"{markdown_code(scenario)} through {_codes(topologies)}"
        for scenario, topologies in explanation.expected
    )
    return (
        f"Not a cause: {_cells(count)} logged it because {'its' if count == 1 else 'their'} "
        f"scenario expects it ({where})."
    )


def _api_lines(api: Api) -> list[str]:
    about = f"**{api.name[0].upper() + api.name[1:]}** ({markdown_code(api.module)}, `{api.hook}`"
    about += f"; {api.note})" if api.note else ")"
    return ["", about + ", a complete program:", "", *_python(api.program)]


def _python(code: str) -> list[str]:
    """Code the lab wrote, as a fenced Python block."""
    fence = markdown_block(code)
    return [fence[0] + "python", *fence[1:]]


def _fix(explanation: Explanation) -> list[str]:
    choice = explanation.api
    why = choice.why.replace("{}", markdown_code(choice.evidence), 1)
    which = (
        f"This code is for {choice.apis[0].name}: {why}." if choice.known else f"Code for both APIs: {why}."
    )
    lines = ["", f"### {FIX_TITLE}: answer plain HTTP in `process_request`", "", which]
    for api in choice.apis:
        lines += _api_lines(api)
    other = "Or keep browsers, preview panes and health checks off the WebSocket port"
    lines += [
        "",
        other
        + (
            "; on Replit, that works in the workspace only: serve the page from another port and "
            "point the preview there. A deployment (Autoscale, Reserved VM) has a single external "
            "port, so its health check and every browser reach the WebSocket server: answer them."
            if explanation.replit
            else "."
        ),
    ]
    return lines


def _tell(explanation: Explanation) -> list[str]:
    """What to look for in one's own log, cause by cause."""
    numbers = {cause.rule: number for number, cause in enumerate(explanation.causes, 1)}
    api = explanation.api.apis[0]
    lines = [
        "",
        "### Tell the causes apart in your log",
        "",
        f"Print each request's headers at the top of `process_request`: `{api.print_headers}`"
        + ("" if explanation.api.known else f" ({api.name})")
        + ". Then a failing request",
        "",
    ]
    marked = [cause for cause in explanation.causes if cause.mark]
    unmarked = [cause for cause in explanation.causes if not cause.mark]
    for cause in marked:
        mark = cause.mark if cause.mark_value is None else f"{cause.mark}: {cause.mark_value}"
        lines.append(f"- with {markdown_code(mark)} is {_which(cause, numbers)}")
    if len(unmarked) == 1 and marked:
        names = [cause.mark for cause in marked]
        none = "neither" if len(names) == 2 else "none of these"
        lines.append(f"- with {none} ({_codes(names)}) is {_which(unmarked[0], numbers)}")
    elif unmarked:
        causes = ", ".join(str(numbers[cause.rule]) for cause in unmarked)
        lines.append(
            f"- of causes {causes}: no header of its own tells them apart; each cause below says how "
            "it differs."
        )
    return lines


def _which(cause: Cause, numbers: dict[str, int]) -> str:
    number = numbers[cause.rule]
    said = f"cause {number}, {markdown_text(cause.title[0].lower() + cause.title[1:])}"
    if cause.plain_http:
        return f"{said}: {_either(cause.who)}; the fix above answers it."
    return f"{said}: the fix is under cause {number}, not in your app."


def _cause(number: int, cause: Cause, explanation: Explanation) -> list[str]:
    numbers = {c.rule: n for n, c in enumerate(explanation.causes, 1)}
    title = markdown_text(cause.title)
    if cause.title != cause.rule:
        title += f" ({markdown_code(cause.rule)}, {_cells(len(cause.cells))})"
    else:
        title += f" ({_cells(len(cause.cells))})"
    lines = ["", f"### {number}. {title}", ""]
    lines.append(f"- **Sent by:** {', '.join(markdown_text(sender) for sender in cause.senders)}")
    if len(cause.through) == 1:
        group, names = cause.through[0]
        lines.append(f"- **Through:** {_codes(names)} ({markdown_text(group)})")
    else:
        lines.append(f"- **Through {len(cause.topologies)} topologies:**")
        lines += [f"  - {markdown_text(group)}: {_codes(names)}" for group, names in cause.through]
    if cause.request:
        request = cause.request
        line = f"{request.method} {request.path} {request.version}"
        lines.append(f"- **The server received:** {markdown_code(line)}")
    for tell in sorted(cause.tells, key=lambda tell: numbers[tell.other]):
        differences = []
        if tell.present:
            differences.append(f"carry {_codes([header_name(name) for name in tell.present])}")
        if tell.absent:
            differences.append(f"lack {_codes([header_name(name) for name in tell.absent])}")
        lines.append(f"- **Unlike cause {numbers[tell.other]}**, these requests {' and '.join(differences)}")
    lines += ["", markdown_text(cause.cause)]
    if cause.plain_http:
        lines += ["", f"**Fix:** answer plain HTTP in `process_request`: the code under *{FIX_TITLE}* above."]
    elif cause.fix:
        lines += ["", "**Fix:**", "", *markdown_block(cause.fix)]
    return lines


def render_markdown(explanation: Explanation) -> str:
    """The causes of one log line, most likely first, with the fix and the tells."""
    heading = f"## {markdown_code(explanation.heading)}"
    websockets = markdown_text(explanation.websockets)
    if not explanation.causes:
        if explanation.expected:
            return f"{heading}\n\nNo cause to fix. {_expected(explanation)}\n"
        return (
            f"{heading}\n\nNo cell of the {explanation.cells_run} run "
            f"(websockets {websockets}) made the server log this. Paste the error as the "
            "log shows it, e.g. `InvalidUpgrade: missing Connection header`.\n"
        )
    lines = [heading, "", *_lead(explanation), "", _counts(explanation)]
    if any(cause.plain_http for cause in explanation.causes):
        lines += _fix(explanation)
    if len(explanation.causes) > 1:
        lines += _tell(explanation)
    for number, cause in enumerate(explanation.causes, 1):
        lines += _cause(number, cause, explanation)
    return "\n".join(lines) + "\n"
