"""Wall time of the default matrix: all cells concurrently, then the same cells one at a time.

    python bench/bench.py [--repeat N]

Each figure covers starting the topologies, playing the cells and tearing
everything down, as ``wslab run`` does. Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.backends import ProbeOptions  # noqa: E402
from lab.backends.local import LocalBackend  # noqa: E402
from lab.runner import RunOptions, run  # noqa: E402
from lab.scenario import load_scenarios  # noqa: E402
from lab.topology import load_topologies  # noqa: E402


def timed_run(concurrency: int) -> tuple[float, int, dict[str, int]]:
    topologies = list(load_topologies().values())
    scenarios = load_scenarios()
    with tempfile.TemporaryDirectory(prefix="wslab-bench-") as folder:
        backend = LocalBackend(Path(folder), ProbeOptions())
        started = time.perf_counter()
        result = asyncio.run(run(backend, topologies, scenarios, RunOptions(concurrency=concurrency)))
        return time.perf_counter() - started, len(result.cells), result.counts()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode (default 3)")
    args = parser.parse_args()
    for label, concurrency in (("concurrent (16 at once)", 16), ("one cell at a time", 1)):
        times = []
        for _ in range(args.repeat):
            seconds, cells, counts = timed_run(concurrency)
            times.append(seconds)
        print(
            f"{label:24} {cells} cells  median {statistics.median(times):6.2f} s  "
            f"min {min(times):6.2f} s  max {max(times):6.2f} s  ({counts})"
        )


if __name__ == "__main__":
    main()
