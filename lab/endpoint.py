"""Where a cell's client connects: a topology on loopback, or a remote target."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass


@dataclass
class Endpoint:
    """A host and port to connect to, with TLS for wss:// targets."""

    host: str
    port: int
    tls: ssl.SSLContext | None = None
    """TLS settings for wss:// targets; None for plain ws://."""
    name: str = ""
    """The host name to send (Host header, TLS server name) when it differs from ``host``."""

    @property
    def authority(self) -> str:
        default = 443 if self.tls else 80
        host = self.name or self.host
        return host if self.name and self.port == default else f"{host}:{self.port}"

    def ws_url(self, path: str = "/") -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.authority}{path}"

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP (or TLS) connection to the endpoint."""
        if self.tls is None:
            return await asyncio.open_connection(self.host, self.port)
        return await asyncio.open_connection(
            self.host, self.port, ssl=self.tls, server_hostname=self.name or self.host
        )
