"""What the commands share: arguments turned into topologies, backends and runs.

A command reads and checks everything it was given (files, options, output
paths) synchronously first, where Ctrl-C interrupts at once and nothing has
started yet; only then does it start processes, under :func:`until_signal`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console

from ..app import AppSpec
from ..backends import Backend, StackOptions
from ..backends.remote import RemoteBackend, parse_target
from ..errors import LabFailure, UsageError
from ..records import Run
from ..reports.progress import RunProgress
from ..run_folders import TemporaryRunFolder
from ..runner import RunOptions, run
from ..scenario import Scenario
from ..topology import Topology

STDOUT = "-"
"""An output path meaning standard output (``--json -``)."""


def until_signal(coroutine: Coroutine[Any, Any, int]) -> int:
    """Run the command's asynchronous part; SIGINT and SIGTERM cancel it, so that teardown
    still runs, and then raise KeyboardInterrupt (the command line says so once, exit 130)."""

    async def main() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        return await coroutine

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None


def probe_options(args: argparse.Namespace) -> StackOptions:
    return StackOptions(
        websockets_version=args.websockets,
        answer_plain_http=args.answer_plain_http,
        ping_interval=args.ping_interval,
        time_scale=args.time_scale,
        redact=args.redact,
    )


@contextlib.contextmanager
def run_folder(args: argparse.Namespace) -> Iterator[Path]:
    """The run folder: ``--run-dir`` (kept, made absolute so every proxy finds it), or a
    temporary one removed on every way out, errors and Ctrl-C included (after a SIGKILL, by the
    next command: lab/run_folders.py)."""
    if args.run_dir:
        folder = Path(args.run_dir).resolve()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"--run-dir {args.run_dir}: {error.strerror}") from None
        yield folder
        return
    folder = TemporaryRunFolder()
    try:
        yield folder.path
    finally:
        folder.remove()


def app_given(args: argparse.Namespace) -> bool:
    """Whether --app, --upstream or --app-image was given (commands without them: never)."""
    return any(getattr(args, option, None) for option in ("app", "upstream", "app_image"))


def app_spec(args: argparse.Namespace) -> AppSpec | None:
    """The user's app from --app / --upstream / --app-per-topology, checked; None without one."""
    image = getattr(args, "app_image", None)
    port = getattr(args, "app_port", 8080)
    if not 0 < port < 65536:
        raise UsageError(f"--app-port needs a port from 1 to 65535, got {port}")
    if port != 8080 and not image:
        raise UsageError("--app-port goes with --app-image IMAGE")
    if not app_given(args):
        if getattr(args, "app_per_topology", False):
            raise UsageError("--app-per-topology goes with --app CMD")
        return None
    for option, given in (
        ("--websockets", args.websockets),
        ("--answer-plain-http", args.answer_plain_http),
    ):
        if given:
            raise UsageError(
                f"{option} sets up the lab's probe server; with your app behind the topologies "
                "it has no effect"
            )
    return AppSpec(
        command=args.app,
        upstream=parse_upstream(args.upstream),
        image=image,
        image_port=port,
        per_topology=args.app_per_topology,
    )


def check_backend_options(args: argparse.Namespace) -> None:
    """Options that do not go together, found before anything starts."""
    image = getattr(args, "app_image", None)
    if app_given(args) and args.target:
        raise UsageError(
            "--app, --upstream and --app-image put your app behind the lab's topologies; not with --target"
        )
    if image and args.backend == "local":
        raise UsageError(
            "--app-image goes with --backend compose or containers; on local processes: --app CMD"
        )
    if image and getattr(args, "in_network", False):
        raise UsageError("--app-image runs from the host, not --in-network")
    if (getattr(args, "app", None) or getattr(args, "upstream", None)) and args.backend != "local":
        raise UsageError(
            f"--app and --upstream put your app behind local topologies; not with --backend {args.backend} "
            "(a Docker image of your app: --app-image IMAGE)"
        )
    if args.target:
        if not (args.token or os.environ.get("WSLAB_TOKEN")):
            raise UsageError("--target needs the probe server's report token: --token or WSLAB_TOKEN")
        parse_target(args.target, args.insecure, args.ca_file)
        return
    if args.insecure or args.ca_file:
        raise UsageError("--insecure and --ca-file go with --target")
    if args.backend != "compose" and (args.in_network or args.keep):
        raise UsageError("--in-network and --keep go with --backend compose")
    if args.backend == "local" and args.offline:
        raise UsageError("--offline goes with --backend compose or containers")


def backend_for(args: argparse.Namespace, run_dir: Path) -> Backend:
    check_backend_options(args)
    if args.target:
        token = args.token or os.environ.get("WSLAB_TOKEN") or ""
        return RemoteBackend(
            args.target, token, probe_options(args), insecure=args.insecure, ca_file=args.ca_file
        )
    app = app_spec(args)
    # Each backend's module on demand: a warm run needs none, and the compose one loads docker.
    if args.backend == "compose":
        from ..backends.compose import ComposeBackend

        return ComposeBackend(
            probe_options(args),
            in_network=args.in_network,
            offline=args.offline,
            keep=args.keep,
            app=app,
            run_dir=run_dir,
        )
    if args.backend == "containers":
        from ..backends.containers import ContainersBackend

        return ContainersBackend(probe_options(args), offline=args.offline, app=app, run_dir=run_dir)
    from ..backends.local import LocalBackend

    return LocalBackend(run_dir, probe_options(args), app)


