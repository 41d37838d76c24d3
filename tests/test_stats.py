"""The YAML of ``OK`` replies: real beanstalkd output, per-key types, and errors.

Protocol sections "stats-job", "stats-tube", "stats", "list-tubes". The
documents below are what beanstalkd 1.12 writes (a few strings quoted) and
what 1.13 writes (every string quoted).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import beanproto as bp
from beanproto import _stats
from core_helpers import bytewise, feed_and_collect, feed_pieces, ok_reply

# -- real documents ----------------------------------------------------------------

STATS_112 = b"""---
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
total-connections: 1
pid: 2052
version: "1.12"
rusage-utime: 0.000000
rusage-stime: 0.003189
uptime: 0
binlog-oldest-index: 0
binlog-current-index: 0
binlog-records-migrated: 0
binlog-records-written: 0
binlog-max-size: 10485760
draining: false
id: 776045cde862884f
hostname: vm
os: #1 SMP PREEMPT_DYNAMIC @0
platform: x86_64
"""

_COUNTERS_112: dict[str, bp.StatValue] = {
    "current-jobs-urgent": 1,
    "current-jobs-ready": 1,
    "current-jobs-reserved": 0,
    "current-jobs-delayed": 0,
    "current-jobs-buried": 0,
    "cmd-put": 1,
    "cmd-peek": 0,
    "cmd-peek-ready": 0,
    "cmd-peek-delayed": 0,
    "cmd-peek-buried": 0,
    "cmd-reserve": 0,
    "cmd-reserve-with-timeout": 0,
    "cmd-delete": 0,
    "cmd-release": 0,
    "cmd-use": 0,
    "cmd-watch": 0,
    "cmd-ignore": 0,
    "cmd-bury": 0,
    "cmd-kick": 0,
    "cmd-touch": 0,
    "cmd-stats": 1,
    "cmd-stats-job": 0,
    "cmd-stats-tube": 0,
    "cmd-list-tubes": 0,
    "cmd-list-tube-used": 0,
    "cmd-list-tubes-watched": 0,
    "cmd-pause-tube": 0,
    "job-timeouts": 0,
    "total-jobs": 1,
    "max-job-size": 65535,
    "current-tubes": 1,
    "current-connections": 1,
    "current-producers": 1,
    "current-workers": 0,
    "current-waiting": 0,
    "total-connections": 1,
    "pid": 2052,
}
STATS_112_DATA: dict[str, bp.StatValue] = {
    **_COUNTERS_112,
    "version": "1.12",
    "rusage-utime": "0.000000",
    "rusage-stime": "0.003189",
    "uptime": 0,
    "binlog-oldest-index": 0,
    "binlog-current-index": 0,
    "binlog-records-migrated": 0,
    "binlog-records-written": 0,
    "binlog-max-size": 10485760,
    "draining": "false",
    "id": "776045cde862884f",
    "hostname": "vm",
    "os": "#1 SMP PREEMPT_DYNAMIC @0",
    "platform": "x86_64",
}

STATS_113 = (
    STATS_112.replace(b'version: "1.12"', b'version: "1.13"')
    .replace(b"id: 776045cde862884f", b'id: "776045cde862884f"')
    .replace(b"hostname: vm", b'hostname: "vm"')
    .replace(b"os: #1 SMP PREEMPT_DYNAMIC @0", b'os: "#1 SMP PREEMPT_DYNAMIC @0"')
    .replace(b"platform: x86_64", b'platform: "x86_64"')
    .replace(b"draining: false", b"draining: true")
)
STATS_113_DATA: dict[str, bp.StatValue] = {
    **STATS_112_DATA,
    "version": "1.13",
    "draining": "true",
}

STATS_JOB_112 = b"""---
id: 1
tube: default
state: ready
pri: 65536
age: 0
delay: 0
ttr: 60
time-left: 0
file: 0
reserves: 0
timeouts: 0
releases: 0
buries: 0
kicks: 0
"""
STATS_JOB_DATA: dict[str, bp.StatValue] = {
    "id": 1,
    "tube": "default",
    "state": "ready",
    "pri": 65536,
    "age": 0,
    "delay": 0,
    "ttr": 60,
    "time-left": 0,
    "file": 0,
    "reserves": 0,
    "timeouts": 0,
    "releases": 0,
    "buries": 0,
    "kicks": 0,
}
STATS_JOB_113 = STATS_JOB_112.replace(b"tube: default", b'tube: "default"').replace(
    b"state: ready", b'state: "ready"'
)

STATS_TUBE_112 = b"""---
name: default
current-jobs-urgent: 0
current-jobs-ready: 1
current-jobs-reserved: 0
current-jobs-delayed: 0
current-jobs-buried: 0
total-jobs: 1
current-using: 1
current-watching: 1
current-waiting: 0
cmd-delete: 0
cmd-pause-tube: 0
pause: 0
pause-time-left: 0
"""
STATS_TUBE_DATA: dict[str, bp.StatValue] = {
    "name": "default",
    "current-jobs-urgent": 0,
    "current-jobs-ready": 1,
    "current-jobs-reserved": 0,
    "current-jobs-delayed": 0,
    "current-jobs-buried": 0,
    "total-jobs": 1,
    "current-using": 1,
    "current-watching": 1,
    "current-waiting": 0,
    "cmd-delete": 0,
    "cmd-pause-tube": 0,
    "pause": 0,
    "pause-time-left": 0,
}
STATS_TUBE_113 = STATS_TUBE_112.replace(b"name: default", b'name: "default"')

LIST_112 = b"---\n- default\n- emails\n"
LIST_113 = b'---\n- "default"\n- "emails"\n'


def ok_data(command: bp.Command, document: bytes) -> dict[str, bp.StatValue] | list[str]:
    """Send ``command``, answer ``OK`` with ``document``, return the data.

    The reply is fed whole, byte by byte and through the buffer protocol,
    and must give the same event every way."""
    reply = ok_reply(document)
    events = []
    for way in ("whole", "bytewise", "buffer"):
        conn = bp.Connection()
        conn.send(command)
        if way == "whole":
            got = feed_and_collect(conn, reply)
        elif way == "bytewise":
            got = feed_pieces(conn, bytewise(reply))
        else:
            got = feed_and_collect(conn, reply, via="buffer")
        assert len(got) == 1
        assert conn.pending == 0
        events.append(got[0])
    assert events[0] == events[1] == events[2]
    event = events[0]
    assert isinstance(event, bp.Ok)
    return event.data


def ok_error(command: bp.Command, document: bytes) -> bp.RemoteProtocolError:
    conn = bp.Connection()
    conn.send(command)
    conn.receive_data(ok_reply(document))
    with pytest.raises(bp.RemoteProtocolError) as info:
        conn.next_event()
    with pytest.raises(bp.RemoteProtocolError):
        conn.next_event()
    assert conn.state is bp.State.ERROR
    return info.value


def assert_same_types(got: dict[str, bp.StatValue], expected: dict[str, bp.StatValue]) -> None:
    """Equal values *and* equal types (``1 == 1.0 == True`` is not enough)."""
    assert got == expected
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert type(got[key]) is type(value), key


# -- real output, both quoting styles -----------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [(STATS_112, STATS_112_DATA), (STATS_113, STATS_113_DATA)],
    ids=["1.12", "1.13"],
)
def test_stats(document: bytes, expected: dict[str, bp.StatValue]) -> None:
    data = ok_data(bp.Stats(), document)
    assert isinstance(data, dict)
    assert_same_types(data, expected)


@pytest.mark.parametrize("document", [STATS_JOB_112, STATS_JOB_113], ids=["1.12", "1.13"])
def test_stats_job(document: bytes) -> None:
    data = ok_data(bp.StatsJob(id=1), document)
    assert isinstance(data, dict)
    assert_same_types(data, STATS_JOB_DATA)


@pytest.mark.parametrize("document", [STATS_TUBE_112, STATS_TUBE_113], ids=["1.12", "1.13"])
def test_stats_tube(document: bytes) -> None:
    data = ok_data(bp.StatsTube(tube="default"), document)
    assert isinstance(data, dict)
    assert_same_types(data, STATS_TUBE_DATA)


@pytest.mark.parametrize("document", [LIST_112, LIST_113], ids=["1.12", "1.13"])
@pytest.mark.parametrize("command", [bp.ListTubes(), bp.ListTubesWatched()], ids=repr)
def test_list_tubes(command: bp.Command, document: bytes) -> None:
    assert ok_data(command, document) == ["default", "emails"]


def test_empty_documents() -> None:
    assert ok_data(bp.ListTubes(), b"---\n") == []
    assert ok_data(bp.Stats(), b"---\n") == {}


def test_both_styles_alternating_give_the_same_types() -> None:
    # A parser that learns the shape of one reply must not carry it over
    # wrongly to the next one in the other style.
    for document, expected in [
        (STATS_112, STATS_112_DATA),
        (STATS_113, STATS_113_DATA),
        (STATS_112, STATS_112_DATA),
        (STATS_112.replace(b"pid: 2052", b"pid: 7"), {**STATS_112_DATA, "pid": 7}),
        (STATS_113, STATS_113_DATA),
    ]:
        data = ok_data(bp.Stats(), document)
        assert isinstance(data, dict)
        assert_same_types(data, expected)


# -- per-key types --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "key", "value"),
    [
        (b"version: 1.12", "version", "1.12"),
        (b'version: "1.12"', "version", "1.12"),
        (b"version: 2", "version", "2"),
        (b"hostname: 12345", "hostname", "12345"),
        (b'hostname: "12345"', "hostname", "12345"),
        (b"id: 1234567890123456", "id", "1234567890123456"),
        (b'id: "0000"', "id", "0000"),
        (b"os: 6", "os", "6"),
        (b"platform: 64", "platform", "64"),
        (b"rusage-utime: 0.000000", "rusage-utime", "0.000000"),
        (b"rusage-utime: 12.500000", "rusage-utime", "12.500000"),
        (b"rusage-stime: 3", "rusage-stime", "3"),
        (b"draining: true", "draining", "true"),
        (b"draining: false", "draining", "false"),
        (b'draining: "false"', "draining", "false"),
        (b"pid: 0", "pid", 0),
        (b"total-jobs: 18446744073709551615", "total-jobs", 2**64 - 1),
        (b"uptime: 1", "uptime", 1),
        (b"current-jobs-urgent: 3", "current-jobs-urgent", 3),
    ],
    ids=repr,
)
def test_stats_key_types(line: bytes, key: str, value: bp.StatValue) -> None:
    data = ok_data(bp.Stats(), b"---\n" + line + b"\n")
    assert isinstance(data, dict)
    assert_same_types(data, {key: value})


def test_server_id_is_a_string_but_job_id_is_an_int() -> None:
    stats = ok_data(bp.Stats(), b"---\nid: 42\n")
    job = ok_data(bp.StatsJob(id=42), b"---\nid: 42\n")
    assert isinstance(stats, dict)
    assert isinstance(job, dict)
    assert_same_types(stats, {"id": "42"})
    assert_same_types(job, {"id": 42})


@pytest.mark.parametrize("quote", [b"", b'"'], ids=["1.12", "1.13"])
def test_tube_named_123_stays_a_string(quote: bytes) -> None:
    tube = ok_data(bp.StatsTube(tube="123"), b"---\nname: " + quote + b"123" + quote + b"\n")
    assert isinstance(tube, dict)
    assert_same_types(tube, {"name": "123"})
    job = ok_data(bp.StatsJob(id=1), b"---\ntube: " + quote + b"123" + quote + b"\n")
    assert isinstance(job, dict)
    assert_same_types(job, {"tube": "123"})
    tubes = ok_data(bp.ListTubes(), b"---\n- " + quote + b"123" + quote + b"\n- 007\n")
    assert tubes == ["123", "007"]
    assert all(type(name) is str for name in tubes)
    watched = ok_data(bp.ListTubesWatched(), b"---\n- " + quote + b"123" + quote + b"\n")
    assert watched == ["123"]


def test_every_stats_job_state() -> None:
    for state in ("ready", "delayed", "reserved", "buried"):
        data = ok_data(bp.StatsJob(id=1), b"---\nstate: " + state.encode() + b"\n")
        assert data == {"state": state}


def test_unknown_keys_are_kept() -> None:
    document = STATS_112 + b'cmd-reserve-job: 3\nfuture-thing: hello\nfuture-quoted: "42"\n'
    data = ok_data(bp.Stats(), document)
    assert isinstance(data, dict)
    assert {k: data[k] for k in STATS_112_DATA} == STATS_112_DATA
    # Unknown keys are read as YAML (and greenstalk) read them: an unquoted
    # integer is an int, anything else text; quoted is always text.
    assert_same_types(
        {k: data[k] for k in ("cmd-reserve-job", "future-thing", "future-quoted")},
        {"cmd-reserve-job": 3, "future-thing": "hello", "future-quoted": "42"},
    )
    job = ok_data(bp.StatsJob(id=1), b"---\nid: 1\nnew-counter: 9\nnew-negative: -2\n")
    assert isinstance(job, dict)
    assert_same_types(job, {"id": 1, "new-counter": 9, "new-negative": -2})
    odd = ok_data(bp.StatsTube(tube="t"), b"---\nnew-a: 1.5\nnew-b: -\nnew-c: 12x\n")
    assert isinstance(odd, dict)
    assert_same_types(odd, {"new-a": "1.5", "new-b": "-", "new-c": "12x"})


def test_quoted_strings_are_unescaped() -> None:
    data = ok_data(bp.Stats(), b'---\nos: "say \\"hi\\" C:\\\\x"\nhostname: ""\n')
    assert data == {"os": 'say "hi" C:\\x', "hostname": ""}


def test_utf8_values_are_decoded() -> None:
    data = ok_data(bp.Stats(), '---\nhostname: héllo\nos: "日本"\n'.encode())
    assert data == {"hostname": "héllo", "os": "日本"}


# -- malformed documents ---------------------------------------------------------------

MALFORMED: list[tuple[bp.Command, bytes]] = [
    (bp.Stats(), b"pid: 1\n"),
    (bp.Stats(), b"---\npid: 1"),
    (bp.Stats(), b"---\npid 1\n"),
    (bp.Stats(), b"---\npid:1\n"),
    (bp.Stats(), b"---\npid: one\n"),
    (bp.Stats(), b"---\npid: 1 2\n"),
    (bp.Stats(), b'---\npid: "1\n'),
    (bp.Stats(), b"---\npid: 1.0\n"),
    (bp.Stats(), b"---\npid: 123456789012345678901\n"),
    (bp.Stats(), b"---\ndraining: True\n"),
    (bp.Stats(), b"---\ndraining: \n"),
    (bp.Stats(), b"---\nrusage-utime: 1,5\n"),
    (bp.Stats(), b"---\nrusage-utime: -1.0\n"),
    (bp.Stats(), b"---\nrusage-utime: 1e3\n"),
    (bp.Stats(), b"---\n- default\n"),
    (bp.StatsJob(id=1), b"---\nid: abc\n"),
    (bp.StatsJob(id=1), b"---\nttr: \n"),
    (bp.StatsTube(tube="t"), b"---\ntotal-jobs: x\n"),
    (bp.StatsTube(tube="t"), b"---\nname\n"),
    (bp.ListTubes(), b"---\ndefault\n"),
    (bp.ListTubes(), b"---\n-\n"),
    (bp.ListTubes(), b"---\n- \n"),
    (bp.ListTubes(), b"---\npid: 1\n"),
    (bp.ListTubesWatched(), b"- default\n"),
    (bp.ListTubesWatched(), b"---\n- default"),
]


@pytest.mark.parametrize(("command", "document"), MALFORMED, ids=repr)
def test_malformed_yaml_is_a_remote_error(command: bp.Command, document: bytes) -> None:
    ok_error(command, document)


def test_a_learnt_shape_still_checks_values() -> None:
    # Parse one shape several times, then the same shape with bad values.
    good = b"---\npid: 5\nrusage-utime: 0.5\ndraining: false\nhostname: vm\n"
    for _ in range(3):
        assert ok_data(bp.Stats(), good) == {
            "pid": 5,
            "rusage-utime": "0.5",
            "draining": "false",
            "hostname": "vm",
        }
    ok_error(bp.Stats(), good.replace(b"pid: 5", b"pid: x"))
    ok_error(bp.Stats(), good.replace(b"0.5", b"0.x"))
    ok_error(bp.Stats(), good.replace(b"false", b"no"))
    quoted = ok_data(bp.Stats(), good.replace(b"vm", b'"v\\"m"'))
    assert isinstance(quoted, dict)
    assert quoted["hostname"] == 'v"m'


def test_a_learnt_shape_still_reads_negative_and_quoted_values() -> None:
    # The fast path takes no sign (server counters have none) and no escape;
    # such a reply of a learnt layout is still read, by the line parser.
    good = b"---\npid: 5\nhostname: vm\n"
    for _ in range(2):
        assert ok_data(bp.Stats(), good) == {"pid": 5, "hostname": "vm"}
    plan = _stats._STATS.plan
    assert plan is not None
    negative = ok_data(bp.Stats(), good.replace(b"5", b"-5"))
    assert isinstance(negative, dict)
    assert_same_types(negative, {"pid": -5, "hostname": "vm"})
    escaped = ok_data(bp.Stats(), good.replace(b"vm", b'"a\\\\b"'))
    assert escaped == {"pid": 5, "hostname": "a\\b"}
    assert _stats._STATS.plan is plan  # neither reply could be learnt
    assert plan.parse(good) == {"pid": 5, "hostname": "vm"}


@pytest.mark.parametrize(
    "document",
    [b"---\n\xff: 1\n", b"---\npid: 1\nk\xc3\xa9y: 2\n", b"---\n\x80\x81: \xfe\n"],
    ids=repr,
)
def test_non_ascii_keys_never_crash(document: bytes) -> None:
    """beanstalkd never sends such keys; a client must still fail cleanly.

    Either the document is read (the key decoded somehow) or it is refused
    with RemoteProtocolError; a UnicodeDecodeError escaping would leave the
    connection out of step with no error state."""
    for command in (bp.Stats(), bp.StatsJob(id=1), bp.StatsTube(tube="t")):
        conn = bp.Connection()
        conn.send(command)
        conn.send(bp.ListTubeUsed())
        conn.receive_data(ok_reply(document) + b"USING default\r\n")
        try:
            event = conn.next_event()
        except bp.RemoteProtocolError:
            assert conn.state is bp.State.ERROR
            continue
        assert isinstance(event, bp.Ok)
        assert isinstance(event.data, dict)
        assert len(event.data) == document.count(b"\n") - 1
        assert conn.next_event() == bp.Using(tube="default")


# -- any shape, parsed once or many times, gives the same typed result ----------------

_INT_KEYS = ["current-jobs-ready", "cmd-put", "pid", "uptime", "total-jobs", "binlog-max-size"]
_STR_KEYS = ["version", "hostname", "os", "platform", "id"]
_FLOAT_KEYS = ["rusage-utime", "rusage-stime"]
_UNKNOWN_KEYS = ["new-counter", "zz-extra"]

_plain_text = st.text(alphabet=st.sampled_from("abcXYZ019 .:-#@_/é日"), max_size=12).filter(
    lambda s: not (s.startswith('"') and s.endswith('"'))
)
_any_text = st.text(alphabet=st.sampled_from('ab1 "\\:é'), max_size=10)


@st.composite
def stats_documents(draw: st.DrawFn) -> tuple[bytes, dict[str, bp.StatValue]]:
    """A stats document in any order and quoting, and the data it means."""
    keys = draw(
        st.lists(
            st.sampled_from(_INT_KEYS + _STR_KEYS + _FLOAT_KEYS + ["draining"] + _UNKNOWN_KEYS),
            unique=True,
            max_size=12,
        )
    )
    lines: list[bytes] = []
    data: dict[str, bp.StatValue] = {}
    for key in keys:
        if key in _INT_KEYS:
            number = draw(st.integers(0, 2**64 - 1))
            raw, value = str(number).encode(), number
            data[key] = value
        elif key in _FLOAT_KEYS:
            whole, frac = draw(st.integers(0, 10**6)), draw(st.integers(0, 999999))
            raw = b"%d.%06d" % (whole, frac)
            data[key] = raw.decode()
        elif key == "draining":
            raw = draw(st.sampled_from([b"true", b"false"]))
            data[key] = raw.decode()
        elif draw(st.booleans()):  # a string, quoted (1.13)
            text = draw(_any_text)
            escaped = text.replace("\\", "\\\\").replace('"', '\\"')
            raw = b'"' + escaped.encode() + b'"'
            data[key] = text
        else:  # a string, unquoted (1.12)
            text = draw(_plain_text)
            raw = text.encode()
            # A key of unknown type with an integer value is read as an int.
            integer = key in _UNKNOWN_KEYS and re.fullmatch("-?[0-9]{1,20}", text) is not None
            data[key] = int(text) if integer else text
        lines.append(key.encode() + b": " + raw + b"\n")
    return b"---\n" + b"".join(lines), data


@settings(max_examples=150, deadline=None)
@given(first=stats_documents(), second=stats_documents())
def test_any_stats_document_parses_to_its_typed_data(
    first: tuple[bytes, dict[str, bp.StatValue]],
    second: tuple[bytes, dict[str, bp.StatValue]],
) -> None:
    # Each document is parsed several times, interleaved with another one, so
    # that anything learnt from one reply is exercised on the next.
    for document, expected in (first, second, first, first, second):
        conn = bp.Connection()
        conn.send(bp.Stats())
        conn.receive_data(ok_reply(document))
        event = conn.next_event()
        assert isinstance(event, bp.Ok)
        assert isinstance(event.data, dict)
        assert_same_types(event.data, expected)


_tube_names = st.text(
    alphabet=st.sampled_from("abcXYZ0123456789-+/;.$_()"), min_size=1, max_size=20
).filter(lambda name: not name.startswith("-"))


@settings(max_examples=100, deadline=None)
@given(names=st.lists(_tube_names, max_size=10), quoted=st.booleans())
def test_any_tube_list_parses(names: list[str], quoted: bool) -> None:
    q = '"' if quoted else ""
    document = ("---\n" + "".join(f"- {q}{name}{q}\n" for name in names)).encode()
    conn = bp.Connection()
    conn.send(bp.ListTubes())
    conn.receive_data(ok_reply(document))
    assert conn.next_event() == bp.Ok(data=names)


# -- the richer typing, for code that wants it -----------------------------------------


@pytest.mark.parametrize(
    ("document", "draining"), [(STATS_112, False), (STATS_113, True)], ids=["1.12", "1.13"]
)
def test_rich_stats_converts_the_three_text_keys(document: bytes, draining: bool) -> None:
    data = ok_data(bp.Stats(), document)
    assert isinstance(data, dict)
    before = dict(data)
    rich = bp.rich_stats(data)
    assert rich["draining"] is draining
    assert rich["rusage-utime"] == 0.0
    assert rich["rusage-stime"] == 0.003189
    assert type(rich["rusage-stime"]) is float
    others = {
        k: v for k, v in rich.items() if k not in ("draining", "rusage-utime", "rusage-stime")
    }
    assert others == {k: v for k, v in before.items() if k in others}
    assert list(rich) == list(before)
    assert data == before  # the parsed dict is left as it was


def test_rich_stats_leaves_other_documents_alone() -> None:
    tube = ok_data(bp.StatsTube(tube="t"), STATS_TUBE_112)
    assert isinstance(tube, dict)
    assert bp.rich_stats(tube) == tube
    assert bp.rich_stats({}) == {}


def test_quoted_numbers_and_flags_get_the_fast_path_too() -> None:
    # Should a server quote every value, its layout is still learnt, and a
    # learnt layout gives what the line-by-line parser gives.
    document = b'---\npid: "7"\ndraining: "true"\nrusage-utime: "0.5"\nversion: "1.13"\n'
    expected: dict[str, bp.StatValue] = {
        "pid": 7,
        "draining": "true",
        "rusage-utime": "0.5",
        "version": "1.13",
    }
    for _ in range(3):
        data = ok_data(bp.Stats(), document)
        assert isinstance(data, dict)
        assert_same_types(data, expected)
    plan = _stats._STATS.plan
    assert plan is not None
    assert plan.parse(document) == expected
    ok_error(bp.Stats(), document.replace(b'"7"', b'"x"'))
