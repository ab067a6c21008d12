"""Read one user-written YAML file safely: bounded, strict, and with a line for every value.

The lab reads YAML that users write (``scenarios/*.yaml``, ``compose/<topology>/topology.yaml``).
:func:`load_yaml` is the one way to read such a file. It returns a :class:`Document` whose
``data`` is plain JSON-compatible Python and whose ``lines`` map every JSON path to its line, or it
raises :class:`YamlInputError`, whose ``str()`` is one line, ``FILE:LINE: message`` (``FILE:
message`` when no line applies). It never raises anything else for a bad file, never reads more
than ``max_bytes + 1`` bytes, never blocks on a FIFO or device, and never constructs an alias bomb:
the file is read from parser events, and every limit is checked as each event arrives.

What is refused, each with its line:

- anything that is not a regular file (directory, FIFO, device, including through a symlink),
  files larger than ``max_bytes``, empty files, and files holding more than one document;
- bytes that are not UTF-8 (a UTF-8 byte order mark at the very start is fine);
- control characters other than TAB, LF and CR-before-LF, anywhere in the file, and the YAML 1.1
  line breaks U+0085, U+2028 and U+2029 (they would make YAML's lines disagree with the file's);
  a string may not hold one either through a double-quoted escape (``"\\0"``, ``"\\e"``, ``"\\r"``);
  LF and TAB stay allowed in strings: folded and literal block scalars are made of them;
- anchors, aliases and merge keys (``&a``, ``*a``, ``<<``);
- nesting deeper than ``max_depth`` collections, more than ``max_nodes`` keys and values;
- duplicate keys (naming the first one's line), keys that are not strings (``1:``, ``null:``,
  ``yes:``, ``? [a]``: quote them);
- explicit tags other than ``!!str``, ``!!int``, ``!!float``, ``!!bool``, ``!!null`` on a scalar
  that fits them, ``!!seq`` on a sequence and ``!!map`` on a mapping;
- floats that are not finite (``.inf``, ``-.Inf``, ``.nan``, ``1.0e+999``), integers beyond
  ±(2**53 - 1) (every JSON reader holds those exactly), and number literals longer than
  100 characters (so ``10**100000`` written out costs nothing).

Everything else means what :func:`yaml.safe_load` makes of it (YAML 1.1: ``yes`` is ``True``,
``017`` is octal, ``0x1F`` hex, ``1:30`` is 90), with one exception: a timestamp such as
``2024-05-01`` or ``2024-05-01 10:00:00Z`` stays the string written, so the data stays
JSON-compatible. The libyaml C parser is used when PyYAML has it; the pure Python one otherwise
(same results, about eight times slower: some 1.5 s for the costliest 1 MiB file, 0.2 s with libyaml).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import stat
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

__all__ = ["Document", "JsonPath", "YamlInputError", "kept_parsed", "load_yaml"]

JsonPath = tuple[str | int, ...]
"""Where a value sits in the data: ``("scenarios", 0, "steps", 2)``; ``()`` is the whole document."""

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer magnitude accepted: exact in a double, so in every JSON reader."""

MAX_NUMBER_CHARS = 100
"""Longer int or float literals are refused before any conversion."""

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""The event source: libyaml's parser when PyYAML was built with it (tests may swap it)."""

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + name for name in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP = _TAG + "seq", _TAG + "map"
_TIMESTAMP, _MERGE, _VALUE = _TAG + "timestamp", _TAG + "merge", _TAG + "value"
_SCALAR_TAGS = {_STR, _INT, _FLOAT, _BOOL, _NULL}
_ALLOWED_TAGS = "only !!str, !!int, !!float, !!bool, !!null, !!seq and !!map are"

_BOM = "\ufeff"
# Refused anywhere in the file: C0 controls but TAB/LF/CR, DEL, C1 controls (NEL among them),
# the YAML 1.1 line and paragraph separators, a BOM past the start, the noncharacters U+FFFE/FFFF,
# and a CR that does not end a line.
_BAD_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]|\r(?!\n)")
# Refused in a parsed string (where only escapes can bring them): the same, any CR, and the lone
# surrogates the pure Python parser makes of "\uD800" (libyaml refuses that escape itself).
_BAD_IN_STRING = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")

