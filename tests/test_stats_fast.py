"""The learnt fast path for statistics gives what the line parser gives.

``_stats._Plan`` reads a document of a layout it has seen with one regular
expression and bulk conversions; ``_stats._parse_lines`` reads any document
line by line and defines what it means. The differential test below learns a
plan from a random server-like document, then hands both parsers variants of
it (fresh values, bad values, odd spacing, moved, doubled or missing lines,
truncation, garbage) and demands the same data, with the same types and key
order, or the same error. The fast path may always decline (``None``: the
line parser then decides); it may never answer differently.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import beanproto as bp
from beanproto import _stats

# -- documents written by real servers: beanstalkd 1.12's ``stats`` and 1.13's
# ``stats-job 1`` and ``stats-tube default``, captured after one put. 1.13's
# ``stats`` differs from 1.12's in its quoting only (every string but the id),
# as written here.

REAL_STATS_112 = b"""---
current-jobs-urgent: 1
current-jobs-ready: 1
current-jobs-reserved: 0
current-jobs-delayed: 0
current-jobs-buried: 0
cmd-put: 1
cmd-peek: 0
cmd-peek-ready: 0
cmd-peek-delayed: 0
cmd-peek-buried: 0
cmd-reserve: 0
cmd-reserve-with-timeout: 0
cmd-delete: 0
cmd-release: 0
cmd-use: 0
cmd-watch: 0
cmd-ignore: 0
cmd-bury: 0
cmd-kick: 0
cmd-touch: 0
cmd-stats: 1
cmd-stats-job: 0
cmd-stats-tube: 0
cmd-list-tubes: 0
cmd-list-tube-used: 0
cmd-list-tubes-watched: 0
cmd-pause-tube: 0
job-timeouts: 0
total-jobs: 1
max-job-size: 65535
current-tubes: 1
current-connections: 1
current-producers: 1
current-workers: 0
current-waiting: 0
total-connections: 2
pid: 11890
version: "1.12"
rusage-utime: 0.001926
rusage-stime: 0.000000
uptime: 0
binlog-oldest-index: 0
binlog-current-index: 0
binlog-records-migrated: 0
binlog-records-written: 0
binlog-max-size: 10485760
draining: false
id: ed43d234f32df472
hostname: vm
os: #1 SMP PREEMPT_DYNAMIC @0
platform: x86_64
"""
REAL_STATS_113 = (
    REAL_STATS_112.replace(b'version: "1.12"', b'version: "1.13"')
    .replace(b"hostname: vm", b'hostname: "vm"')
    .replace(b"os: #1 SMP PREEMPT_DYNAMIC @0", b'os: "#1 SMP PREEMPT_DYNAMIC @0"')
    .replace(b"platform: x86_64", b'platform: "x86_64"')
)
REAL_STATS_JOB_113 = (
    b'---\nid: 1\ntube: "default"\nstate: "ready"\npri: 0\nage: 0\ndelay: 0\nttr: 60\n'
    b"time-left: 0\nfile: 0\nreserves: 0\ntimeouts: 0\nreleases: 0\nburies: 0\nkicks: 0\n"
)
REAL_STATS_TUBE_113 = (
    b'---\nname: "default"\ncurrent-jobs-urgent: 1\ncurrent-jobs-ready: 1\n'
    b"current-jobs-reserved: 0\ncurrent-jobs-delayed: 0\ncurrent-jobs-buried: 0\n"
    b"total-jobs: 1\ncurrent-using: 1\ncurrent-watching: 1\ncurrent-waiting: 0\n"
    b"cmd-delete: 0\ncmd-pause-tube: 0\npause: 0\npause-time-left: 0\n"
)

SCHEMAS = {"stats": _stats._STATS, "stats-job": _stats._STATS_JOB, "stats-tube": _stats._STATS_TUBE}
PARSERS = {
    "stats": _stats.parse_stats,
    "stats-job": _stats.parse_stats_job,
    "stats-tube": _stats.parse_stats_tube,
}
Outcome = tuple[str, object]  # ("ok", data as (key, value, type) triples) or ("error", message)


@pytest.fixture(autouse=True)
def _keep_plans() -> Iterator[None]:
    """Each test learns what it needs; what was learnt before is put back."""
    saved = {name: schema.plan for name, schema in SCHEMAS.items()}
    yield
    for name, schema in SCHEMAS.items():
        schema.plan = saved[name]


def typed(data: dict[str, bp.StatValue]) -> list[tuple[str, bp.StatValue, type]]:
    """The data with key order and value types made part of equality."""
    return [(key, value, type(value)) for key, value in data.items()]


def reference(document: bytes, schema: _stats._Schema) -> Outcome:
    try:
        return ("ok", typed(_stats._parse_lines(document, schema)[0]))
    except bp.RemoteProtocolError as error:
        return ("error", str(error))


def through_parser(document: bytes, kind: str) -> Outcome:
    try:
        return ("ok", typed(PARSERS[kind](document)))
    except bp.RemoteProtocolError as error:
        return ("error", str(error))


def learn(document: bytes, kind: str) -> _stats._Plan:
    schema = SCHEMAS[kind]
    schema.plan = None
    PARSERS[kind](document)
    plan = schema.plan
    assert plan is not None, "a server-like document must be learnt"
    return plan


# -- the real documents take the fast path ---------------------------------------------


@pytest.mark.parametrize(
    ("kind", "document"),
    [
        ("stats", REAL_STATS_112),
        ("stats", REAL_STATS_113),
        ("stats-job", REAL_STATS_JOB_113),
        ("stats-tube", REAL_STATS_TUBE_113),
    ],
    ids=["stats-1.12", "stats-1.13", "stats-job-1.13", "stats-tube-1.13"],
)
def test_real_documents_are_learnt_and_read_the_same(kind: str, document: bytes) -> None:
    plan = learn(document, kind)
    fast = plan.parse(document)
    assert fast is not None
    assert ("ok", typed(fast)) == reference(document, SCHEMAS[kind])
    # The server's next reply differs in its counters only: still fast.
    busier = document.replace(b": 1\n", b": 18446744073709551615\n", 1).replace(
        b": 0\n", b": 4294967295\n", 1
    )
    assert busier != document
    again = plan.parse(busier)
    assert again is not None
    assert ("ok", typed(again)) == reference(busier, SCHEMAS[kind])


@pytest.mark.parametrize(
    "document",
    [
        b"---\n",  # no key: no group at all
        b"---\npid: 7\n",  # one integer, no text
        b"---\nhostname: vm\n",  # one text, no integer
        b"---\nnew-key: 5\n",  # one key the schema does not know
        b"---\nnew-key: x\npid: 1\nos: a\n",  # one of each
        b'---\npid: "7"\ndraining: "true"\nrusage-utime: "0.5"\n',  # quoted
    ],
    ids=repr,
)
def test_small_layouts(document: bytes) -> None:
    plan = learn(document, "stats")
    fast = plan.parse(document)
    assert fast is not None
    assert ("ok", typed(fast)) == reference(document, _stats._STATS)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=6).map(lambda raw: raw.replace(b"\n", b"")), min_size=1))
def test_one_decode_of_the_joined_text_is_each_value_decoded(values: list[bytes]) -> None:
    # What the fast path's single decode of all text values relies on,
    # invalid UTF-8 (cut sequences before the newline) included.
    joined = b"\n".join(values).decode("utf-8", "replace").split("\n")
    assert joined == [value.decode("utf-8", "replace") for value in values]


# -- the differential test ---------------------------------------------------------------

_UNKNOWN_KEYS = [b"new-counter", b"zz-extra", b"cmd-reserve-job", b"k\xc3\xa9y"]

_text_chunks = st.sampled_from(
    [
        *(b"a", b"Z", b"1", b"0", b" ", b"-", b".", b":", b": ", b"#", b"@", b"_", b"\t", b"\r"),
        # UTF-8, whole and cut short, and bytes that are never UTF-8
        *(b"\xc3\xa9", b"\xe6\x97\xa5", b"\xe6\x97", b"\xff", b"\x80"),
    ]
)
_plain_text = st.lists(_text_chunks, max_size=6).map(b"".join)
_quoted_inner = _plain_text.map(lambda raw: raw.replace(b'"', b"").replace(b"\\", b""))

#: Values a fast pattern must not take for its kind: the line parser refuses
#: them, or reads them otherwise (signs, spaces and underscores, which ``int``
#: takes; a non-ASCII digit; overlong numbers; quotes and escapes).
_NEAR_MISSES: dict[str, list[bytes]] = {
    "int": [
        b"-1",
        b"-0",
        b"+1",
        b" 1",
        b"1 ",
        b"1_0",
        b"\xd9\xa1",
        b"1" * 21,
        b"0" * 21,
        b"1" * 20,
        b"1.0",
        b"0x1f",
        b"",
    ],
    "decimal": [
        b"1.",
        b".5",
        b"1e3",
        b"-1.0",
        b"+1.0",
        b"1,5",
        b"1.2.3",
        b" 1.0",
        b"1_0.5",
        b"1._5",
        b"\xd9\xa1.0",
        b"",
    ],
    "flag": [b"True", b"FALSE", b"true ", b" false", b"yes", b"1", b""],
    "text": [
        b'"',
        b'"a',
        b'a"',
        b'""',
        b'"a\\"b"',
        b'"a\\\\b"',
        b'"\\n"',
        b'"a"b"',
        b'"\\"',
        b"\xff",
        b"\xe6\x97",
        b"a: b",
        b"\t",
        b"",
        # and, in quotes, the inside of a quoted string that has escapes
        b"a\\\\b",
        b'a\\"b',
        b"\\",
        b"\\n",
        b'a"b',
    ],
}
_ANY_NEAR_MISS = sorted({value for values in _NEAR_MISSES.values() for value in values})


def _near_miss(kind: _stats._Kind | None, quoted: bool) -> st.SearchStrategy[bytes]:
    """Mostly a near miss for the value's own kind, sometimes for another."""
    if kind is _stats._INT:
        own = _NEAR_MISSES["int"]
    elif kind is _stats._DECIMAL:
        own = _NEAR_MISSES["decimal"]
    elif kind is _stats._FLAG:
        own = _NEAR_MISSES["flag"]
    else:
        own = _NEAR_MISSES["text"]
    value = st.one_of(st.sampled_from(own), st.sampled_from(own), st.sampled_from(_ANY_NEAR_MISS))
    if quoted:
        return st.one_of(value, value.map(lambda raw: b'"' + raw + b'"'))
    return value


