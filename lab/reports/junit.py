"""JUnit XML: one testsuite per topology, one testcase per cell.

A failed cell is a <failure> whose message is the diagnosis cause and whose
text holds the checks, the server's error and the fix; a lab error is an
<error>; an unavailable topology's cells are <skipped>. Blocked and
informational cells are <skipped> with the reason, so they never fail a CI job.

Every attribute and text goes through :func:`~wslab.reports.safe_text.xml_text`:
evidence may hold characters XML 1.0 refuses even escaped (NUL, ESC, most C0
controls), which become visible escapes (``\\x1b``), so the document always parses.
"""

from __future__ import annotations

from collections import defaultdict
from xml.etree import ElementTree

from ..records import Cell, Outcome, Run
from .safe_text import xml_text


def _details(cell: Cell) -> str:
    lines = [
        f"{'ok ' if c.ok else 'NOT'} {c.name}: expected {c.expected!r}, got {c.actual!r}" for c in cell.checks
    ]
    server_error = cell.server_error
    if server_error:
        lines.append(f"server error: {server_error.type}: {server_error.text} {server_error.cause}")
    if cell.diagnosis:
        lines += [f"cause: {cell.diagnosis.cause}", f"fix: {cell.diagnosis.fix}"]
    if cell.error:
        lines.append(cell.error)
    if cell.log_tail:
        lines += ["log:", cell.log_tail]
    return xml_text("\n".join(lines))


def _name(text: str) -> str:
    """A name or type attribute: one line, whatever the evidence held."""
    return xml_text(text, multiline=False)


def render_junit(result: Run) -> str:
    """The run as a JUnit XML document."""
    root = ElementTree.Element("testsuites", name="wslab", time=f"{result.duration:.3f}")
    by_topology: dict[str, list[Cell]] = defaultdict(list)
    for cell in result.cells:
        by_topology[cell.topology].append(cell)
    for topology, cells in by_topology.items():
        failures = sum(c.outcome == Outcome.FAIL for c in cells)
        errors = sum(c.outcome == Outcome.ERROR for c in cells)
        skipped = sum(c.outcome not in (Outcome.PASS, Outcome.FAIL, Outcome.ERROR) for c in cells)
        suite = ElementTree.SubElement(
            root,
            "testsuite",
            name=_name(topology),
            tests=str(len(cells)),
            failures=str(failures),
            errors=str(errors),
            skipped=str(skipped),
            time=f"{sum(c.duration for c in cells):.3f}",
        )
        for cell in cells:
            case = ElementTree.SubElement(
                suite,
                "testcase",
                classname=_name(f"wslab.{topology}"),
                name=_name(f"{cell.suite}.{cell.scenario}"),
                time=f"{cell.duration:.3f}",
            )
            if cell.outcome == Outcome.FAIL:
                message = cell.diagnosis.cause if cell.diagnosis else cell.summary
                failure = ElementTree.SubElement(
                    case, "failure", message=xml_text(message), type=_name(cell.summary)
                )
                failure.text = _details(cell)
            elif cell.outcome == Outcome.ERROR:
                error = ElementTree.SubElement(case, "error", message=xml_text(cell.error or "lab error"))
                error.text = _details(cell)
            elif cell.outcome != Outcome.PASS:
                ElementTree.SubElement(
                    case, "skipped", message=xml_text(f"{cell.outcome}: {cell.error or cell.summary}")
                )
            output = ElementTree.SubElement(case, "system-out")
            output.text = _details(cell)
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"
