"""The YAML subset of ``OK <bytes>`` replies, parsed without a YAML library.

beanstalkd writes two shapes (protocol sections "stats-job", "stats-tube",
"stats", "list-tubes", "list-tubes-watched")::

    ---                         ---
    key: value                  - name
    key: value                  - name

beanstalkd 1.12 quotes a few strings (``version: "1.12"``); 1.13 quotes
every string. Both parse the same.

Each key has a fixed type, chosen from the protocol document, not guessed from
the value: counters are ``int``, ``rusage-*`` are ``float``, ``draining`` is
``bool``, and names, ``version``, ``hostname``, ``os``, ``platform`` and the
server ``id`` stay ``str`` even when they are all digits (a tube named ``123``
stays ``"123"``). Keys the schema does not know are kept, as ``str``: their
type is not known, and guessing from the value would make a key change type
from one reply to the next.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Literal, TypedDict

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
        "rusage-utime": float,
        "rusage-stime": float,
        "uptime": int,
        "binlog-oldest-index": int,
        "binlog-current-index": int,
        "binlog-max-size": int,
        "binlog-records-written": int,
        "binlog-records-migrated": int,
        "draining": bool,
        "id": str,
        "hostname": str,
        "os": str,
        "platform": str,
    },
    total=False,
)
"""Server statistics (``stats``). ``total=False``: servers differ in keys."""

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


def _fail(what: str, raw: bytes) -> RemoteProtocolError:
    return RemoteProtocolError(f"bad YAML in OK reply: {what}: {raw[:80]!r}")


def _to_int(raw: bytes) -> int:
    digits = raw[1:] if raw[:1] == b"-" else raw
    if not digits.isdigit() or len(digits) > 20:
        raise _fail("expected an integer", raw)
    return int(raw)


def _to_float(raw: bytes) -> float:
    whole, dot, frac = raw.partition(b".")
    if not whole.isdigit() or (dot and not frac.isdigit()):
        raise _fail("expected a decimal number", raw)
    return float(raw)


def _to_bool(raw: bytes) -> bool:
    if raw == b"true":
        return True
    if raw == b"false":
        return False
    raise _fail("expected true or false", raw)


def _to_str(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


#: Per value type: the slow-path converter, and the fast-path pattern that
#: matches a subset of what the converter accepts (see ``_Plan``).
_KINDS: dict[type, tuple[_Convert, bytes]] = {
    int: (_to_int, rb"(-?[0-9]{1,20})"),
    float: (_to_float, rb"([0-9]+(?:\.[0-9]+)?)"),
    bool: (_to_bool, rb"(true|false)"),
    str: (_to_str, rb"([^\"\n]*)"),
}
_QUOTED_STR = rb'"([^"\\\n]*)"'


class _Schema:
    """The types of one kind of document's keys, and the fast plan learnt
    from the last document of that kind."""

    __slots__ = ("types", "plan")

    def __init__(self, typed_dict: type) -> None:
        self.types: dict[bytes, type] = {
            key.encode(): (t if isinstance(t, type) else str)  # Literal[...] of str
            for key, t in typed_dict.__annotations__.items()
        }
        self.plan: _Plan | None = None


class _Plan:
    """A fast parser for documents with the same keys, in the same order and
    quoting, as one already parsed.

    beanstalkd writes its statistics with a fixed format, so after the first
    reply every later one is read by one regular expression (which also checks
    every value's syntax) and a few C-level conversions. Whatever the pattern
    does not match — a new key, different quoting, an escape, a bad value —
    goes to the general parser, which gives the same result or the error.
    """

    __slots__ = ("regex", "keys", "int_keys", "int_values", "others")

    def __init__(self, lines: list[tuple[bytes, bool]], schema: _Schema) -> None:
        parts = [b"---\n"]
        self.keys = tuple(key.decode("ascii", "replace") for key, _ in lines)
        int_positions: list[int] = []
        self.others: list[tuple[str, int, _Convert]] = []
        for position, (key, quoted) in enumerate(lines):
            kind = schema.types.get(key, str)
            convert, pattern = _KINDS[kind]
            if kind is str and quoted:
                pattern = _QUOTED_STR
            parts.append(re.escape(key) + b": " + pattern + b"\n")
            if kind is int:
                int_positions.append(position)
            else:
                self.others.append((self.keys[position], position, convert))
        self.regex = re.compile(b"".join(parts))
        self.int_keys = tuple(self.keys[i] for i in int_positions)
        self.int_values: Callable[[tuple[bytes, ...]], tuple[bytes, ...]] = (
            operator.itemgetter(*int_positions)
            if len(int_positions) > 1
            else lambda values: tuple(values[i] for i in int_positions)
        )

    def parse(self, body: bytes) -> dict[str, StatValue] | None:
        match = self.regex.fullmatch(body)
        if match is None:
            return None
        values = match.groups()
        out: dict[str, StatValue] = dict.fromkeys(self.keys, 0)
        out.update(zip(self.int_keys, map(int, self.int_values(values)), strict=True))
        for key, position, convert in self.others:
            out[key] = convert(values[position])
        return out


_STATS = _Schema(Stats)
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


def _parse_dict(body: bytes, schema: _Schema) -> dict[str, StatValue]:
    plan = schema.plan
    if plan is not None:
        fast = plan.parse(body)
        if fast is not None:
            return fast
    out: dict[str, StatValue] = {}
    shape: list[tuple[bytes, bool]] = []
    escaped = False
    for line in _lines(body):
        key, sep, raw = line.partition(b": ")
        if not sep or not key:
            raise _fail("expected 'key: value'", line)
        value, quoted = _unquote(raw)
        name = key.decode("ascii", "replace")
        if name in out:
            raise _fail("duplicate key", line)
        out[name] = _KINDS[schema.types.get(key, str)][0](value)
        escaped = escaped or b"\\" in raw
        shape.append((key, quoted))
    if not escaped:
        # Learn this shape, if the fast parser reads this very document the same.
        candidate = _Plan(shape, schema)
        if candidate.parse(body) == out:
            schema.plan = candidate
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
