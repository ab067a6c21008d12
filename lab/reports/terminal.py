"""The terminal report: the verdict first, then the matrix, then why cells failed, folded.

Topologies are rows, grouped (no proxy; self-hosted proxies as they ship, then with their
WebSocket recipe; platforms), scenarios are short columns with a key below. The matrix is laid
out for the console's width: when the columns do not fit, it wraps into blocks of columns
rather than squeezing them. Causes are folded: one entry per cause and fix, its cells listed
as ``topology: codes``, and a fix shared by several causes printed once. ``verbose`` adds every
cell's own cause.

Reads a :class:`~wslab.records.Run` (and its :class:`~wslab.verdict.Verdict`); decides
nothing. Every text from the run reaches the console as a rich Text through
:func:`~wslab.reports.safe_text.terminal_text`: escaped, never read as markup.
"""

from __future__ import annotations

import textwrap

from rich.console import Console
from rich.text import Text

from ..records import STYLES, Cell, Outcome, Run, ScenarioRecord
from ..scenario import short_code
from ..verdict import GROUPS, CauseGroup, Verdict, judge_run
from .safe_text import printable, terminal_text

COMPACT = {
    "no answer": "none",
    "timeout": "tout",
    "refused": "refsd",
    "error": "err",
    "not measured": "",
    "not run": "",
}
"""Summaries shortened to fit a matrix column; an HTTP status or 'open' stays as it is."""

INDENT = "  "


def compact(summary: str) -> str:
    """A cell's summary in at most 5 characters: '426', 'open', 'cut60', 'none'."""
    if summary.startswith("open "):
        return "open"
    if summary.startswith("cut ") and summary.endswith("s"):
        return "cut" + summary[4:-1]
    return COMPACT.get(summary, summary)


def short(scenario: ScenarioRecord) -> str:
    """A scenario's column code (results written before codes existed get one from the id)."""
    return scenario.short or short_code(scenario.id)


def _cell(cell: Cell | None) -> Text:
    if cell is None:
        return Text("")
    style = STYLES[cell.outcome]
    return terminal_text(f"{style.symbol}{compact(cell.summary)}", style=style.colour)


