"""The remote backend: a real deployment of the probe server (``wslab probe-server``).

There is no side channel to a remote host: what the server received comes
back through the deployment itself, on a WebSocket to ``/.wslab/report``
guarded by a token (see lab/probe/deploy.py). Everything else is the same
as for a local topology, so a real platform sits beside the emulations in
one matrix.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.client import connect

from ..endpoint import Endpoint
from ..errors import LabFailure, UsageError
from ..http2 import stream_records
from ..observations import Hello
from ..records import Connection
from ..topology import Topology
from . import READY, Deployment, StackOptions

REPORT_PATH = "/.wslab/report"


def tls_context(insecure: bool, ca_file: str | None) -> ssl.SSLContext:
    """Verification as asked: the system's CAs, a CA file, or none at all (--insecure)."""
    context = ssl.create_default_context(cafile=ca_file)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def parse_target(url: str, insecure: bool = False, ca_file: str | None = None) -> Endpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise UsageError(f"--target needs a ws:// or wss:// URL, got {url!r}")
    if parts.path not in ("", "/") or parts.query:
        raise UsageError(f"--target takes the server's root URL only, got {url!r}")
    tls = tls_context(insecure, ca_file) if parts.scheme == "wss" else None
    port = parts.port or (443 if tls else 80)
    return Endpoint(parts.hostname, port, tls=tls, name=parts.hostname)


class ReportUnreachable(Exception):
    """The report channel could not be used (the path to the server breaks WebSockets)."""


class RemoteFeed:
    """Asks the deployed probe server what it received, over its report WebSocket."""

    def __init__(self, endpoint: Endpoint, token: str) -> None:
        self.endpoint = endpoint
        self.token = token
        self.disabled = False
        self.lost: str | None = None
        """Why the report channel stopped answering after it had answered."""
        self.records_redacted = False
        """A deployed server may run another release: the runner redacts its records itself."""

    async def _ask(self, question: dict[str, Any]) -> dict[str, Any]:
        if self.disabled:
            return {"connections": []}
        kwargs: dict[str, Any] = {"ssl": self.endpoint.tls} if self.endpoint.tls else {}
        try:
            async with connect(
                self.endpoint.ws_url(REPORT_PATH),
                open_timeout=10,
                ping_interval=None,
                max_size=None,
                proxy=None,
                **kwargs,
            ) as websocket:
                await websocket.send(json.dumps({"token": self.token, **question}))
                return json.loads(await websocket.recv())
        except websockets.ConnectionClosed as closed:
            if closed.rcvd is not None and closed.rcvd.code == 4003:
                raise LabFailure("the probe server refused the report token (--token)") from None
            raise ReportUnreachable(f"report channel closed: {closed}") from None
        except (OSError, TimeoutError, websockets.InvalidHandshake) as error:
            raise ReportUnreachable(f"report channel unreachable: {error}") from None

    async def _connections(self, question: dict[str, Any]) -> list[Connection]:
        # A server of this release reports an h2c connection's streams (http2_streams): the one
        # that carried the cell asked about is its request. Raw frames (an earlier release
        # without redaction) cannot be tied to a cell here and may hold secrets: dropped.
        try:
            answer = await self._ask(question)
        except ReportUnreachable as unreachable:
            # It answered at the start: the deployment has gone since (stopped, redeployed, crashed).
            self.lost = (
                f"the target {self.endpoint.ws_url()} stopped answering its report channel: {unreachable}"
            )
            return []
        cell = question.get("cell")
        connections = []
        for record in answer.get("connections", []):
            streams = stream_records(record.get("http2_streams") or [])
            fields = {k: v for k, v in record.items() if k not in ("http2_frames", "http2_streams")}
            stream = next((s for s in streams if cell and s.cell == cell), None)
            connections.append(Connection.model_validate({**fields, "http2_request": stream}))
        return connections

    async def hello(self, timeout: float = 10.0) -> Hello:
        return Hello(str((await self._ask({"since": 0}))["websockets"]))

    async def wait_for_cell(
        self, cell: str, settle: float, expected: int = 1, listener: str | None = None
    ) -> list[Connection]:
        # The server records a handshake before answering it; a short wait lets closes land.
        await asyncio.sleep(min(settle, 0.3))
        return await self._connections({"cell": cell})

    async def in_window(
        self, listener: str, start: float, settle: float, closed_back: bool = False
    ) -> list[Connection]:
        await asyncio.sleep(settle)
        return await self._connections({"since": time.time() - start})

    async def unattributed(self, listener: str, start: float) -> list[Connection]:
        connections = await self._connections({"since": time.time() - start})
        return [connection.model_copy(update={"attributed": False}) for connection in connections]

    async def first_report(self, cell: str) -> Connection:
        """Never: the report channel is asked after the fact, not followed, and a remote target
        is not on loopback, where a second without a relayed answer would say enough. A raw step
        waits its whole timeout."""
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")

    async def stop(self) -> None:
        """Nothing to close: every question uses its own connection."""


class RemoteBackend:
    """One target URL as the only topology."""

    name = "remote"

    def __init__(
        self,
        url: str,
        token: str,
        probe: StackOptions,
        *,
        insecure: bool = False,
        ca_file: str | None = None,
        label: str = "target",
    ) -> None:
        self.url = url
        self.endpoint = parse_target(url, insecure, ca_file)
        self.feed = RemoteFeed(self.endpoint, token)
        self.time_scale = probe.time_scale
        self.websockets_version = ""
        self.topology = Topology(
            name=label,
            title=url,
            proxy="none",
            role="platform",
            port=self.endpoint.port,
            summary=f"a real deployment of wslab's probe server at {url}",
            folder=Path("."),
            platform=url,
        )

    async def start(self, topologies: list[Topology]) -> dict[str, Deployment]:
        try:
            self.websockets_version = (await self.feed.hello()).websockets
        except ReportUnreachable as unreachable:
            # A deployment that breaks WebSockets breaks the report channel too: the cells still
            # say what the client saw, the server's side stays empty.
            self.feed.disabled = True
            self.websockets_version = f"unknown ({unreachable})"
        return {self.topology.name: Deployment(self.topology, READY, self.endpoint, version="")}

    def alive(self, deployment: Deployment) -> bool:
        return True

    async def proxy_logs(self, deployments: dict[str, Deployment]) -> dict[str, str]:
        """A real platform's front end keeps its logs to itself."""
        return {}

    def failure(self) -> str | None:
        return self.feed.lost

    def app_record(self) -> None:
        """No user's app stands behind this backend's topologies."""
        return None

    async def stop(self) -> None:
        await self.feed.stop()
