"""The lab as a library: topologies in front of your app, for tests and scripts.

:class:`Lab` starts the chosen topologies on the local backend, with your app
behind each one through the recording tap (or the lab's probe server when no
app is given), on an event loop of its own in a background thread, so that
synchronous code (pytest, a script) can use it::

    with Lab(["replit", "nginx-websocket"], AppSpec(command="python app.py")) as lab:
        url = lab.url("replit-autoscale")          # ws://127.0.0.1:PORT/
        ...                                        # connect with any client
        for connection in lab.received("replit-autoscale", since=started):
            print(connection.raw_head)

The pytest plugin (:mod:`wslab.pytest_plugin`) is built on it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .app import AppSpec
from .backends import READY, Deployment, StackOptions
from .backends.local import LocalBackend
from .errors import LabFailure, UsageError
from .records import Connection
from .run_folders import TemporaryRunFolder
from .topology import select_topologies

START_TIMEOUT = 120.0
"""Seconds the topologies (and the app) have to come up."""

Result = TypeVar("Result")


class Lab:
    """Topologies in front of your app, running until :meth:`stop` (or the ``with`` block ends)."""

    def __init__(
        self,
        topologies: Iterable[str] | None = None,
        app: AppSpec | None = None,
        run_dir: Path | None = None,
        options: StackOptions | None = None,
    ) -> None:
        self.topologies = select_topologies(list(topologies or []) or ["direct"])
        self.app = app
        self._temporary = None if run_dir is not None else TemporaryRunFolder()
        self.run_dir = Path(run_dir) if run_dir is not None else self._temporary.path
        self.backend = LocalBackend(self.run_dir, options or StackOptions(), app)
        self.deployments: dict[str, Deployment] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wslab", daemon=True)

    def _call(self, coroutine: Coroutine[Any, Any, Result], timeout: float) -> Result:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except BaseException:
            # Interrupted (Ctrl-C, the plugin's SIGTERM) or out of time: the coroutine must not go
            # on starting processes while stop() takes the lab down.
            future.cancel()
            raise

    def start(self) -> Lab:
        """Start the app and every topology; raises UsageError (the app) or LabFailure."""
        self._thread.start()
        try:
            self.deployments = self._call(self.backend.start(self.topologies), START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def deployment(self, topology: str) -> Deployment:
        if topology not in self.deployments:
            raise UsageError(
                f"{topology} is not one of this lab's topologies ({', '.join(self.deployments)})"
            )
        return self.deployments[topology]

    def url(self, topology: str, path: str = "/") -> str:
        """The ws:// URL of ``topology``; raises LabFailure if it is not running (its detail says why)."""
        deployment = self.deployment(topology)
        if deployment.status != READY or deployment.endpoint is None:
            raise LabFailure(f"{topology} is {deployment.status}: {deployment.detail}")
        return deployment.endpoint.ws_url(path)

    def received(self, topology: str, since: float = 0.0, settle: float = 0.2) -> list[Connection]:
        """What reached the server (your app, through the tap) behind ``topology`` on connections
        opened since ``since`` (UNIX time), once ``settle`` seconds have passed for the last
        reports; each with how it closed, for upgraded ones that did."""
        self.deployment(topology)
        time.sleep(settle)
        feed = self.backend.feed
        return [
            seen.view(seen.connection.cell, feed.closings.get(seen.key))
            for seen in list(feed.observed)
            if seen.connection.listener == topology and seen.connection.opened_at >= since
        ]

    def stop(self) -> None:
        """Stop everything the lab started; remove its run folder unless one was given."""
        if self._thread.is_alive():
            try:
                self._call(self.backend.stop(), 60)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(10)
        if self._temporary is not None:
            self._temporary.remove()

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
