"""The ``wslab`` command line: argument parsing, signals and exit codes.

The commands themselves live in wslab/commands/, one module per family. Every
error meant for a person is a :class:`~wslab.errors.WslabError`; :func:`main`
prints it on one line and exits with its code, here and nowhere else.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from typing import Any

import websockets
from rich.console import Console

from . import containment
from .backends import ACCELERATED
from .binary_versions import VersionCache
from .commands import REPORT_FORMATS, command
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_LAB, EXIT_OK, WslabError
from .probe.text import printable
from .proxies import REGISTRY


def wslab_version() -> str:
    try:
        return installed_version("wslab")
    except PackageNotFoundError:
        return "unknown (not installed)"


async def _proxy_versions() -> list[str]:
    found = [(kind, binary) for kind in REGISTRY.values() if (binary := kind.locate()) is not None]
    cache = VersionCache()
    versions = await asyncio.gather(*(cache.version(kind, binary) for kind, binary in found))
    lines = [
        f"{kind.name} {version} ({binary})" for (kind, binary), version in zip(found, versions, strict=True)
    ]
    missing = [kind.name for kind in REGISTRY.values() if kind.locate() is None]
    return lines + ([f"not found: {', '.join(missing)}"] if missing else [])


class VersionAction(argparse.Action):
    """``--version``: wslab's, websockets' and each installed proxy's version, then exit."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings, dest, nargs=0, help="print the versions of wslab, websockets and each proxy"
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        lines = [f"wslab {wslab_version()}", f"websockets {websockets.__version__}"]
        lines += asyncio.run(_proxy_versions())
        print("\n".join(lines))
        parser.exit(EXIT_OK)


def _add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--topology",
        "-t",
        action="append",
        metavar="NAME",
        help="run only this topology (repeatable): a name, all, a role (direct, bare, websocket, "
        "platform) or a first word (replit, nginx); default: all",
    )
    parser.add_argument(
        "--websockets",
        metavar="VERSION",
        help="websockets release for the probe server, e.g. 15.0.1 to reproduce "
        "the original report (default: the installed one)",
    )
    parser.add_argument(
        "--answer-plain-http",
        action="store_true",
        help="the probe server answers non-upgrade requests with 200 (the health-check fix)",
    )
    parser.add_argument(
        "--no-redact",
        dest="redact",
        action="store_false",
        help="keep secrets (Authorization, cookies, API keys, tokens in the query or the subprotocols) "
        "in the probe server's records and in the results; by default both replace them with "
        "[redacted len=N sha256:XXXXXXXX]",
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="probe server keepalive pings; 0 turns them off (default: 20)",
    )
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument(
        "--accelerated",
        dest="time_scale",
        action="store_const",
        const=ACCELERATED,
        help=f"shorten every platform limit and ping interval {1 / ACCELERATED:g} times",
    )
    timing.add_argument(
        "--faithful", dest="time_scale", action="store_const", const=1.0, help="time limits as documented"
    )
    parser.add_argument(
        "--run-dir", metavar="DIR", help="keep logs and rendered configs here (default: a temporary folder)"
    )


def _add_app_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--app",
        metavar="CMD",
        help="your own server instead of the probe server: a shell command the lab starts with PORT "
        "and HOST=127.0.0.1 in its environment; each topology reaches it through a recording tap",
    )
    parser.add_argument(
        "--upstream",
        metavar="HOST:PORT",
        help="your own server, already running on a loopback address, instead of the probe server",
    )
    parser.add_argument(
        "--app-per-topology",
        action="store_true",
        help="with --app: start one process per topology instead of one for the run",
    )


