"""The comparison page as Markdown (printed in the terminal through rich)."""

from __future__ import annotations

from ..deployment_choice import Comparison, Option

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


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(options: list[Option]) -> list[str]:
    lines = [
        "| | " + " | ".join(f"**{o.name}**" for o in options) + " |",
        "|---|" + "---|" * len(options),
        "| emulates | " + " | ".join(_cell(o.platform) for o in options) + " |",
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
                f"| {label} | " + " | ".join(_cell(o.traffic.get(scenario, "–")) for o in options) + " |"
            )
    for scenario, label in TRAFFIC_ROWS.items():
        if scenario in ("browser-tab-get", "deploy-health-check") and any(
            scenario in o.traffic for o in options
        ):
            lines.append(
                f"| {label}, with the process_request fix | "
                + " | ".join(_cell(o.traffic_fixed.get(scenario, "–")) for o in options)
                + " |"
            )
    for scenario, label in LIFE_ROWS.items():
        if any(scenario in o.lives for o in options):
            lines.append(f"| {label} | " + " | ".join(o.lives.get(scenario, "–") for o in options) + " |")
    return lines


def render_markdown(comparison: Comparison) -> str:
    """The whole page: table, causes, changes per option, recommendation."""
    scale = comparison.time_scale
    timing = (
        "faithful time limits"
        if scale == 1
        else f"accelerated run (every limit ×{scale:g}); durations are given back in real seconds"
    )
    lines = [
        "# Which deployment carries the WebSocket server?",
        "",
        f"websockets {comparison.websockets} behind each option, emulated on real proxies; {timing}. "
        "Each option's topology.yaml names the source of every emulated behaviour.",
        "",
        *_table(comparison.options),
        "",
        "## Why cells fail, and what to change",
        "",
    ]
    for option in comparison.options:
        lines.append(f"### {option.name} ({option.platform})")
        lines.append("")
        if not option.causes:
            lines += ["Every scenario passes.", ""]
            continue
        lines.append("Causes: " + ", ".join(option.causes) + ".")
        lines.append("")
        for fix in option.fixes:
            lines += ["```", fix, "```", ""]
    lines += [
        "## Recommendation",
        "",
        f"**{comparison.recommended.platform}** ({comparison.recommended.name}).",
        "",
    ]
    lines += [f"- {reason}" for reason in comparison.reasons]
    return "\n".join(lines) + "\n"