def _representatives(kind: str) -> list[bytes]:
    """One key of each type the schema of ``kind`` has, and one it lacks."""
    chosen: dict[object, bytes] = {}
    for key, key_kind in sorted(SCHEMAS[kind].kinds.items()):
        chosen.setdefault(key_kind, key)
    return [*chosen.values(), b"new-key"]


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_every_near_miss_is_declined_or_read_the_same(kind: str) -> None:
    # Every near miss, bare and in quotes, in place of a value of every
    # type, the value learnt quoted and unquoted, between two other lines.
    schema = SCHEMAS[kind]
    checked = 0
    for key in _representatives(kind):
        for quoted in (False, True):
            q = b'"' if quoted else b""
            good = {_stats._INT: b"5", _stats._DECIMAL: b"0.5", _stats._FLAG: b"true"}
            key_kind = schema.kinds.get(key)
            value = b"vm" if key_kind is None else good.get(key_kind, b"vm")
            around = (b"zz-before: 1", b"zz-after: x")
            plan = learn(_document([around[0], key + b": " + q + value + q, around[1]]), kind)
            for miss in _ANY_NEAR_MISS:
                for written in (miss, b'"' + miss + b'"'):
                    variant = _document([around[0], key + b": " + written, around[1]])
                    expected = reference(variant, schema)
                    fast = plan.parse(variant)
                    if fast is not None:
                        assert ("ok", typed(fast)) == expected, variant
                    assert through_parser(variant, kind) == expected, variant
                    checked += 1
    assert checked > 300


