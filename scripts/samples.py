"""The sample outputs in README.md and docs/, made from real runs so they cannot go stale.

Each sample is a fenced block between ``<!-- sample: NAME -->`` and ``<!-- /sample -->`` in a
Markdown file; SAMPLES says which command makes it. ``python scripts/samples.py`` runs the
commands (real proxies, 100 columns) and rewrites the blocks; ``--check`` runs them and exits 1
if a block differs from what they print now (tests/test_samples.py does this), once the parts
that change from run to run (durations, measured limits within 5%) are set aside.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = "100"

SEED_LOG_LINE = "websockets.exceptions.InvalidUpgrade: missing Connection header"
RUN_TOPOLOGIES = ["direct", "haproxy-default", "nginx-websocket-map", "varnish-default", "envoy-default"]
RUN_TOPOLOGIES += ["replit-dev", "replit-autoscale", "replit-reserved-vm", "replit-static"]

SAMPLES: dict[str, tuple[list[str], int]] = {
    "run": (
        ["run", "--fresh", *[arg for name in RUN_TOPOLOGIES for arg in ("-t", name)], "--json", "{results}"],
        60,
    ),
    "explain": (["explain", SEED_LOG_LINE, "--results", "{results}"], 61),
    "compare": (["compare"], 0),
    "your-app": (
        [
            "run",
            "--app",
            "python examples/websockets-app/app.py",
            "-t",
            "haproxy-default",
            "-t",
            "replit-dev",
        ],
        24,
    ),
}
"""Sample name -> the wslab command that prints it ({results}: the run sample's --json file) and
how many of its first lines to show (0: all)."""

FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"(<!-- sample: (?P<name>[a-z-]+) -->\n```[a-z]*\n)(?P<body>.*?)(```\n<!-- /sample -->)", re.S
)
VOLATILE = [
    (re.compile(r"(\d+ scenarios · \w+ backend · )\d+(?:\.\d+)? s"), r"\g<1>N s"),
    (re.compile(r"measured \d+ ?s"), "measured N s"),
]
"""What changes from run to run, set aside when comparing."""


def produce() -> dict[str, str]:
    """Every sample's text, from real commands."""
    outputs = {}
    with tempfile.TemporaryDirectory() as scratch:
        results = str(Path(scratch) / "results.json")
        for name, (args, shown) in SAMPLES.items():
            command = [arg.replace("{results}", results) for arg in args]
            completed = subprocess.run(
                [sys.executable, "-m", "wslab", *command],
                capture_output=True,
                text=True,
                timeout=600,
                cwd=ROOT,
                env={**os.environ, "COLUMNS": COLUMNS},
            )
            if completed.returncode not in (0, 1):
                raise SystemExit(
                    f"wslab {' '.join(command)} exited {completed.returncode}:\n{completed.stderr}"
                )
            lines = [line.rstrip() for line in completed.stdout.replace(results, "results.json").splitlines()]
            if shown and len(lines) > shown:
                lines = [*lines[:shown], f"[... {len(lines) - shown} more lines]"]
            outputs[name] = "\n".join(lines) + "\n"
    return outputs


NUMBER = re.compile(r"(\d+(?:\.\d+)?)")
NUMBER_TOLERANCE = 0.05
"""Measured durations move by a second or two between runs (297 s, 298 s), wherever a table
wraps them: two samples alike up to numbers this close are the same sample."""
DURATION_TOLERANCE = 0.1
"""An accelerated limit is measured in fiftieths: 80 ms of scheduling on a loaded machine is 4 s
faithful (an idle cut of 60 s measured 54 s, then 58 s)."""
DURATION_SLACK = 0.3
"""Seconds any two durations may differ by: a time to be back measured in real seconds reads
0.0 s on an idle machine and 0.1 s on a loaded one, which no ratio allows."""


def _settled(text: str) -> str:
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def _alike(old: str, new: str) -> bool:
    """The same text once the volatile parts are set aside, numbers within the tolerance."""
    old_parts, new_parts = NUMBER.split(_settled(old)), NUMBER.split(_settled(new))
    if len(old_parts) != len(new_parts):
        return False
    for index, (a, b) in enumerate(zip(old_parts, new_parts, strict=True)):
        if index % 2 == 0:
            if a != b:
                return False
        else:
            after = old_parts[index + 1] if index + 1 < len(old_parts) else ""
            duration = after.lstrip(" ").startswith("s")
            tolerance = DURATION_TOLERANCE if duration else NUMBER_TOLERANCE
            slack = max(tolerance * max(float(a), float(b)), DURATION_SLACK if duration else 0.0)
            if abs(float(a) - float(b)) > slack:
                return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a sample is stale, change nothing")
    args = parser.parse_args()
    outputs = produce()
    stale = []
    for path in FILES:
        text = path.read_text()

        def replace(match: re.Match[str], path: Path = path) -> str:
            name = match.group("name")
            if name not in outputs:
                raise SystemExit(f"{path}: no sample named {name!r} (known: {', '.join(outputs)})")
            if _alike(match.group("body"), outputs[name]):
                return match.group(0)  # no churn for a duration that moved
            stale.append(f"{path.relative_to(ROOT)}: {name}")
            return match.group(1) + outputs[name] + match.group(4)

        updated = BLOCK.sub(replace, text)
        if not args.check and updated != text:
            path.write_text(updated)
    for entry in stale:
        print(f"{'stale' if args.check else 'updated'}: {entry}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