@functools.cache  # built once by a warm lab's fork server for every run it forks (5 ms each)
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wslab",
        description="WebSocket deployment lab: real proxies in front of an observing server.",
    )
    parser.add_argument("--version", action=VersionAction)
    commands = parser.add_subparsers(dest="command", required=True)

    run_parser = commands.add_parser("run", help="play every scenario through every topology")
    _add_probe_arguments(run_parser)
    _add_app_arguments(run_parser)
    run_parser.add_argument(
        "--fresh",
        action="store_true",
        help="start new topologies even when a `wslab up` runs them (a warm lab)",
    )
    run_parser.add_argument(
        "--app-image",
        metavar="IMAGE",
        help="your own server as a local Docker image, behind every topology of --backend compose or "
        "containers (started with PORT and HOST=127.0.0.1, never pulled)",
    )
    run_parser.add_argument(
        "--app-port",
        type=int,
        default=8080,
        metavar="PORT",
        help="with --app-image: the port its server listens on, given to it as PORT (default 8080)",
    )
    run_parser.add_argument(
        "--scenarios",
        "-s",
        action="append",
        metavar="PATH",
        help="scenario file or folder (repeatable; default: scenarios/)",
    )
    run_parser.add_argument(
        "--scenario", action="append", metavar="ID", help="run only this scenario id (repeatable)"
    )
    run_parser.add_argument(
        "--suite",
        action="append",
        metavar="NAME",
        help="run only this suite (repeatable), including non-default ones such as 'timeouts'",
    )
    run_parser.add_argument(
        "--json", metavar="PATH", help="write every cell with its evidence (- for stdout)"
    )
    run_parser.add_argument(
        "--verbose", "-v", action="store_true", help="after the folded causes, every failed cell's own cause"
    )
    run_parser.add_argument("--html", metavar="PATH", help="write a self-contained HTML report")
    run_parser.add_argument("--markdown", metavar="PATH", help="write a Markdown summary")
    run_parser.add_argument("--junit", metavar="PATH", help="write JUnit XML (one testcase per cell)")
    run_parser.add_argument(
        "--target",
        metavar="URL",
        help="run against a deployed probe server (ws:// or wss://; docs/deploy.md), not topologies",
    )
    run_parser.add_argument("--token", help="the deployed probe server's report token (or env WSLAB_TOKEN)")
    run_parser.add_argument(
        "--insecure", action="store_true", help="wss: accept any certificate (self-signed ones)"
    )
    run_parser.add_argument("--ca-file", metavar="PEM", help="wss: trust the CA certificates in this file")
    run_parser.add_argument(
        "--baseline",
        metavar="RESULTS",
        help="exit 1 only for cells that regressed against this earlier --json results file",
    )
    run_parser.add_argument(
        "--backend",
        choices=["local", "compose", "containers"],
        default="local",
        help="local: proxies as local processes (default); compose: the docker-compose.yml stack; "
        "containers: the same services started one by one through testcontainers",
    )
    run_parser.add_argument(
        "--offline",
        action="store_true",
        help="compose, containers: use the offline image (scripts/build-offline-images.sh)",
    )
    run_parser.add_argument(
        "--keep", action="store_true", help="compose: leave the stack up if this run started it"
    )
    run_parser.add_argument(
        "--in-network",
        action="store_true",
        help="compose: reach services by name from inside the stack (the runner service)",
    )
    run_parser.add_argument(
        "--concurrency",
        type=_positive(int),
        default=32,
        help="cells playing at once (default 32; a cell waiting for the server's report holds no place)",
    )
    run_parser.add_argument(
        "--progress",
        choices=["auto", "cell", "topology"],
        default="auto",
        help="on standard error: a bar on a terminal, else a line per finished topology (auto, the "
        "default); a line per finished cell (cell); a line per topology even on a terminal (topology)",
    )
    run_parser.add_argument(
        "--step-timeout",
        type=_positive(float),
        default=5.0,
        metavar="SECONDS",
        help="time allowed for each client step (default 5)",
    )

    run_parser.set_defaults(time_scale=ACCELERATED)

    up_parser = commands.add_parser("up", help="start the topologies and keep them up until Ctrl-C")
    _add_probe_arguments(up_parser)
    up_parser.set_defaults(time_scale=1.0)
    _add_app_arguments(up_parser)
    up_parser.add_argument(
        "--detach",
        action="store_true",
        help="start in the background and return once up (its output goes to a log file); "
        "`wslab down` stops it",
    )
    up_parser.add_argument(
        "--ports",
        action="store_true",
        help="each topology on its own port from its topology.yaml (18001...), so the URLs stay the same",
    )

    commands.add_parser("down", help="stop the warm lab that `wslab up --detach` (or `wslab up`) keeps")

    commands.add_parser(
        "probe-server",
        help="the probe server as a deployable app ($PORT, --public, token-guarded reports)",
        add_help=False,
    )

    compare_parser = commands.add_parser(
        "compare", help="Replit's deployment options beside Cloud Run and nginx: what works, for how long"
    )
    _add_probe_arguments(compare_parser)
    compare_parser.set_defaults(time_scale=ACCELERATED)
    compare_parser.add_argument("--markdown", metavar="PATH", help="also write the page as Markdown")
    compare_parser.add_argument(
        "--target", metavar="URL", help="add a real deployment of `wslab probe-server`"
    )
    compare_parser.add_argument("--token", help="its report token (or env WSLAB_TOKEN)")
    compare_parser.add_argument("--insecure", action="store_true", help="wss: accept any certificate")
    compare_parser.add_argument("--ca-file", metavar="PEM", help="wss: trust these CA certificates")
    compare_parser.add_argument("--json", metavar="PATH", help="write the cells of the as-is run")

    explain_parser = commands.add_parser(
        "explain", help="which causes make a websockets server log this error, and how to tell them apart"
    )
    explain_parser.add_argument(
        "log",
        metavar="LOG_LINE",
        help="the error as the log shows it, e.g. 'missing Connection header', or its whole traceback",
    )
    explain_parser.add_argument(
        "--results",
        action="append",
        metavar="RESULTS.json",
        help="read saved runs (repeatable) instead of running the default suites now",
    )
    _add_probe_arguments(explain_parser)
    explain_parser.set_defaults(time_scale=ACCELERATED)
    explain_parser.add_argument("--markdown", metavar="PATH", help="also write the answer as Markdown")

    report_parser = commands.add_parser("report", help="re-render a saved run (--json results)")
    report_parser.add_argument(
        "results", metavar="RESULTS.json", nargs="+", help="several runs are merged into one matrix"
    )
    report_parser.add_argument(
        "--format", "-f", choices=["terminal", *REPORT_FORMATS], default="terminal", help="default: terminal"
    )
    report_parser.add_argument("--output", "-o", metavar="PATH", help="write here instead of stdout")
    report_parser.add_argument(
        "--verbose", "-v", action="store_true", help="terminal: every failed cell's cause"
    )

    diff_parser = commands.add_parser("diff", help="the cells that changed between two saved runs")
    diff_parser.add_argument("old", metavar="OLD.json")
    diff_parser.add_argument("new", metavar="NEW.json")

    watch_parser = commands.add_parser(
        "watch", help="print what a running probe server receives from now on (wslab up, the compose stack)"
    )
    watch_parser.add_argument(
        "--control",
        default="127.0.0.1:18000",
        metavar="HOST:PORT",
        help="its control channel, which wslab up prints (default: the compose stack's 127.0.0.1:18000)",
    )
    watch_parser.add_argument(
        "--history", action="store_true", help="first replay what it received before watch started"
    )

    compose_parser = commands.add_parser(
        "compose-file", help="print (or --write, --check) docker-compose.yml and its offline override"
    )
    compose_mode = compose_parser.add_mutually_exclusive_group()
    compose_mode.add_argument("--write", action="store_true")
    compose_mode.add_argument("--check", action="store_true")

    schema_parser = commands.add_parser(
        "schema", help="print (or --write, --check) the JSON Schema of results files, made from the records"
    )
    schema_mode = schema_parser.add_mutually_exclusive_group()
    schema_mode.add_argument("--write", action="store_true")
    schema_mode.add_argument("--check", action="store_true")

    list_parser = commands.add_parser("list", help="list topologies and scenarios")
    list_parser.add_argument("--scenarios", "-s", action="append", metavar="PATH")

    validate_parser = commands.add_parser("validate", help="check scenario files")
    validate_parser.add_argument("paths", nargs="*", metavar="PATH")
    return parser


