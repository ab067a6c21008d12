"""Proxy versions, probed once per binary and remembered.

Asking a binary its version (``envoy --version``, ``traefik version``) costs a
process start each time, and a cold run used to ask once per topology. The
answer is a property of the file: it is cached under the binary's resolved
path, size and modification time (and the command that asked), so a replaced
or upgraded binary is asked again. Within one process, topologies of one
kind share a single probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from pathlib import Path

from .paths import CACHE
from .proxies import ProxyKind

VERSIONS_FILE = CACHE / "proxy-versions.json"
"""Where versions are remembered between runs (under $WSLAB_CACHE, default ~/.cache/wslab)."""
UNKNOWN = "unknown"


def binary_key(kind: ProxyKind, binary: str) -> str | None:
    """What identifies ``binary``'s answer: its resolved path, size, modification time and the
    version command; None if the file cannot be read (then nothing is cached)."""
    try:
        real = os.path.realpath(binary)
        stat = os.stat(real)
    except OSError:
        return None
    return f"{real}|{stat.st_size}|{stat.st_mtime_ns}|{kind.version_argv}"


class VersionCache:
    """Versions by :func:`binary_key`, kept in a JSON file; a file that is missing or unreadable
    is an empty cache, and one that cannot be written leaves the cache in memory only."""

    def __init__(self, path: Path = VERSIONS_FILE) -> None:
        self.path = path
        self._probes: dict[str, asyncio.Task[str]] = {}

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {key: value for key, value in data.items() if isinstance(value, str)}

    def get(self, kind: ProxyKind, binary: str) -> str | None:
        """The remembered version of ``binary``, or None if it was never asked in its current form."""
        key = binary_key(kind, binary)
        return None if key is None else self._read().get(key)

    def put(self, kind: ProxyKind, binary: str, version: str) -> None:
        """Remember ``binary``'s version; 'unknown' (a probe that failed) is not remembered."""
        key = binary_key(kind, binary)
        if key is None or version == UNKNOWN:
            return
        known = self._read()
        if known.get(key) == version:
            return
        known[key] = version
        # Written whole and renamed, so that a concurrent run reads either file, never half of one.
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, suffix=".tmp") as out:
                json.dump(known, out, indent=0, sort_keys=True)
            os.replace(out.name, self.path)

    async def version(self, kind: ProxyKind, binary: str) -> str:
        """``binary``'s version: remembered, or asked once (concurrent callers share the probe)."""
        key = binary_key(kind, binary) or f"{binary}|{kind.version_argv}"
        if key not in self._probes:
            self._probes[key] = asyncio.ensure_future(self._probe(kind, binary))
        return await asyncio.shield(self._probes[key])

    async def _probe(self, kind: ProxyKind, binary: str) -> str:
        remembered = self.get(kind, binary)
        if remembered is not None:
            return remembered
        version = await kind.version(binary)
        self.put(kind, binary, version)
        return version
