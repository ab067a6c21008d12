"""Wall and CPU times of the lab, printed as figures and ratios (nothing is asserted).

    python bench/bench.py [--repeat N] [--compose [--cold] [--compose-only]] [--tap-only]

- the default matrix through ``wslab run`` as a user runs it: cold (``--fresh``:
  every topology started and stopped), warm (on a ``wslab up --detach
  --accelerated`` started once, which the runs reuse: handed to its fork server, and
  in their own process with ``WSLAB_FORKSERVER=off``), and cold one cell at a time
  (``--concurrency 1``); each with its wall time and the CPU seconds of every
  process involved (for warm runs, the kept lab's share too), and their ratios;
- the timeouts suite accelerated, the browser suite (Chromium);
- with --compose (needs a Docker engine and the offline images): on the warm
  images, ``wslab run --backend compose --offline`` from ``compose up`` to the
  first cell result, to the whole matrix, and its ``down``; then the stack's own
  runner (``compose up runner``): to its first progress line, to its exit, and
  ``compose down``. $COMPOSE_PROJECT_NAME and $WSLAB_OFFLINE_REPO pick the project
  and the image, as for the lab itself. These come first: the local runs leave
  thousands of sockets in TIME_WAIT, which slow Docker's teardown for a minute;
- with --cold also a cold build of the offline images first: it REMOVES the
  images $WSLAB_OFFLINE_REPO and $WSLAB_OFFLINE_BASE name (by default the shared
  wslab-offline/lab and wslab-offline/base) and build/offline;
- the recording tap's cost: sequential WebSocket connect + echo + close to a
  websockets echo app on 127.0.0.1, directly and through the tap (a
  ``python -m wslab.probe --forward`` process), alternately; ``--tap-only``
  prints just that figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402

from wslab.backends import ACCELERATED, StackOptions  # noqa: E402
from wslab.backends.compose import ComposeBackend, compose_command  # noqa: E402
from wslab.backends.local import LocalBackend  # noqa: E402
from wslab.compose_file import COMPOSE_FILE, OFFLINE_FILE, OFFLINE_LAB_IMAGE, project, resolve  # noqa: E402
from wslab.runner import RunOptions, run  # noqa: E402
from wslab.scenario import load_scenarios  # noqa: E402
from wslab.topology import load_topologies  # noqa: E402

BEFORE_WAVE_2 = 10.1
"""Wall seconds of a cold default-matrix `wslab run` when the warm lab was asked for (the issue's
figure, 10.1-10.4 s on the 2-core machine), to print the cold run's speed-up against."""


@dataclass
class Timed:
    wall: float
    cpu: float
    cells: int


