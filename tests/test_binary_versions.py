"""The proxy version cache: keyed by the binary, asked again when the binary changes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from wslab.binary_versions import VersionCache, binary_key
from wslab.proxies import ProxyKind

pytestmark = pytest.mark.fast


def fake_proxy(folder: Path, version: str) -> tuple[ProxyKind, Path]:
    """A script that says its version and counts how often it was asked (in ``asked``)."""
    binary = folder / "fakeproxy"
    binary.write_text(f'#!/bin/sh\necho x >> "{folder}/asked"\necho "fakeproxy/{version}"\n')
    binary.chmod(0o755)
    kind = ProxyKind(
        name="fake",
        executable="fakeproxy",
        image="nginx:1.22",
        argv="{binary}",
        version_argv="{binary} -v",
        version_pattern=r"fakeproxy/(\S+)",
        install_hint="",
    )
    return kind, binary


def asked(folder: Path) -> int:
    path = folder / "asked"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_binary_is_asked_once_across_runs(tmp_path: Path) -> None:
    kind, binary = fake_proxy(tmp_path, "1.2.3")
    store = tmp_path / "cache" / "versions.json"

    async def one_run() -> list[str]:
        cache = VersionCache(store)
        # Several topologies of one kind start together: they share one probe.
        return list(await asyncio.gather(*(cache.version(kind, str(binary)) for _ in range(3))))

    assert asyncio.run(one_run()) == ["1.2.3"] * 3
    assert asyncio.run(one_run()) == ["1.2.3"] * 3
    assert asked(tmp_path) == 1


def test_a_changed_binary_is_asked_again(tmp_path: Path) -> None:
    kind, binary = fake_proxy(tmp_path, "1.2.3")
    store = tmp_path / "versions.json"
    assert asyncio.run(VersionCache(store).version(kind, str(binary))) == "1.2.3"
    before = binary_key(kind, str(binary))
    fake_proxy(tmp_path, "1.2.40")  # an upgrade: another size
    stat = binary.stat()
    os.utime(binary, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert binary_key(kind, str(binary)) != before
    assert asyncio.run(VersionCache(store).version(kind, str(binary))) == "1.2.40"
    assert asked(tmp_path) == 2


def test_the_key_follows_links_to_the_file(tmp_path: Path) -> None:
    kind, binary = fake_proxy(tmp_path, "1.0")
    link = tmp_path / "link"
    link.symlink_to(binary)
    assert binary_key(kind, str(link)) == binary_key(kind, str(binary))
    assert binary_key(kind, str(tmp_path / "missing")) is None


def test_unknown_is_not_remembered_and_a_broken_file_is_an_empty_cache(tmp_path: Path) -> None:
    kind, binary = fake_proxy(tmp_path, "1.0")
    store = tmp_path / "versions.json"
    store.write_text("{not json")
    cache = VersionCache(store)
    assert cache.get(kind, str(binary)) is None
    cache.put(kind, str(binary), "unknown")
    assert cache.get(kind, str(binary)) is None
    cache.put(kind, str(binary), "1.0")
    assert VersionCache(store).get(kind, str(binary)) == "1.0"