def _digits(least: int, most: int) -> st.SearchStrategy[bytes]:
    """Decimal digits, leading zeros included."""
    return st.lists(st.sampled_from(b"0123456789"), min_size=least, max_size=most).map(bytes)


def _valid(kind: _stats._Kind | None, quoted: bool) -> st.SearchStrategy[bytes]:
    """A value of ``kind`` (``None``: a key the schema does not know) that the
    fast pattern for that kind and quoting accepts."""
    inner: st.SearchStrategy[bytes]
    if kind is _stats._INT:
        inner = st.one_of(_digits(1, 20), st.integers(0, 2**64 - 1).map(lambda n: b"%d" % n))
    elif kind is _stats._DECIMAL:
        fraction = st.one_of(st.just(b""), _digits(1, 6).map(lambda raw: b"." + raw))
        inner = st.tuples(_digits(1, 7), fraction).map(b"".join)
    elif kind is _stats._FLAG:
        inner = st.sampled_from([b"true", b"false"])
    elif quoted:
        inner = _quoted_inner
    elif kind is None:
        inner = st.one_of(
            st.integers(-(10**25), 10**25).map(lambda n: b"%d" % n),
            _plain_text.map(lambda raw: raw.replace(b'"', b"")),
        )
    else:
        inner = _plain_text.map(lambda raw: raw.replace(b'"', b""))
    return inner.map(lambda raw: b'"' + raw + b'"') if quoted else inner