def tree_cpu(root: int) -> float:
    """CPU seconds so far of a process and every process below it (a detached `wslab up`: its
    proxies, probe server and fork server), with the children each has reaped (the runs the fork
    server forked, lab/forkserver.py, are gone by the time this is read)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(") ", 1)[1].split()
            pid = int(stat.parent.name)
            parents[pid] = int(fields[1])
            times[pid] = sum(int(field) for field in fields[11:15])
    below = {root}
    grew = True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in below} - below
        below |= found
        grew = bool(found)
    return sum(times.get(pid, 0) for pid in below) / ticks


def wslab_run(env: dict[str, str], *args: str, lab_pid: int | None = None) -> Timed:
    """One `wslab run` of the default matrix: wall time, CPU of it and everything it started
    (and of the kept lab, given its pid), cells played."""
    with tempfile.TemporaryDirectory(prefix="wslab-bench-") as folder:
        out = Path(folder) / "r.json"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        lab_before = tree_cpu(lab_pid) if lab_pid else 0.0
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "wslab", "run", "--json", str(out), *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if lab_pid:
            cpu += tree_cpu(lab_pid) - lab_before
        cells = len(json.loads(out.read_text())["cells"])
        return Timed(wall, cpu, cells)


def median(runs: list[Timed]) -> Timed:
    return Timed(
        statistics.median(r.wall for r in runs), statistics.median(r.cpu for r in runs), runs[0].cells
    )


def local_figures(repeat: int) -> None:
    """Cold, warm and one-at-a-time runs of the default matrix, and their ratios."""
    with tempfile.TemporaryDirectory(prefix="wslab-bench-state-") as state:
        # A cache of its own: proxy versions, and the cell durations that order the cells.
        env = {**os.environ, "WSLAB_STATE": str(Path(state) / "lab.json"), "WSLAB_CACHE": state}
        # As an installed lab runs: with its bytecode cached (pip compiles a wheel's at install).
        # Without it every process compiles the lab's sources again (about 0.1 s of each run).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        wslab_run(env, "--fresh")  # the cache, once
        cold = median([wslab_run(env, "--fresh") for _ in range(repeat)])
        one = median([wslab_run(env, "--fresh", "--concurrency", "1") for _ in range(repeat)])
        started = time.perf_counter()
        up = subprocess.run(
            [sys.executable, "-m", "wslab", "up", "--detach", "--accelerated"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        up_seconds = time.perf_counter() - started
        lab = int(re.search(r"pid (\d+)", up.stdout)[1])  # type: ignore[index]
        try:
            wslab_run(env, lab_pid=lab)  # the first run after up: caches, connections
            warm = median([wslab_run(env, lab_pid=lab) for _ in range(max(3, repeat))])
            own = {**env, "WSLAB_FORKSERVER": "off"}
            warm_own = median([wslab_run(own, lab_pid=lab) for _ in range(max(3, repeat))])
            one_topology = ("-t", "nginx-websocket")
            warm_one = median([wslab_run(env, *one_topology, lab_pid=lab) for _ in range(max(3, repeat))])
            cold_one = median([wslab_run(env, "--fresh", *one_topology) for _ in range(repeat)])
        finally:
            subprocess.run([sys.executable, "-m", "wslab", "down"], env=env, capture_output=True)
    print(f"default matrix, {cold.cells} cells, `wslab run` (median of {repeat}; warm of {max(3, repeat)})")
    for label, timed in (
        ("cold (--fresh)", cold),
        ("warm (on wslab up)", warm),
        ("warm, own process", warm_own),
        ("one cell at a time", one),
    ):
        print(f"  {label:20} wall {timed.wall:6.2f} s   CPU {timed.cpu:6.2f} s")
    print("  (warm: handed to the lab's fork server; own process: WSLAB_FORKSERVER=off)")
    print(f"  wslab up --detach    {up_seconds:6.2f} s to up (once)")
    print(
        f"  warm vs cold         {cold.wall / warm.wall:5.1f}x faster, {cold.cpu / warm.cpu:5.1f}x less CPU"
    )
    print(f"  cold vs {BEFORE_WAVE_2:g} s before  {BEFORE_WAVE_2 / cold.wall:5.2f}x faster")
    print(f"  warm vs {BEFORE_WAVE_2:g} s before  {BEFORE_WAVE_2 / warm.wall:5.2f}x faster")
    print(f"  warm vs own process  {warm_own.wall / warm.wall:5.1f}x faster (the fork server)")
    print(f"  concurrent vs one at a time {one.wall / cold.wall:5.1f}x faster")
    print(f"one topology (-t nginx-websocket), {cold_one.cells} cells: the edit-and-re-run loop")
    for label, timed in (("cold (--fresh)", cold_one), ("warm (on wslab up)", warm_one)):
        print(f"  {label:20} wall {timed.wall:6.2f} s   CPU {timed.cpu:6.2f} s")
    print(f"  warm vs cold         {cold_one.wall / warm_one.wall:5.1f}x faster")


ROOT = Path(__file__).resolve().parent.parent


def cold_offline_build() -> float:
    image = resolve(OFFLINE_LAB_IMAGE)
    base = os.environ.get("WSLAB_OFFLINE_BASE") or "wslab-offline/base:bookworm"
    # The lab image before its base: removing a tag also removes its untagged parent layers.
    for name in (image, base):
        subprocess.run(["docker", "rmi", "-f", name], capture_output=True)
    subprocess.run(["rm", "-rf", str(ROOT / "build" / "offline")], check=True)
    started = time.perf_counter()
    subprocess.run(["bash", str(ROOT / "scripts" / "build-offline-images.sh")], check=True)
    return time.perf_counter() - started


class TimedStop(ComposeBackend):
    """The compose backend, timing its stop (compose down)."""

    stop_seconds = 0.0

    async def stop(self) -> None:
        started = time.perf_counter()
        await super().stop()
        self.stop_seconds = time.perf_counter() - started


def compose_up_to_results() -> tuple[float, float, float]:
    """From the host: up to the first cell, up to the last cell, down."""
    finished: list[float] = []
    backend = TimedStop(StackOptions(), offline=True)
    started = time.perf_counter()
    asyncio.run(
        run(
            backend,
            list(load_topologies().values()),
            load_scenarios(),
            RunOptions(),
            on_cell=lambda cell: finished.append(time.perf_counter()),
        )
    )
    return min(finished) - started, max(finished) - started, backend.stop_seconds


PROGRESS_LINE = re.compile(r"^runner[-_]1\s+\|\s+\[\d+/\d+\]")


def compose_runner() -> tuple[float, float, float]:
    """The stack's own runner: ``compose up runner`` to its first progress line, to its exit;
    then ``compose down``."""
    compose = [*compose_command(), "-p", project(), "-f", COMPOSE_FILE, "-f", OFFLINE_FILE]
    first = None
    started = time.perf_counter()
    with subprocess.Popen(
        [*compose, "up", "--no-build", "--no-color", "runner"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as up:
        assert up.stdout is not None
        for line in up.stdout:
            if first is None and PROGRESS_LINE.match(line):
                first = time.perf_counter() - started
    whole = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(
        [*compose, "down", "--volumes", "--remove-orphans"], cwd=ROOT, capture_output=True, check=True
    )
    return first if first is not None else float("nan"), whole, time.perf_counter() - started


def time_wait_sockets() -> int:
    """TCP sockets in TIME_WAIT in this network namespace: the kernel walks them each time
    Docker removes a container's namespace, so they slow ``compose down`` (docs/benchmark.md)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            count += sum(1 for line in lines if line.split()[3:4] == ["06"])
    return count