_BOOLS = {"yes": True, "true": True, "on": True, "no": False, "false": False, "off": False}


class YamlInputError(InputError):
    """A YAML file that cannot be used: which file, which line (if one applies) and what is wrong.

    ``str()`` is a single line, ``FILE:LINE: message`` or ``FILE: message``.
    """


@dataclass(frozen=True)
class Document:
    """A loaded YAML file.

    ``data`` is JSON-compatible: dicts with str keys, lists, str, int, finite float, bool, None.
    ``lines`` maps the JSON path of every value to its 1-based line; for a mapping entry the line
    is the key's own line (an error about a key reads best there), and the entry's children keep
    their own lines. ``()`` is the line where the top-level value starts.
    """

    path: str
    data: Any
    lines: Mapping[JsonPath, int]
    digest: str = ""
    """A digest of the file's bytes: the same digest, the same document."""

    def line_of(self, where: Iterable[str | int]) -> int | None:
        """The line of ``where`` (any iterable of keys and indexes, e.g. a jsonschema error's
        ``absolute_path``), or of its nearest ancestor that has one; None if none has."""
        path = tuple(where)
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path)


def load_yaml(
    path: Path | str, *, max_bytes: int = 1 << 20, max_depth: int = 32, max_nodes: int = 100_000
) -> Document:
    """Read, check and load the single YAML document in ``path``.

    ``max_bytes`` bounds the file size, ``max_depth`` the nesting of sequences and mappings (the
    top-level collection is level 1), ``max_nodes`` the number of keys, values and items together.
    Raises :class:`YamlInputError` for anything wrong with the file, and nothing else (but
    KeyboardInterrupt and other signals' exceptions pass through, promptly).
    """
    raw = _read(path, max_bytes)
    digest = hashlib.blake2b(raw, digest_size=16).hexdigest()
    parsed = _PARSED.get((digest, max_depth, max_nodes))
    if parsed is None:
        parsed = _Builder(path, _decode(path, raw), max_depth, max_nodes).build()
        if _keeping:
            _PARSED[digest, max_depth, max_nodes] = parsed
    return Document(str(path), *parsed, digest)


_PARSED: dict[tuple[str, int, int], tuple[Any, dict[JsonPath, int]]] = {}
"""Documents parsed inside :func:`kept_parsed`, by the digest of their bytes (and the bounds they
were parsed within)."""
_keeping = False


@contextlib.contextmanager
def kept_parsed() -> Iterator[None]:
    """Keep what :func:`load_yaml` parses in this block for every later call in this process and
    its forks: a warm lab's fork server parses the shipped files once, and each run it forks
    re-reads the files but parses only what changed (lab/forkserver.py). Meant for a process that
    forks: a forked run may change a document it was given, which no later run would see."""
    global _keeping
    _keeping = True
    try:
        yield
    finally:
        _keeping = False


