"""The comparison page as Markdown (printed in the terminal through rich).

Option names, platforms (a --target URL), the cells' texts (which quote the
server's errors) and causes go through :mod:`wslab.reports.safe_text`; the
reasons are Markdown already, built with the same escaping in
:func:`wslab.deployment_choice.compare`.
"""

from __future__ import annotations

from ..deployment_choice import Comparison, Option
from .safe_text import markdown_block, markdown_text

TRAFFIC_ROWS = {
    "browser-tab-get": "browser tab opens the URL",
    "preview-pane-get": "preview pane loads /",
    "deploy-health-check": "deployment health check GET /",
    "head-root": "HEAD / check",
    "tcp-probe": "TCP startup probe",
}
LIFE_ROWS = {
    "idle-without-pings": "idle, no pings: lives",
    "idle-with-default-pings": "idle, websockets' 20 s pings: lives",
    "lifetime-with-pings": "busy connection: lives",
}


def _table(options: list[Option]) -> list[str]:
    lines = [
        "| | " + " | ".join(f"**{markdown_text(o.name)}**" for o in options) + " |",
        "|---|" + "---|" * len(options),
        "| emulates | " + " | ".join(markdown_text(o.platform) for o in options) + " |",
        "| real WebSocket clients | "
        + " | ".join(
            f"{'✓' if o.carries_websockets else '✗'} {o.clients_passed}/{o.clients_total} pass"
            for o in options
        )
        + " |",
    ]
    for scenario, label in TRAFFIC_ROWS.items():
        if any(scenario in o.traffic for o in options):
            lines.append(
                f"| {label} | "
                + " | ".join(markdown_text(o.traffic.get(scenario, "–")) for o in options)
                + " |"
            )
    for scenario, label in TRAFFIC_ROWS.items():
        if scenario in ("browser-tab-get", "deploy-health-check") and any(
            scenario in o.traffic for o in options
        ):
            lines.append(
                f"| {label}, with the process_request fix | "
                + " | ".join(markdown_text(o.traffic_fixed.get(scenario, "–")) for o in options)
                + " |"
            )
    for scenario, label in LIFE_ROWS.items():
        if any(scenario in o.lives for o in options):
            lives = (markdown_text(o.lives.get(scenario, "–")) for o in options)
            lines.append(f"| {label} | " + " | ".join(lives) + " |")
    return lines


def render_markdown(comparison: Comparison) -> str:
    """The whole page: table, causes, changes per option, recommendation."""
    scale = comparison.time_scale
    recommended = comparison.recommended
    timing = (
        "faithful time limits"
        if scale == 1
        else f"accelerated run (every limit ×{scale:g}); durations are given back in real seconds"
    )
    lines = [
        "# Which deployment carries the WebSocket server?",
        "",
        f"websockets {markdown_text(comparison.websockets)} behind each option, emulated on real "
        f"proxies; {timing}. "
        "Each option's topology.yaml names the source of every emulated behaviour.",
        "",
        *_table(comparison.options),
        "",
        "## Why cells fail, and what to change",
        "",
    ]
    for option in comparison.options:
        lines.append(f"### {markdown_text(option.name)} ({markdown_text(option.platform)})")
        lines.append("")
        if not option.causes:
            lines += ["Every scenario passes.", ""]
            continue
        lines.append("Causes: " + ", ".join(markdown_text(cause) for cause in option.causes) + ".")
        lines.append("")
        for fix in option.fixes:
            lines += [*markdown_block(fix), ""]
    lines += [
        "## Recommendation",
        "",
        f"**{markdown_text(recommended.platform)}** ({markdown_text(recommended.name)}).",
        "",
    ]
    lines += [f"- {reason}" for reason in comparison.reasons]
    return "\n".join(lines) + "\n"
