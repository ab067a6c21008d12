"""What a warm lab's fork server parses once (safe_yaml.kept_parsed) and each run it forks reuses:
only for the same bytes, within the same bounds, and nothing parsed outside the block."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wslab import safe_yaml
from wslab.safe_yaml import YamlInputError, kept_parsed, load_yaml

pytestmark = pytest.mark.fast


@pytest.fixture(autouse=True)
def nothing_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safe_yaml, "_PARSED", {})


def test_a_file_parsed_in_the_block_is_not_parsed_again_while_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text("suite: s\nscenarios:\n  - id: a\n")
    with kept_parsed():
        first = load_yaml(path)
    again = load_yaml(path)
    assert again.data is first.data and again.lines == first.lines and again.digest == first.digest
    # Same size, same modification time, other bytes: read again, parsed again.
    stat = path.stat()
    path.write_text("suite: s\nscenarios:\n  - id: b\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = load_yaml(path)
    assert changed.data == {"suite": "s", "scenarios": [{"id": "b"}]} and changed.digest != first.digest


def test_only_the_block_keeps_what_it_parses(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("a: 1\n")
    assert load_yaml(path).data is not load_yaml(path).data
    with kept_parsed():
        pass
    assert load_yaml(path).data is not load_yaml(path).data


def test_a_document_kept_within_wide_bounds_is_still_refused_within_narrow_ones(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: {b: {c: {d: 1}}}\n")
    with kept_parsed():
        load_yaml(path)
    with pytest.raises(YamlInputError, match="nest"):
        load_yaml(path, max_depth=2)
    with pytest.raises(YamlInputError):
        load_yaml(path, max_bytes=5)