def _read(path: Path | str, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes of a regular file, without ever blocking on a FIFO or device."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise YamlInputError(path, None, f"cannot read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise YamlInputError(path, None, f"not a regular file ({_describe(path, info.st_mode)})")
        if info.st_size > max_bytes:
            raise YamlInputError(path, None, f"larger than {max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise YamlInputError(path, None, f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > max_bytes:  # the file grew after fstat, or lied about its size (/proc, /sys)
        raise YamlInputError(path, None, f"larger than {max_bytes} bytes")
    return b"".join(chunks)


_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _describe(path: Path | str, mode: int) -> str:
    """What a non-regular file is, naming where a symlink led: "/dev/zero is a character device"."""
    kind = _KINDS.get(stat.S_IFMT(mode), "not a file")
    target = os.path.realpath(path)
    return f"{target} is {kind}" if target != os.path.abspath(path) else kind


def _decode(path: Path | str, raw: bytes) -> str:
    """Strict UTF-8 without a BOM, free of the characters YAML or the lab should never see."""
    if not raw:
        raise YamlInputError(path, None, "empty file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        why = "" if exc.reason == "invalid start byte" else f" ({exc.reason})"
        raise YamlInputError(path, line, f"byte 0x{raw[exc.start]:02x} is not UTF-8{why}") from None
    text = text.removeprefix(_BOM)
    bad = _BAD_IN_TEXT.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise YamlInputError(path, line, _character_problem(bad.group()[0], ""))
    return text


def _character_problem(char: str, where: str) -> str:
    """Why ``char`` is refused; ``where`` is "" in the file's text, or " in a string" after escapes."""
    code = f"U+{ord(char):04X}"
    if unicodedata.category(char) == "Cc":
        problem = f"control character {code} is not allowed{where}"
        return problem + " (a CR must be followed by LF)" if char == "\r" and not where else problem
    if char == _BOM and not where:
        return f"byte order mark {code} is only allowed at the start of the file"
    name = "a lone surrogate" if unicodedata.category(char) == "Cs" else "a noncharacter"
    return f"character {code} ({unicodedata.name(char, name)}) is not allowed{where}"


def _tag_name(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _shown(text: str) -> str:
    """``text`` fit for a one-line message: escaped if it holds unprintable characters, cut if long."""
    shown = text if text.isprintable() else repr(text)[1:-1]
    return shown if len(shown) <= 60 else f"{shown[:40]}... ({len(text)} characters)"


def _quoted(text: str) -> str:
    return f"'{_shown(text)}'"


@dataclass(slots=True)
class _Frame:
    """An open sequence or mapping while its events arrive."""

    value: list[Any] | dict[str, Any]
    path: JsonPath
    key: str | None  # in a mapping: the key whose value comes next, if any
    is_mapping: bool


def _line(event: Any) -> int:
    return event.start_mark.line + 1


class _Builder:
    """Build the data and line map from parser events, checking every limit as events arrive."""

    def __init__(self, path: Path | str, text: str, max_depth: int, max_nodes: int) -> None:
        self.path = path
        self.text = text
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.nodes = 0
        self.lines: dict[JsonPath, int] = {}

    def fail(self, line: int | None, message: str) -> YamlInputError:
        return YamlInputError(self.path, line, message)

    def build(self) -> tuple[Any, dict[JsonPath, int]]:
        loader = _Loader(self.text)
        try:
            return self._walk(loader)
        except yaml.MarkedYAMLError as exc:
            raise self._syntax_error(exc) from None
        except yaml.YAMLError as exc:  # unmarked: not expected once the text is checked
            raise self.fail(None, f"invalid YAML: {exc}".splitlines()[0]) from None
        finally:
            loader.dispose()

    def _syntax_error(self, exc: yaml.MarkedYAMLError) -> YamlInputError:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        if line is not None:
            # libyaml says only "found character that cannot start any token" for a tab.
            text_line = self.text.split("\n", line)[line - 1] if line <= self.text.count("\n") + 1 else ""
            indent = text_line[: len(text_line) - len(text_line.lstrip(" \t"))]
            if "\t" in indent:
                return self.fail(line, "invalid YAML: a tab indents this line; YAML indents with spaces only")
        message = f"invalid YAML: {exc.problem or exc.context or 'syntax error'}"
        if exc.problem and exc.context:
            context_line = exc.context_mark.line + 1 if exc.context_mark else None
            where = f" started at line {context_line}" if context_line and context_line != line else ""
            message += f" ({exc.context}{where})"
        return self.fail(line, message)

    def _walk(self, loader: Any) -> tuple[Any, dict[JsonPath, int]]:
        """Consume events up to the end of the stream; the hot loop, kept flat for speed."""
        stack: list[_Frame] = []
        lines = self.lines
        documents = 0
        root: Any = None
        get_event = loader.get_event
        while True:
            event = get_event()
            kind = event.__class__
            if kind is _MappingEnd or kind is _SequenceEnd:
                stack.pop()
                continue
            if kind is not _Scalar and kind is not _MappingStart and kind is not _SequenceStart:
                if kind is yaml.StreamEndEvent:
                    break
                if kind is yaml.DocumentStartEvent:
                    documents += 1
                    if documents > 1:
                        raise self.fail(_line(event), "more than one document (a second one starts here)")
                elif kind is yaml.AliasEvent:
                    raise self.fail(
                        _line(event), f"aliases and anchors are not allowed ({_quoted('*' + event.anchor)})"
                    )
                continue  # StreamStart, DocumentEnd
            line = event.start_mark.line + 1
            if event.anchor is not None:
                raise self.fail(line, f"aliases and anchors are not allowed ({_quoted('&' + event.anchor)})")
            self.nodes += 1
            if self.nodes > self.max_nodes:
                raise self.fail(line, f"more than {self.max_nodes} nodes (keys, values and items)")
            parent: _Frame | None = None
            if not stack:
                where: JsonPath = ()
                lines[where] = line
            else:
                parent = stack[-1]
                if parent.key is None and parent.is_mapping:
                    parent.key = self._key(parent, event, line)
                    continue
                if parent.is_mapping:
                    where = (*parent.path, parent.key)  # its line is the key's, set in _key
                else:
                    where = (*parent.path, len(parent.value))
                    lines[where] = line
            if kind is _Scalar:
                value: Any = self._scalar(event, line)
            else:
                if len(stack) >= self.max_depth:
                    raise self.fail(line, f"nesting deeper than {self.max_depth} levels")
                value = self._collection(event, line)
                stack.append(_Frame(value, where, None, kind is _MappingStart))
            if parent is None:
                root = value
            elif isinstance(parent.value, dict):
                assert parent.key is not None
                parent.value[parent.key] = value
                parent.key = None
            else:
                parent.value.append(value)
        if documents == 0:
            raise self.fail(None, "empty file: no YAML document, only blank lines or comments")
        return root, lines

    def _key(self, frame: _Frame, event: Any, line: int) -> str:
        """Take a mapping key: a string, not seen before in this mapping."""
        if event.__class__ is not _Scalar:
            kind = "a sequence" if event.__class__ is _SequenceStart else "a mapping"
            raise self.fail(line, f"mapping key must be a string, not {kind}")
        tag = self._scalar_tag(event, line)
        if tag == _MERGE:
            raise self.fail(line, "merge keys ('<<') are not allowed")
        if tag != _STR and tag != _TIMESTAMP:
            kind = {_INT: "an integer", _FLOAT: "a float", _BOOL: "a boolean", _NULL: "null"}.get(tag, tag)
            shown = _quoted(event.value)
            raise self.fail(
                line, f"mapping key must be a string, not {kind}: {shown} (quote it to mean the text)"
            )
        key: str = event.value
        self._check_string(key, line)
        where = (*frame.path, key)
        first = self.lines.get(where)  # only this mapping's keys ever set this path
        if first is not None:
            raise self.fail(line, f"duplicate key {_quoted(key)} (first at line {first})")
        self.lines[where] = line
        return key

    def _collection(self, event: Any, line: int) -> list[Any] | dict[str, Any]:
        is_sequence = isinstance(event, yaml.SequenceStartEvent)
        expected = _SEQ if is_sequence else _MAP
        if event.tag is not None and event.tag != expected:
            kind = "a sequence" if is_sequence else "a mapping"
            raise self.fail(line, f"tag {_quoted(_tag_name(event.tag))} is not allowed on {kind}")
        return [] if is_sequence else {}

    def _scalar_tag(self, event: Any, line: int) -> str:
        """The tag of a scalar: resolved as SafeLoader would, or an allowed explicit one that fits."""
        if event.tag is None:
            return _resolve_plain(event.value) if event.implicit[0] else _STR
        if event.tag not in _SCALAR_TAGS:
            raise self.fail(line, f"tag {_quoted(_tag_name(event.tag))} is not allowed ({_ALLOWED_TAGS})")
        if event.tag != _STR:
            implied = _resolve_plain(event.value)
            if implied != event.tag and not (event.tag == _FLOAT and implied == _INT):
                raise self.fail(line, f"{_quoted(event.value)} is not a valid {_tag_name(event.tag)}")
        return event.tag

    def _scalar(self, event: Any, line: int) -> Any:
        tag = self._scalar_tag(event, line)
        value: str = event.value
        if tag in (_STR, _TIMESTAMP):
            self._check_string(value, line)
            return value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return _BOOLS[value.lower()]
        if tag == _INT:
            return self._int(value, line)
        if tag == _FLOAT:
            return self._float(value, line)
        if tag == _MERGE:
            raise self.fail(line, "merge keys ('<<') are not allowed (quote '<<' to mean the text)")
        if tag == _VALUE:
            raise self.fail(line, "a plain '=' is YAML 1.1's value key (quote it to mean the text)")
        raise self.fail(line, f"tag {_quoted(_tag_name(tag))} is not allowed")  # pragma: no cover

    def _check_string(self, value: str, line: int) -> None:
        bad = _BAD_IN_STRING.search(value)
        if bad:
            raise self.fail(line, _character_problem(bad.group(), " in a string"))

    def _int(self, literal: str, line: int) -> int:
        """An int as SafeLoader reads it (YAML 1.1: 0b, 0x, 0 octal, base 60), within ±(2**53 - 1)."""
        if len(literal) > MAX_NUMBER_CHARS:
            raise self.fail(line, f"number literal longer than {MAX_NUMBER_CHARS} characters")
        digits = literal.replace("_", "")
        sign = -1 if digits[0] == "-" else 1
        digits = digits.lstrip("+-")
        try:
            if digits.startswith("0b"):
                value = int(digits[2:], 2)
            elif digits.startswith("0x"):
                value = int(digits[2:], 16)
            elif digits.startswith("0") and digits != "0":
                value = int(digits, 8)
            elif ":" in digits:
                value = _base60(int(part) for part in digits.split(":"))
            else:
                value = int(digits)
        except ValueError:
            raise self.fail(line, f"not a valid integer: {_shown(literal)}") from None
        if value > MAX_SAFE_INTEGER:
            raise self.fail(line, f"integer out of range (beyond ±{MAX_SAFE_INTEGER}): {_shown(literal)}")
        return sign * value

    def _float(self, literal: str, line: int) -> float:
        """A float as SafeLoader reads it (base 60 too); infinities and NaN are refused."""
        if len(literal) > MAX_NUMBER_CHARS:
            raise self.fail(line, f"number literal longer than {MAX_NUMBER_CHARS} characters")
        digits = literal.replace("_", "").lower()
        sign = -1.0 if digits[0] == "-" else 1.0
        digits = digits.lstrip("+-")
        try:
            if digits in (".inf", ".nan"):
                value = math.inf
            elif ":" in digits:
                value = _base60(float(part) for part in digits.split(":"))
            else:
                value = float(digits)
        except ValueError:
            raise self.fail(line, f"not a valid float: {_shown(literal)}") from None
        if not math.isfinite(value):
            raise self.fail(line, f"not a finite number: {_shown(literal)}")
        return sign * value


def _base60(parts: Iterable[Any]) -> Any:
    """``1:30`` is 90, summed from the last part up as SafeConstructor does (same float rounding)."""
    value, base = 0, 1
    for part in reversed(list(parts)):
        value += part * base
        base *= 60
    return value


_MappingStart, _MappingEnd = yaml.MappingStartEvent, yaml.MappingEndEvent
_SequenceStart, _SequenceEnd = yaml.SequenceStartEvent, yaml.SequenceEndEvent
_Scalar = yaml.ScalarEvent

# SafeLoader's implicit resolvers (yaml.resolver.Resolver), indexed by first character as it does:
# a plain scalar whose first character starts no int, float, bool, null, timestamp, merge or value
# is a string without running any regular expression.
_WILDCARD = yaml.resolver.Resolver.yaml_implicit_resolvers.get(None, [])
_RESOLVERS = {
    first: [*resolvers, *_WILDCARD]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
    if first is not None
}


def _resolve_plain(value: str) -> str:
    """The tag SafeLoader gives a plain (unquoted, untagged) scalar."""
    for tag, regexp in _RESOLVERS.get(value[:1], _WILDCARD):
        if regexp.match(value):
            return tag
    return _STR
