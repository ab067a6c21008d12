"""`wslab explain` as Markdown (the terminal shows it through rich).

The log line asked about, the error texts, header names, the request line and
the causes quote what requests carried: each goes through
:mod:`wslab.reports.safe_text`, so the page shows them and they do nothing.
"""

from __future__ import annotations

from ..explain import AS_EXPECTED, Explanation
from .safe_text import markdown_block, markdown_code, markdown_text

SHOWN = 6
"""Names listed before '... and N more'."""


def _listed(items: list[str]) -> str:
    shown = ", ".join(markdown_code(item) for item in items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _title(rule: str) -> str:
    return "expected by the scenario" if rule == AS_EXPECTED else markdown_text(rule)


def render_markdown(explanation: Explanation) -> str:
    """The causes of one log line, each with who sent the request, through what, and the tell."""
    query = markdown_code(explanation.query)
    websockets = markdown_text(explanation.websockets)
    if not explanation.causes:
        return (
            f"## {query}\n\nNo cell of the {explanation.cells_run} run "
            f"(websockets {websockets}) made the server log this. Paste the error as the "
            "log shows it, e.g. `InvalidUpgrade: missing Connection header`.\n"
        )
    count = len(explanation.causes)
    lines = [
        f"## {query}",
        "",
        f"Logged by the server (websockets {websockets}) as "
        + ", ".join(markdown_code(error) for error in explanation.errors)
        + f" in {explanation.cells_matched} of {explanation.cells_run} cells, "
        + (f"from {count} causes." if count > 1 else "from one cause."),
        "To see the headers that tell the causes apart in your own server, log `request.headers` "
        "in `process_request`.",
    ]
    for number, cause in enumerate(explanation.causes, 1):
        cells = f"{len(cause.cells)} cell{'' if len(cause.cells) == 1 else 's'}"
        lines += ["", f"### {number}. {_title(cause.rule)} ({cells})", ""]
        lines.append(f"- **Sent by:** {', '.join(markdown_text(sender) for sender in cause.senders)}")
        lines.append(f"- **Through:** {_listed(cause.topologies)}")
        if cause.request:
            request = cause.request
            line = f"{request.method} {request.path} {request.version}"
            lines.append(f"- **The server received:** {markdown_code(line)}")
        for tell in cause.tells:
            differences = []
            if tell.present:
                differences.append(f"carry {_listed(tell.present)}")
            if tell.absent:
                differences.append(f"lack {_listed(tell.absent)}")
            lines.append(f"- **Unlike {_title(tell.other)}**, these requests {' and '.join(differences)}")
        lines += ["", markdown_text(cause.cause)]
        if cause.fix:
            lines += ["", *markdown_block(cause.fix)]
    return "\n".join(lines) + "\n"
