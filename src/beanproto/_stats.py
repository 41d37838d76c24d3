"""The YAML subset of ``OK <bytes>`` replies, parsed without a YAML library.

beanstalkd writes two shapes (protocol sections "stats-job", "stats-tube",
"stats", "list-tubes", "list-tubes-watched")::

    ---                         ---
    key: value                  - name
    key: value                  - name

beanstalkd 1.12 quotes a few strings (``version: "1.12"``); 1.13 quotes
every string. Both parse the same.

Each key has the type greenstalk 2.1.1 declares for it in its ``Stats``,
``StatsJob`` and ``StatsTube`` TypedDicts, chosen from the key, never guessed
from the value: counters are ``int``; ``draining`` is the text ``"true"`` or
``"false"``; ``rusage-utime`` and ``rusage-stime`` are the server's decimal
text; names, ``version``, ``hostname``, ``os``, ``platform`` and the server
``id`` stay ``str`` even when they are all digits (a tube named ``123`` stays
``"123"``). The values are still checked: ``draining`` must be one of its two
words and ``rusage-*`` a decimal number, or the reply is a protocol error.
:func:`rich_stats` gives ``bool`` and ``float`` for those three keys to code
that prefers them, from the parsed dict (no second parse).

A key the schema does not know (a newer server's) is read as YAML and
greenstalk read it: an unquoted integer is an ``int``, anything else (quoted,
or not an integer) a ``str``. A new counter is therefore an ``int``, and with
1.13's quoting a new string is always a ``str``.

The parse is linear in the document. The server writes its statistics with a
fixed layout, so the layout of a document that looks like the server's (a
few dozen keys, a few KiB) is learnt, once per kind of document, and later
replies of that layout are read by one regular expression. A document that
does not look like the server's is parsed line by line and never learnt.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from typing import Literal, NamedTuple, TypedDict, cast, get_args

from ._events import StatValue
from ._validate import name_error
from .errors import RemoteProtocolError

__all__ = [
    "Stats",
    "StatsJob",
    "StatsTube",
    "parse_stats",
    "parse_stats_job",
    "parse_stats_tube",
    "parse_list",
    "rich_stats",
    "LEARN_MAX_BYTES",
    "LEARN_MAX_UNKNOWN_KEYS",
]

Stats = TypedDict(
    "Stats",
    {
        "current-jobs-urgent": int,
        "current-jobs-ready": int,
        "current-jobs-reserved": int,
        "current-jobs-delayed": int,
        "current-jobs-buried": int,
        "cmd-put": int,
        "cmd-peek": int,
        "cmd-peek-ready": int,
        "cmd-peek-delayed": int,
        "cmd-peek-buried": int,
        "cmd-reserve": int,
        "cmd-reserve-with-timeout": int,
        "cmd-touch": int,
        "cmd-use": int,
        "cmd-watch": int,
        "cmd-ignore": int,
        "cmd-delete": int,
        "cmd-release": int,
        "cmd-bury": int,
        "cmd-kick": int,
        "cmd-stats": int,
        "cmd-stats-job": int,
        "cmd-stats-tube": int,
        "cmd-list-tubes": int,
        "cmd-list-tube-used": int,
        "cmd-list-tubes-watched": int,
        "cmd-pause-tube": int,
        "job-timeouts": int,
        "total-jobs": int,
        "max-job-size": int,
        "current-tubes": int,
        "current-connections": int,
        "current-producers": int,
        "current-workers": int,
        "current-waiting": int,
        "total-connections": int,
        "pid": int,
        "version": str,
        "rusage-utime": str,
        "rusage-stime": str,
        "uptime": int,
        "binlog-oldest-index": int,
        "binlog-current-index": int,
        "binlog-max-size": int,
        "binlog-records-written": int,
        "binlog-records-migrated": int,
        "draining": Literal["true", "false"],
        "id": str,
        "hostname": str,
        "os": str,
        "platform": str,
    },
    total=False,
)
"""Server statistics (``stats``), typed as greenstalk 2.1.1 declares them.
``total=False``: servers differ in keys (1.13 has some that 1.12 lacks)."""

StatsJob = TypedDict(
    "StatsJob",
    {
        "id": int,
        "tube": str,
        "state": Literal["ready", "delayed", "reserved", "buried"],
        "pri": int,
        "age": int,
        "delay": int,
        "ttr": int,
        "time-left": int,
        "file": int,
        "reserves": int,
        "timeouts": int,
        "releases": int,
        "buries": int,
        "kicks": int,
    },
    total=False,
)
"""Job statistics (``stats-job``)."""

StatsTube = TypedDict(
    "StatsTube",
    {
        "name": str,
        "current-jobs-urgent": int,
        "current-jobs-ready": int,
        "current-jobs-reserved": int,
        "current-jobs-delayed": int,
        "current-jobs-buried": int,
        "total-jobs": int,
        "current-using": int,
        "current-waiting": int,
        "current-watching": int,
        "pause": int,
        "cmd-delete": int,
        "cmd-pause-tube": int,
        "pause-time-left": int,
    },
    total=False,
)
"""Tube statistics (``stats-tube``)."""

_Convert = Callable[[bytes], StatValue]

#: A document is learnt (see ``_Plan``) only if it looks like the server's:
#: beanstalkd's ``stats`` is about 1.5 KiB with some 50 keys, all known here.
LEARN_MAX_BYTES = 8192
LEARN_MAX_UNKNOWN_KEYS = 16


def _fail(what: str, raw: bytes) -> RemoteProtocolError:
    return RemoteProtocolError(f"bad YAML in OK reply: {what}: {raw[:80]!r}")


def _to_int(raw: bytes) -> int:
    digits = raw[1:] if raw[:1] == b"-" else raw
    if not digits.isdigit() or len(digits) > 20:
        raise _fail("expected an integer", raw)
    return int(raw)


def _to_decimal(raw: bytes) -> str:
    whole, dot, frac = raw.partition(b".")
    if not whole.isdigit() or (dot and not frac.isdigit()):
        raise _fail("expected a decimal number", raw)
    return raw.decode("ascii")


def _to_flag(raw: bytes) -> str:
    if raw == b"true" or raw == b"false":
        return raw.decode("ascii")
    raise _fail("expected true or false", raw)


def _to_str(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _to_scalar(raw: bytes) -> int | str:
    """An unquoted value of a key the schema does not know: an integer if it
    is one (as YAML and greenstalk read it), else text."""
    digits = raw[1:] if raw[:1] == b"-" else raw
    if digits.isdigit() and len(digits) <= 20:
        return int(raw)
    return raw.decode("utf-8", "replace")


class _Kind(NamedTuple):
    """How values of one type are read: the general converter; the
    fast-path pattern, which matches a subset of what the converter accepts
    (unquoted) and captures what it is given; and how the fast path turns a
    captured value into the converter's result, knowing the pattern already
    checked its syntax (see ``_Plan``)."""

    convert: _Convert
    pattern: bytes
    fast: Literal["int", "text", "scalar"]


# Integers: no sign in the fast pattern. Server counters never have one, and
# an optional sign costs an eighth of the match on every reply; a negative
# value still parses (the line parser reads it).
_INT = _Kind(_to_int, rb"([0-9]{1,20})", "int")
_DECIMAL = _Kind(_to_decimal, rb"([0-9]+(?:\.[0-9]+)?)", "text")
_FLAG = _Kind(_to_flag, rb"(true|false)", "text")
_STR = _Kind(_to_str, rb'([^"\n]*)', "text")
_QUOTED_STR = _Kind(_to_str, rb'"([^"\\\n]*)"', "text")
_UNKNOWN = _Kind(_to_scalar, rb'([^"\n]*)', "scalar")


class _Schema:
    """How each key of one kind of document is read, and the fast plan
    learnt from the last server-like document of that kind (one at most)."""

    __slots__ = ("kinds", "plan")

    def __init__(self, typed_dict: type, decimal: tuple[str, ...] = ()) -> None:
        self.kinds: dict[bytes, _Kind] = {}
        for key, annotation in typed_dict.__annotations__.items():
            if key in decimal:
                kind = _DECIMAL
            elif annotation is int:
                kind = _INT
            elif get_args(annotation) == ("true", "false"):
                kind = _FLAG
            else:  # str, or a Literal of names (a job's state)
                kind = _STR
            self.kinds[key.encode()] = kind
        self.plan: _Plan | None = None

    def kind(self, key: bytes, quoted: bool) -> _Kind:
        """The kind of ``key``'s value, as written (quoted or not)."""
        kind = self.kinds.get(key)
        if kind is None:
            return _QUOTED_STR if quoted else _UNKNOWN
        return _QUOTED_STR if quoted and kind is _STR else kind