def compose_figures(cold: bool) -> None:
    if cold:
        print(f"cold offline build       {cold_offline_build():6.1f} s")
    first, whole, down = compose_up_to_results()
    print(f"warm compose, from host  first cell after {first:5.1f} s, whole matrix {whole:5.1f} s, ", end="")
    print(f"down {down:5.1f} s")
    first, whole, down = compose_runner()
    print(
        f"warm compose up runner   first progress line after {first:5.1f} s, runner done {whole:5.1f} s, "
        f"down {down:5.1f} s"
    )
    print(f"  (host sockets in TIME_WAIT at the end: {time_wait_sockets()})")


def suite_time(suite: str, time_scale: float = 1.0) -> float:
    """One non-default suite through every topology (as `wslab run --suite NAME`)."""
    with tempfile.TemporaryDirectory(prefix="wslab-bench-") as folder:
        backend = LocalBackend(Path(folder), StackOptions(time_scale=time_scale))
        started = time.perf_counter()
        asyncio.run(run(backend, list(load_topologies().values()), load_scenarios(suites=[suite])))
        return time.perf_counter() - started


async def _echo(connection: ServerConnection) -> None:
    async for message in connection:
        await connection.send(message)


async def _connect_echo_close(host: str, port: int) -> float:
    started = time.perf_counter()
    async with connect(f"ws://{host}:{port}/", ping_interval=None, compression=None) as websocket:
        await websocket.send("ping")
        await websocket.recv()
    return time.perf_counter() - started


async def _tap_latency(connections: int) -> tuple[list[float], list[float]]:
    async with serve(_echo, "127.0.0.1", 0, ping_interval=None, compression=None) as app:
        app_port = app.sockets[0].getsockname()[1]
        tap = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wslab.probe",
            "--listen",
            "app=127.0.0.1:0",
            "--forward",
            f"app=127.0.0.1:{app_port}",
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert tap.stdout is not None
            tap_port = json.loads(await tap.stdout.readline())["listeners"]["app"][1]
            for _ in range(20):  # warm-up: imports, caches, the first connections' allocations
                await _connect_echo_close("127.0.0.1", app_port)
                await _connect_echo_close("127.0.0.1", tap_port)
            direct, tapped = [], []
            for _ in range(connections):
                direct.append(await _connect_echo_close("127.0.0.1", app_port))
                tapped.append(await _connect_echo_close("127.0.0.1", tap_port))
        finally:
            tap.terminate()
            await tap.wait()
    return direct, tapped


def tap_figures(connections: int = 500) -> None:
    """The tap's added latency per connection (median and p95, in milliseconds)."""
    direct, tapped = asyncio.run(_tap_latency(connections))

    def figures(times: list[float]) -> tuple[float, float]:
        return statistics.median(times) * 1000, statistics.quantiles(times, n=20)[-1] * 1000

    (direct_median, direct_p95), (tapped_median, tapped_p95) = figures(direct), figures(tapped)
    print(f"tap, {connections} sequential WebSocket connect+echo+close per path")
    print(f"  direct          median {direct_median:.3f} ms  p95 {direct_p95:.3f} ms")
    print(f"  through the tap median {tapped_median:.3f} ms  p95 {tapped_p95:.3f} ms")
    added_median, added_p95 = tapped_median - direct_median, tapped_p95 - direct_p95
    print(f"  added           median {added_median:.3f} ms  p95 {added_p95:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode (default 1)")
    parser.add_argument("--compose", action="store_true", help="also time the compose stack (offline images)")
    parser.add_argument(
        "--cold", action="store_true", help="with --compose: remove and rebuild the offline images"
    )
    parser.add_argument("--compose-only", action="store_true", help="with --compose: skip the local figures")
    parser.add_argument("--tap-only", action="store_true", help="only the recording tap's added latency")
    args = parser.parse_args()
    if args.tap_only:
        tap_figures()
        return
    # The compose stack first: the local figures leave some 10,000 sockets in TIME_WAIT for a
    # minute, which add about a second to the engine's teardown (docs/benchmark.md).
    if args.compose:
        compose_figures(args.cold)
        if args.compose_only:
            return
    local_figures(args.repeat)
    print(f"timeouts suite, accelerated {suite_time('timeouts', ACCELERATED):6.2f} s")
    print(f"browser suite (Chromium)    {suite_time('browser'):6.2f} s")
    tap_figures()


if __name__ == "__main__":
    main()