def _positive(kind: type[int] | type[float]) -> Any:
    """An argparse type: a number above zero (``--concurrency 0`` would wait for ever)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
        return value

    return parse


def _width() -> int | None:
    """The report's width: the terminal's, else COLUMNS (piped output, a CI log), else 100."""
    if sys.stdout.isatty():
        return None
    columns = os.environ.get("COLUMNS", "")
    return max(40, min(int(columns), 1000)) if columns.isdigit() else 100


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["up"] and "--detach" in given:
        # Before containment: the lab it starts is meant to outlive this command (and is
        # contained in its own right); a mistake in the arguments still exits 2 here.
        args = build_parser().parse_args(given)
        from .commands.warm_lab import detach_command

        return _reported(lambda: detach_command(given, args))
    # Nothing this command starts may outlive it, even after kill -9: from here on
    # this is a contained child process (lab/containment.py). Keep it first.
    containment.enter(argv)
    argv = given
    if argv[:1] == ["probe-server"]:
        from .probe.standalone import main as serve_standalone

        return serve_standalone(argv[1:], prog="wslab probe-server")
    args = build_parser().parse_args(argv)
    console = Console(width=_width())
    return _reported(lambda: command(args.command)(args, console))


def _reported(command: Callable[[], int]) -> int:
    """Run a command; every way it can end is one line on stderr and an exit code."""
    try:
        code = command()
        sys.stdout.flush()  # here, where a closed pipe can still be handled below
        return code
    except WslabError as error:
        # An error may quote a file or a server's answer: shown escaped (wslab/probe/text.py).
        print(printable(f"wslab: {error.label}: {error}", multiline=True), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("wslab: interrupted; everything it started is stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (| head): say nothing more, keep Python's exit from writing, and
        # exit 1 as rich does when its own output meets a closed pipe (Console.on_broken_pipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as error:  # a bug: still one line, unless WSLAB_DEBUG asks for the traceback
        if os.environ.get("WSLAB_DEBUG"):
            raise
        print(
            f"wslab: internal error: {type(error).__name__}: {error} "
            "(a bug in wslab: WSLAB_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_LAB