def parse_upstream(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--upstream needs HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def check_output_paths(paths: dict[str, str | None]) -> None:
    """Every output (format -> path) can be written, before a run spends its time: the folder
    exists, the path is not a folder, and standard output (``-``) is asked for once at most."""
    to_stdout = [name for name, path in paths.items() if path == STDOUT]
    if len(to_stdout) > 1:
        raise UsageError(f"only one output can go to standard output, not {' and '.join(to_stdout)}")
    for name, path in paths.items():
        if not path or path == STDOUT:
            continue
        target = Path(path)
        if target.is_dir():
            raise UsageError(f"--{name} {path}: is a folder, not a file")
        folder = target.parent if str(target.parent) else Path(".")
        if not folder.is_dir():
            raise UsageError(f"--{name} {path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
            raise UsageError(f"--{name} {path}: not writable")


def write_output(name: str, path: str, text: str) -> bool:
    """Write one output; a failure is said on stderr and does not stop the others. True if written.

    Nothing is printed to standard output here: a closed pipe there must not stop the next file.
    """
    if path == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return True
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"wslab: {LabFailure.label}: cannot write {name} to {path}: {error.strerror}", file=sys.stderr)
        return False
    return True


def write_outputs(outputs: dict[str, tuple[str, str]]) -> list[str] | None:
    """Write every output (name -> (path, text)): the files first, standard output last.

    Returns the lines that say which files were written (to print after the report, so that a
    closed pipe cannot stop a file), or None if one could not be written.
    """
    order = sorted(outputs.items(), key=lambda item: item[1][0] == STDOUT)
    written = {name: write_output(name, path, text) for name, (path, text) in order}
    said = [written_line(name, path) for name, (path, _) in order if written[name] and path != STDOUT]
    return said if all(written.values()) else None


def written_line(name: str, path: str) -> str:
    """What says, after the report, that output ``name`` was written to file ``path``."""
    return f"{name}: {path}"


class FilesAside:
    """Output files rendered and written by a forked copy of this process while this one goes
    on (to print the matrix): serialising a run's results and drawing its matrix each hold the
    GIL for some 0.03 s, and on two cores they need not wait for each other.

    ``files`` maps each format to its path (not standard output), ``render`` a format to its
    text. Leaving the ``with`` block waits for the copy, however the block ends, so that a
    matrix that meets a closed pipe (``| head``) loses no file; :attr:`lines` then says what
    :func:`write_outputs` would have. Written in line where a fork is not safe (another thread
    runs) or fails.
    """

    def __init__(self, files: dict[str, str], render: Callable[[str], str]) -> None:
        self.files = files
        self.render = render
        self.lines: list[str] | None = None
        self._copy: int | None = None

    def __enter__(self) -> FilesAside:
        if self.files and threading.active_count() == 1:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()  # or the copy would write what this process has buffered too
            with contextlib.suppress(OSError):
                self._copy = os.fork()
            if self._copy == 0:
                self._write_and_exit()
        if self._copy is None:
            self.lines = self._write()
        return self

    def __exit__(self, *_: object) -> None:
        if self._copy is None:
            return
        copy, self._copy = self._copy, None
        _, status = os.waitpid(copy, 0)
        self.lines = [written_line(name, path) for name, path in self.files.items()] if status == 0 else None

    def _write(self) -> list[str] | None:
        return write_outputs({name: (path, self.render(name)) for name, path in self.files.items()})

    def _write_and_exit(self) -> NoReturn:
        code = 1
        try:
            code = 0 if self._write() is not None else 1
        except BaseException as error:  # noqa: BLE001 (the copy must never return into the command)
            said = f"cannot write {', '.join(self.files)}: {error!r}"
            print(f"wslab: {LabFailure.label}: {said}", file=sys.stderr)
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os._exit(code)


async def run_with_progress(
    backend: Backend,
    topologies: list[Topology],
    scenarios: list[Scenario],
    options: RunOptions | None = None,
    progress_mode: str = "auto",
) -> Run:
    """Play the cells with live progress on stderr (``progress_mode``: see RunProgress)."""
    progress = RunProgress(len(topologies) * len(scenarios), len(scenarios), sys.stderr, progress_mode)
    with progress:
        return await run(
            backend, topologies, scenarios, options, on_cell=progress.finished, on_start=progress.started
        )


def show_page(page: str, args: argparse.Namespace, console: Console) -> None:
    """A Markdown answer on the terminal, and in ``--markdown PATH`` if asked."""
    said = write_outputs({"markdown": (args.markdown, page)}) if args.markdown else []
    from rich.markdown import Markdown

    console.print(Markdown(page))
    for line in said or []:
        console.print(line, markup=False, highlight=False)