@st.composite
def layouts(draw: st.DrawFn) -> tuple[str, list[tuple[bytes, bool]]]:
    """A kind of document and its lines' keys, each quoted or not."""
    kind = draw(st.sampled_from(sorted(SCHEMAS)))
    # Keys grouped by type, each group as likely as any other: a decimal or
    # a flag (two and one of beanstalkd's 51 stats keys) is as common as a
    # counter.
    by_type: dict[object, list[bytes]] = {}
    for key, key_kind in SCHEMAS[kind].kinds.items():
        by_type.setdefault(key_kind, []).append(key)
    groups = [sorted(keys) for keys in by_type.values()] + [_UNKNOWN_KEYS]
    any_key = st.sampled_from(groups).flatmap(st.sampled_from)
    keys = draw(st.lists(any_key, unique=True, max_size=14))
    return kind, [(key, draw(st.booleans())) for key in keys]


def _document(lines: list[bytes]) -> bytes:
    return b"---\n" + b"".join(line + b"\n" for line in lines)


@st.composite
def learnt_and_variant(draw: st.DrawFn) -> tuple[str, bytes, bytes]:
    """A kind, a server-like document of a random layout (to learn) and a
    variant of it (to parse with what was learnt)."""
    kind, layout = draw(layouts())
    schema = SCHEMAS[kind]

    def line(key: bytes, quoted: bool) -> bytes:
        return key + b": " + draw(_valid(schema.kinds.get(key), quoted))

    base = _document([line(key, quoted) for key, quoted in layout])
    # The variant: fresh values in the same layout, up to two near misses ...
    lines = [line(key, quoted) for key, quoted in layout]
    for _ in range(draw(st.integers(0, 2)) if lines else 0):
        at = draw(st.integers(0, len(lines) - 1))
        key, quoted = layout[at]
        lines[at] = key + b": " + draw(_near_miss(schema.kinds.get(key), quoted))
    if draw(st.booleans()):
        return kind, base, _document(lines)
    # ... and, half the time, damage to the document itself.
    for _ in range(draw(st.integers(1, 3))):
        damage = draw(
            st.sampled_from(["separator", "blank", "double", "swap", "drop", "extra", "cr", "end"])
        )
        if not lines and damage != "extra":
            continue
        at = draw(st.integers(0, max(len(lines) - 1, 0)))
        if damage == "separator":
            sep = draw(st.sampled_from([b":", b":  ", b" : ", b":\t", b"  "]))
            lines[at] = lines[at].replace(b": ", sep, 1)
        elif damage == "blank":
            lines.insert(at, b"")
        elif damage == "double":
            lines.insert(at, lines[at])
        elif damage == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif damage == "drop":
            del lines[at]
        elif damage == "extra":
            lines.insert(at, draw(st.sampled_from([b"zz-new: 5", b"garbage", b"- a", b": 1"])))
        elif damage == "cr":
            lines[at] += b"\r"
        else:
            lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))]
    variant = _document(lines)
    ending = draw(st.sampled_from(["whole", "truncated", "no header", "no newline"]))
    if ending == "truncated":
        variant = variant[: draw(st.integers(0, len(variant)))]
    elif ending == "no header":
        variant = variant[4:]
    elif ending == "no newline":
        variant = variant[:-1]
    return kind, base, variant


@settings(max_examples=400, deadline=None)
@given(case=learnt_and_variant())
def test_fast_path_agrees_with_the_line_parser(case: tuple[str, bytes, bytes]) -> None:
    kind, base, variant = case
    schema = SCHEMAS[kind]
    plan = learn(base, kind)
    fast_base = plan.parse(base)
    assert fast_base is not None, "a learnt layout reads its own document"
    assert ("ok", typed(fast_base)) == reference(base, schema)

    expected = reference(variant, schema)
    fast = plan.parse(variant)  # declines with None, never raises
    event("fast path" if fast is not None else f"line parser: {expected[0]}")
    if fast is not None:
        assert ("ok", typed(fast)) == expected
    # And the public parser, with the plan in place, says what the line parser says.
    assert through_parser(variant, kind) == expected