_Groups = Callable[[re.Match[bytes]], tuple[bytes, ...]]


def _groups(numbers: list[int]) -> _Groups:
    """``match.group(*numbers)`` as a tuple, in one C call (``group`` gives a
    bare value for a single number, and the whole match for none)."""
    if len(numbers) > 1:
        return operator.methodcaller("group", *numbers)
    if numbers:
        number = numbers[0]
        return lambda match: (match.group(number),)
    return lambda match: ()


class _Plan:
    """A fast parser for documents with the same keys, in the same order and
    quoting, as one already parsed.

    One regular expression (which also checks every value's syntax) reads
    the whole document. Whatever the pattern does not match (a new key,
    different quoting, an escape, a bad value) goes to the general parser,
    which gives the same result or the error: each pattern accepts only
    values its converter reads the same way.

    What follows the match is arranged so that no Python code runs per key:
    a converter called per key costs some 2,000 instructions, three times
    the match over a ``stats`` reply's 50 keys. The result starts as a copy
    of a dict that already holds the keys in document order (copying its
    table costs an eighth of inserting the keys) and gets its values in two
    bulk updates: the
    integers through ``map(int, ...)``, the text decoded in one piece and
    split (the pattern having checked that a decimal or a flag is exactly
    the text its converter returns). Only keys the schema does not know go
    through their converter one by one (integer or text, decided per value).
    """

    __slots__ = (
        "regex",
        "keys",
        "template",
        "int_keys",
        "int_values",
        "text_keys",
        "text_values",
        "scalars",
    )

    def __init__(self, lines: list[tuple[bytes, bool]], schema: _Schema) -> None:
        parts = [b"---\n"]
        self.keys = tuple(key.decode("ascii", "replace") for key, _ in lines)
        self.template: dict[str, StatValue] = dict.fromkeys(self.keys, 0)
        groups: dict[str, list[int]] = {"int": [], "text": [], "scalar": []}
        for position, (key, quoted) in enumerate(lines):
            kind = schema.kind(key, quoted)
            pattern = kind.pattern
            if quoted and kind is not _QUOTED_STR:  # a number or flag in quotes
                pattern = b'"' + pattern + b'"'
            parts.append(re.escape(key) + b": " + pattern + b"\n")
            groups[kind.fast].append(position + 1)  # one group per line
        self.regex = re.compile(b"".join(parts))
        self.int_keys = tuple(self.keys[n - 1] for n in groups["int"])
        self.int_values = _groups(groups["int"])
        self.text_keys = tuple(self.keys[n - 1] for n in groups["text"])
        self.text_values = _groups(groups["text"])
        self.scalars = tuple((self.keys[n - 1], n) for n in groups["scalar"])

    def parse(self, body: bytes) -> dict[str, StatValue] | None:
        match = self.regex.fullmatch(body)
        if match is None:
            return None
        out = self.template.copy()
        # Each zip pairs keys with the values of the same groups, so the
        # lengths match; strict=True would add some 3 % to the parse (3.11).
        out.update(zip(self.int_keys, map(int, self.int_values(match))))  # noqa: B905
        if self.text_keys:
            # One decode for all the text: no pattern lets a value hold a
            # newline, and an invalid UTF-8 sequence never takes in the ASCII
            # newline after it, so this is each value decoded on its own (as
            # ``_to_str`` does).
            text = b"\n".join(self.text_values(match)).decode("utf-8", "replace")
            out.update(zip(self.text_keys, text.split("\n")))  # noqa: B905
        for key, number in self.scalars:
            out[key] = _to_scalar(match.group(number))
        return out


