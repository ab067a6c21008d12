"""How long each cell took last time, remembered between runs, so that the longest play first.

A run lasts at least as long as its slowest cell (an Apache that never relays an HTTP/1.0
upgrade costs its cell the run's relay patience: wslab.relay_patience); started behind a queue
of quick cells, such a cell adds the queue's length to the run. The runner hands its places out
longest first by these figures (wslab.runner.Places); a cell never seen counts as 0 s.

The file is a cache of the owner's (``$WSLAB_CACHE/cell-durations.json``): when it is missing,
too big, or not a map of names to seconds, it is ignored and written afresh.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from .paths import CACHE

FILE = CACHE / "cell-durations.json"
MAX_BYTES = 1_000_000
MAX_CELLS = 20_000


def key(topology: str, scenario: str) -> str:
    return f"{topology}/{scenario}"


def load(path: Path = FILE) -> dict[str, float]:
    """The remembered durations, or none if the file is missing or not one."""
    try:
        with open(path, "rb") as file:
            data = json.loads(file.read(MAX_BYTES + 1)[:MAX_BYTES])
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        name: float(seconds)
        for name, seconds in data.items()
        if isinstance(seconds, int | float)
        and not isinstance(seconds, bool)
        and math.isfinite(seconds)
        and seconds >= 0
    }


def remember(played: Iterable[tuple[str, float]], path: Path = FILE) -> None:
    """Add a run's cells (key, seconds) to the file, replacing it whole; failures are ignored
    (the next run only plays in another order)."""
    known: Mapping[str, float] = load(path)
    merged = {**known, **dict(played)}
    if len(merged) > MAX_CELLS:
        merged = dict(list(merged.items())[-MAX_CELLS:])
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(merged, separators=(",", ":")), encoding="utf-8")
        partial.chmod(0o600)
        partial.replace(path)
