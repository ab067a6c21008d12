"""pytest plugin: your app behind the lab's topologies, one test per topology.

Installed with wslab (a ``pytest11`` entry point) and idle until a test asks
for one of its fixtures:

- ``wslab_url``: the ws:// URL of one topology in front of your app; a test that
  uses it runs once per topology given with ``--wslab-topology`` (repeatable; a
  name, ``all``, a role such as ``platform``, or a first word such as ``replit``;
  default ``direct``), its test id naming the topology.
- ``wslab_received``: a callable returning what your app received (through the
  recording tap) on the connections this test opened: ``wslab_received()``.
- ``wslab_lab``: the session's :class:`wslab.session.Lab` itself.

Your app is ``--wslab-app CMD`` (started once per session in pytest's rootdir,
with PORT and HOST=127.0.0.1 set) or ``--wslab-upstream HOST:PORT`` (already running), or the
ini options ``wslab_app``, ``wslab_upstream`` and ``wslab_topologies``. The lab
starts at the first test that needs it and stops with the session.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import FrameType

    from .records import Connection
    from .session import Lab

DEFAULT_TOPOLOGIES = ["direct"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wslab", "wslab: your WebSocket app behind real proxies")
    group.addoption(
        "--wslab-topology",
        action="append",
        default=[],
        metavar="NAME",
        help="run wslab_url tests through this topology (repeatable; all, a role such as platform, "
        "or a first word such as replit; default: direct)",
    )
    group.addoption("--wslab-app", metavar="CMD", help="your server: a shell command given PORT and HOST")
    group.addoption("--wslab-upstream", metavar="HOST:PORT", help="your server, already running on loopback")
    parser.addini("wslab_topologies", "topologies for wslab_url tests (one per line)", type="linelist")
    parser.addini("wslab_app", "your server: a shell command given PORT and HOST")
    parser.addini("wslab_upstream", "your server, already running: HOST:PORT")


def _topologies(config: pytest.Config) -> list[str]:
    from .topology import select_topologies

    asked = config.getoption("wslab_topology") or config.getini("wslab_topologies") or DEFAULT_TOPOLOGIES
    try:
        return [topology.name for topology in select_topologies(asked)]
    except Exception as error:  # a UsageError, said once as a usage error
        raise pytest.UsageError(f"wslab: {error}") from None


def pytest_configure(config: pytest.Config) -> None:
    """Topologies given on the command line or in the ini file are checked at once: a typo is a
    usage error, before any test runs."""
    if config.getoption("wslab_topology") or config.getini("wslab_topologies"):
        _topologies(config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"wslab_url", "wslab_received"} & set(metafunc.fixturenames):
        names = _topologies(metafunc.config)
        metafunc.parametrize("wslab_topology", names, ids=names, scope="session")


_terminated = False
"""Whether a SIGTERM ended this session (its exit status is then 143, as a killed process's)."""


def end_session_on_sigterm() -> Callable[[], None]:
    """Make a SIGTERM (a CI job's time limit, ``timeout``, ``kill``) end the session as Ctrl-C
    does, with every fixture's teardown: by default the interpreter dies at once, and the
    proxies' workers (nginx's, Apache's) outlive it. The SIGTERM is handed to the SIGINT handler
    in force, so that an ``asyncio.run`` in progress cancels its task (its ``finally`` blocks
    stop what it started) rather than being cut wherever it was. Later SIGTERMs are ignored:
    nothing cuts the teardown short (it is bounded). Left alone where SIGTERM already has a
    handler, or off the main thread. Returns what undoes it."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None

    def terminate(signum: int, frame: FrameType | None) -> None:
        global _terminated
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _terminated = True
        interrupt = signal.getsignal(signal.SIGINT)
        if not callable(interrupt):
            raise KeyboardInterrupt
        interrupt(signal.SIGINT, frame)

    signal.signal(signal.SIGTERM, terminate)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    if _terminated:
        session.exitstatus = 128 + signal.SIGTERM
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("wslab: SIGTERM ended the session as Ctrl-C does; its labs are stopped")


@pytest.fixture(scope="session")
def wslab_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The session's lab: every asked topology in front of your app, stopped with the session."""
    from .app import AppSpec
    from .commands.common import parse_upstream
    from .errors import WslabError
    from .session import Lab

    config = request.config
    command = config.getoption("wslab_app") or config.getini("wslab_app") or None
    upstream = config.getoption("wslab_upstream") or config.getini("wslab_upstream") or None
    restore_sigterm = end_session_on_sigterm()
    try:
        try:
            app = (
                AppSpec(command=command, upstream=parse_upstream(upstream), cwd=config.rootpath)
                if command or upstream
                else None
            )
            lab = Lab(_topologies(config), app).start()
        except WslabError as error:
            pytest.fail(f"wslab: {error}", pytrace=False)
        try:
            yield lab
        finally:
            lab.stop()
    finally:
        restore_sigterm()


@pytest.fixture
def wslab_url(wslab_lab: Lab, wslab_topology: str) -> str:
    """The ws:// URL of this test's topology, in front of your app."""
    from .errors import WslabError

    try:
        return wslab_lab.url(wslab_topology)
    except WslabError as error:
        pytest.fail(f"wslab: {error}", pytrace=False)


@pytest.fixture
def wslab_received(wslab_lab: Lab, wslab_topology: str) -> Callable[..., list[Connection]]:
    """``wslab_received(settle=0.2)``: what your app received behind this test's topology on the
    connections opened since the test started (request heads exactly as the proxy sent them,
    the app's answers, how upgraded connections closed)."""
    started = time.time()

    def received(settle: float = 0.2) -> list[Connection]:
        return wslab_lab.received(wslab_topology, since=started, settle=settle)

    return received