_STATS = _Schema(Stats, decimal=("rusage-utime", "rusage-stime"))
_STATS_JOB = _Schema(StatsJob)
_STATS_TUBE = _Schema(StatsTube)


def _unquote(raw: bytes) -> tuple[bytes, bool]:
    """Strip YAML double quotes (1.13 style), undoing ``\\"`` and ``\\\\``."""
    if len(raw) >= 2 and raw[0] == 0x22 and raw[-1] == 0x22:
        inner = raw[1:-1]
        if b"\\" in inner:
            inner = inner.replace(b"\\\\", b"\x00").replace(b'\\"', b'"').replace(b"\x00", b"\\")
        return inner, True
    return raw, False


def _lines(body: bytes) -> list[bytes]:
    if not body.startswith(b"---\n"):
        raise _fail("document does not start with ---", body)
    if not body.endswith(b"\n"):
        raise _fail("document does not end with a newline", body[-80:])
    return [line for line in body[4:-1].split(b"\n") if line]


def _parse_lines(
    body: bytes, schema: _Schema, shape: list[tuple[bytes, bool]] | None = None
) -> tuple[dict[str, StatValue], int]:
    """The general parser: every line on its own, any order, any quoting.

    It defines what a document means (a learnt ``_Plan`` must agree with
    it, and the tests hold it to that). Each line's key and quoting are
    appended to ``shape``, if given, to learn the layout from. Returns the
    data and how many of its keys the schema does not know.
    """
    out: dict[str, StatValue] = {}
    unknown = 0
    kinds = schema.kinds
    for line in _lines(body):
        key, sep, raw = line.partition(b": ")
        if not sep or not key:
            raise _fail("expected 'key: value'", line)
        value, quoted = _unquote(raw)
        name = key.decode("ascii", "replace")
        if name in out:
            raise _fail("duplicate key", line)
        kind = kinds.get(key)
        if kind is None:
            unknown += 1
            out[name] = _to_str(value) if quoted else _to_scalar(value)
        else:
            out[name] = kind.convert(value)
        if shape is not None:
            shape.append((key, quoted))
    return out, unknown


