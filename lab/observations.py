"""The runner's end of the probe server's side channel.

:class:`ObservationFeed` holds one control WebSocket open to the probe server
and collects what it reports. Cells find their connections by correlation id,
or, for scenarios that run alone on a topology, by listener and time window.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets
from websockets.asyncio.client import connect

from .http2 import for_cell, read_connection


class ObservationFeed:
    """Collects observation events; lets cells wait for theirs."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._connection: Any = None
        self.subscribers: list[Any] = []

    async def start(self, host: str, port: int) -> None:
        self._connection = await connect(f"ws://{host}:{port}/", ping_interval=None, max_size=None)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self._connection:
                self.add(json.loads(message))
        except websockets.ConnectionClosed:
            pass

    async def closed(self) -> None:
        """Return when the probe server closes the channel."""
        if self._task is not None:
            await asyncio.shield(self._task)

    def add(self, event: dict[str, Any]) -> None:
        event = read_connection(event)
        self.events.append(event)
        for subscriber in self.subscribers:
            subscriber(event)
        self._changed.set()
        self._changed = asyncio.Event()

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        if self._task is not None:
            await self._task

    async def _wait_change(self, deadline: float) -> bool:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return False
        try:
            await asyncio.wait_for(self._changed.wait(), remaining)
        except TimeoutError:
            return False
        return True

    async def hello(self, timeout: float = 10.0) -> dict[str, Any]:
        """The probe server's greeting (its websockets version), sent first on the channel."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            greeting = next((e for e in self.events if e["event"] == "hello"), None)
            if greeting is not None:
                return greeting
            if not await self._wait_change(deadline):
                raise TimeoutError("the probe server sent no greeting")

    async def for_cell(self, cell: str, settle: float) -> list[dict[str, Any]]:
        """Connections tagged with ``cell``, waiting up to ``settle`` s for them to report.

        Waits for at least one handshake, then for the close of every upgraded one.
        """
        deadline = asyncio.get_running_loop().time() + settle
        while True:
            connections = self._connections(
                lambda event: event.get("cell") == cell or cell in event.get("cells", ()), cell
            )
            if connections and all(c["closed"] or not c["upgraded"] for c in connections):
                return connections
            if not await self._wait_change(deadline):
                return connections

    async def in_window(self, listener: str, start: float, settle: float) -> list[dict[str, Any]]:
        """Connections opened on ``listener`` since ``start``, once ``settle`` s have passed."""
        await asyncio.sleep(settle)
        return self._connections(
            lambda event: event["listener"] == listener and event.get("opened_at", 0) >= start
        )

    async def unattributed(self, listener: str, start: float) -> list[dict[str, Any]]:
        """Connections on ``listener`` since ``start`` that carried no correlation id.

        A request the server could not read (garbage, an HTTP/2 connection whose
        frames name no cell) has none; such connections are the best evidence a
        cell whose own request never showed up has.
        """
        connections = self._connections(
            lambda event: (
                event["listener"] == listener
                and event.get("cell") is None
                and not event.get("cells")
                and event.get("opened_at", 0) >= start
            )
        )
        for connection in connections:
            connection["attributed"] = False
        return connections

    def _connections(self, match: Any, cell: str | None = None) -> list[dict[str, Any]]:
        handshakes = [e for e in self.events if e["event"] == "handshake" and match(e)]
        connections = []
        for handshake in handshakes:
            key = (handshake["listener"], handshake["conn"])
            closed = next(
                (e for e in self.events if e["event"] == "closed" and (e["listener"], e["conn"]) == key),
                None,
            )
            connection = for_cell({k: v for k, v in handshake.items() if k != "event"}, cell)
            connection["closed"] = (
                {k: closed[k] for k in ("at", "code", "reason", "closed_by")} if closed else None
            )
            connections.append(connection)
        return connections