def _column_blocks(widths: list[int], room: int) -> list[list[int]]:
    """Indexes of the columns side by side in ``room`` characters, block after block: as few
    blocks as fit, their columns shared out evenly (13 columns in 80 characters: 7 and 6)."""
    greedy: list[list[int]] = [[]]
    used = 0
    for index, width in enumerate(widths):
        if greedy[-1] and used + width + 1 > room:
            greedy.append([])
            used = 0
        greedy[-1].append(index)
        used += width + 1
    per_block = -(-len(widths) // len(greedy))
    even = [
        list(range(start, min(start + per_block, len(widths)))) for start in range(0, len(widths), per_block)
    ]
    fits = all(sum(widths[i] + 1 for i in block) <= room for block in even)
    return even if fits and len(even) == len(greedy) else greedy


def matrix_lines(result: Run, verdict: Verdict, width: int) -> list[Text]:
    """Topologies down, scenarios across, wrapped into blocks of columns to fit ``width``."""
    cells = {(cell.topology, cell.scenario): cell for cell in result.cells}
    scenarios = result.scenarios
    rows = [t.name for t in verdict.topologies]
    name_width = max([len(INDENT) + len(printable(name)) for name in rows] + [10])
    widths = [
        max([len(printable(short(s)))] + [len(_cell(cells.get((name, s.id)))) for name in rows])
        for s in scenarios
    ]
    lines: list[Text] = []
    roles = {t.name: t.role for t in verdict.topologies}
    for block in _column_blocks(widths, max(width - name_width, 8)):
        if lines:
            lines.append(Text(""))
        header = Text(" " * name_width)
        for index in block:
            header.append(" ")
            header.append(terminal_text(short(scenarios[index]).ljust(widths[index]), "bold"))
        lines.append(header)
        group = None
        for name in rows:
            if roles[name] != group:
                group = roles[name]
                lines.append(Text(GROUPS.get(group, group), style="bold dim"))
            line = terminal_text(f"{INDENT}{name}".ljust(name_width))
            for index in block:
                cell = _cell(cells.get((name, scenarios[index].id)))
                cell.pad_right(widths[index] - len(cell))
                line.append(" ")
                line.append(cell)
            lines.append(line)
    return lines


def _wrapped(text: str, width: int, style: str = "", indent: str = "", first: str = "") -> list[Text]:
    """Prose wrapped to ``width``, every line escaped."""
    wrapper = textwrap.TextWrapper(
        width=max(width, 20), initial_indent=first or indent, subsequent_indent=indent, break_on_hyphens=False
    )
    return [terminal_text(line, style) for line in wrapper.wrap(printable(text))]


def key_lines(scenarios: list[ScenarioRecord], width: int) -> list[Text]:
    """What each column code stands for."""
    key = " · ".join(f"{short(s)} {s.title or s.id}" for s in scenarios)
    return _wrapped(key, width, "dim")


def _header(result: Run, width: int) -> list[Text]:
    components = result.components
    counts = " · ".join(f"{count} {outcome}" for outcome, count in result.counts().items() if count)
    lines = [
        Text.assemble(
            ("wslab", "bold"),
            printable(
                f" · {result.size()} · "
                f"{result.backend} backend{' (warm lab)' if result.options.warm_lab else ''} · "
                f"{result.took()}"
            ),
        ),
        *_wrapped(
            f"{result.server_description()}, websockets {components.websockets_client} (client); "
            f"{components.tool_versions()}",
            width,
            "dim",
        ),
    ]
    if not result.options.redacted:
        lines.append(Text("secrets NOT redacted (--no-redact)", "bold red"))
    lines.append(Text(counts, "bold"))
    return lines


def _where(cells: dict[str, list[str]], shorts: dict[str, str]) -> str:
    return " · ".join(
        f"{topology}: {' '.join(shorts.get(s, s) for s in scenarios)}"
        for topology, scenarios in cells.items()
    )


def _cause_lines(
    group: CauseGroup, shorts: dict[str, str], width: int, fixes: dict[str, str], who: str
) -> list[Text]:
    errors = ", ".join(f"'{error}'" for error in group.server_errors)
    title = f"{group.rule} · {group.count} cell{'' if group.count == 1 else 's'}"
    lines = [
        Text.assemble((f"{STYLES[Outcome.FAIL].symbol} ", "red"), (printable(title), "bold")),
        *_wrapped(_where(group.cells, shorts), width, indent=INDENT * 2),
    ]
    if errors:
        lines += _wrapped(f"{who} logged {errors}", width, "yellow", indent=INDENT * 3, first=INDENT * 2)
    lines += _wrapped(f"cause: {group.cause}", width, indent=INDENT * 3, first=INDENT * 2)
    if group.fix in fixes:
        lines += _wrapped(
            f"fix: as for {fixes[group.fix]} above", width, "cyan", indent=INDENT * 3, first=INDENT * 2
        )
    else:
        fixes[group.fix] = group.rule
        lines += _code(f"fix: {group.fix}", width, "cyan", INDENT * 2)
    return lines


CODE_INDENT = "    "
"""A fix's lines that start with this are code (a config's lines, a program)."""


def _paragraphs(text: str) -> list[str]:
    """``text``'s lines, with each prose line that goes on from the one before (the same
    indentation, neither code nor blank) joined to it: wrapping then reflows a paragraph rather
    than keeping the line ends of the file it was written in."""
    joined: list[str] = []
    before: tuple[bool, int] = (False, 0)
    for number, line in enumerate(text.splitlines()):
        body = line.lstrip(" ")
        prose = bool(body) and (number == 0 or not line.startswith(CODE_INDENT))
        depth = len(line) - len(body)
        if prose and before == (True, depth):
            joined[-1] += " " + body
        else:
            joined.append(line)
        before = (prose, depth)
    return joined


def _code(text: str, width: int, style: str, indent: str) -> list[Text]:
    """A fix: its prose lines wrapped, each keeping its indentation; its code lines (and the
    blank lines between them) kept whole, so that what is copied from the terminal still runs:
    a line too long for it is the terminal's to fold."""
    lines: list[Text] = []
    for number, line in enumerate(_paragraphs(printable(text, multiline=True))):
        body = line.lstrip(" ")
        lead = indent + ("" if number == 0 else INDENT) + " " * (len(line) - len(body))
        if number and (line.startswith(CODE_INDENT) or not body):
            lines.append(terminal_text(lead + body if body else "", style))
        else:
            lines += _wrapped(body, width, style, indent=lead + INDENT, first=lead)
    return lines


def cause_lines(result: Run, verdict: Verdict, width: int) -> list[Text]:
    """Why cells failed: one entry per cause and fix, each fix printed once."""
    shorts = {s.id: short(s) for s in result.scenarios}
    lines: list[Text] = []
    fixes: dict[str, str] = {}
    for group in verdict.causes:
        lines += _cause_lines(group, shorts, width, fixes, "your app" if result.app else "server")
    for group in verdict.lab_errors:
        lines.append(Text.assemble((f"{STYLES[Outcome.ERROR].symbol} ", "magenta"), ("lab error", "bold")))
        lines += _wrapped(_where(group.cells, shorts), width, indent=INDENT * 2)
        lines.append(
            terminal_text(textwrap.indent(printable(group.cause, multiline=True), INDENT * 2), multiline=True)
        )
    for outcome in (Outcome.NOT_MEASURED, Outcome.NOT_APPLICABLE):
        lines += _unplayed(result, outcome, shorts, width)
    return lines


def _unplayed(result: Run, outcome: Outcome, shorts: dict[str, str], width: int) -> list[Text]:
    """Cells of one outcome the lab did not play (not measured, not applicable), with why."""
    cells: dict[str, list[str]] = {}
    for cell in result.cells:
        if cell.outcome == outcome:
            cells.setdefault(cell.topology, []).append(cell.scenario)
    if not cells:
        return []
    style = STYLES[outcome]
    lines = [Text.assemble((f"{style.symbol} ", style.colour), (style.label, "bold"))]
    lines += _wrapped(_where(cells, shorts), width, indent=INDENT * 2)
    first = next(c for c in result.cells if c.outcome == outcome)
    lines += _wrapped(first.error or "", width, indent=INDENT * 3, first=INDENT * 2)
    return lines


def _app_lines(result: Run, width: int) -> list[Text]:
    """What the user's app logged that no cell could be tied to, and how it ended."""
    app = result.app
    if app is None or not (app.unattributed or app.exit):
        return []
    lines = [Text("Your app", "bold")]
    if app.exit:
        lines += _wrapped(f"it {app.exit} during the run", width, "magenta", indent=INDENT * 2, first=INDENT)
    if app.unattributed:
        count = len(app.unattributed)
        lines += _wrapped(
            f"{count} log entr{'y' if count == 1 else 'ies'} tied to no cell; the last:",
            width,
            indent=INDENT * 2,
            first=INDENT,
        )
        for entry in app.unattributed[-3:]:
            lines += _code(entry.text, width, "dim", INDENT * 2)
    return lines


def _unavailable(result: Run, width: int) -> list[Text]:
    lines = []
    for topology in result.topologies:
        if topology.status == "ready":
            continue
        lines += _wrapped(f"{topology.name}: {topology.status}: {topology.detail}", width, "magenta")
        if topology.log_tail:
            lines.append(terminal_text(textwrap.indent(topology.log_tail, INDENT), "dim", multiline=True))
    return lines


def _every_cell(result: Run, width: int) -> list[Text]:
    """``--verbose``: each failed cell's own cause, as its evidence says it."""
    lines = []
    for cell in result.cells:
        if cell.outcome == Outcome.FAIL and cell.diagnosis:
            lines.append(
                Text.assemble(("✗ ", "red"), (printable(f"{cell.topology}/{cell.scenario}"), "bold"))
            )
            lines += _wrapped(cell.diagnosis.cause, width, indent=INDENT)
    return lines


def render(result: Run, console: Console | None = None, verbose: bool = False) -> None:
    """Print the verdict, the matrix with its key, and why cells failed."""
    console = console or Console()
    width = console.width
    verdict = judge_run(result)
    lines = _header(result, width)
    lines.append(Text(""))
    sentences = verdict.sentences()
    for sentence in sentences:
        lead = " " * (len(sentence) - len(sentence.lstrip(" ")))
        lines += _wrapped(sentence.lstrip(" "), width, indent=lead + INDENT, first=lead)
    if sentences:
        lines.append(Text(""))
    lines += matrix_lines(result, verdict, width)
    lines += key_lines(result.scenarios, width)
    lines += _wrapped(
        "  ".join(f"{style.symbol} {style.meaning}" for style in STYLES.values())
        + ". The text is what the client got: an HTTP status, none (closed without a response), tout"
        " (timeout), open (a TCP probe accepted, or a WebSocket held to the end), cut60 (cut after"
        " 60 s, faithful).",
        width,
        "dim",
    )
    unavailable = _unavailable(result, width)
    if unavailable:
        lines += [Text(""), Text("Topologies not running", "bold"), *unavailable]
    causes = cause_lines(result, verdict, width)
    if causes:
        lines += [
            Text(""),
            Text("Why cells failed" + ("" if verbose else " (--verbose: every cell)"), "bold"),
            *causes,
        ]
    app = _app_lines(result, width)
    if app:
        lines += [Text(""), *app]
    if verbose:
        lines += [Text(""), Text("Every failed cell", "bold"), *_every_cell(result, width)]
    for line in lines:
        line.rstrip()
    # One print: rich's per-call overhead, times two hundred lines, was a third of the time.
    console.print(Text("\n").join(lines), overflow="ignore", crop=False, soft_wrap=True)