def _parse_dict(body: bytes, schema: _Schema) -> dict[str, StatValue]:
    plan = schema.plan
    if plan is not None:
        fast = plan.parse(body)
        if fast is not None:
            return fast
    # The layout is kept only while the document may still be learnt.
    shape: list[tuple[bytes, bool]] | None = [] if len(body) <= LEARN_MAX_BYTES else None
    out, unknown = _parse_lines(body, schema, shape)
    if shape is not None and unknown <= LEARN_MAX_UNKNOWN_KEYS:
        # Learn this layout, if the fast parser reads this very document the same.
        candidate = _Plan(shape, schema)
        if candidate.parse(body) == out:
            schema.plan = candidate
    return out


def rich_stats(stats: Mapping[str, object]) -> dict[str, StatValue]:
    """A copy of parsed statistics with ``draining`` as a ``bool`` and
    ``rusage-utime`` / ``rusage-stime`` as ``float``.

    The clients return greenstalk's types (the server's text for these
    keys); this is for code that prefers Python's. It converts the parsed
    dict, so it costs three look-ups, not a second parse.
    """
    out = cast("dict[str, StatValue]", dict(stats))
    draining = out.get("draining")
    if isinstance(draining, str):
        out["draining"] = draining == "true"
    for key in ("rusage-utime", "rusage-stime"):
        value = out.get(key)
        if isinstance(value, str):
            out[key] = float(value)
    return out


def parse_stats(body: bytes) -> dict[str, StatValue]:
    """Parse the YAML of a ``stats`` reply."""
    return _parse_dict(body, _STATS)


def parse_stats_job(body: bytes) -> dict[str, StatValue]:
    """Parse the YAML of a ``stats-job`` reply."""
    return _parse_dict(body, _STATS_JOB)


def parse_stats_tube(body: bytes) -> dict[str, StatValue]:
    """Parse the YAML of a ``stats-tube`` reply."""
    return _parse_dict(body, _STATS_TUBE)


def parse_list(body: bytes) -> list[str]:
    """Parse the YAML of a ``list-tubes`` or ``list-tubes-watched`` reply."""
    out: list[str] = []
    for line in _lines(body):
        if not line.startswith(b"- "):
            raise _fail("expected '- name'", line)
        value, _ = _unquote(line[2:])
        problem = name_error(value)
        if problem is not None:
            raise _fail(f"tube name {problem}", line)
        out.append(value.decode("ascii"))
    return out
