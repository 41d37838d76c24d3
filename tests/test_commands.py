"""Commands: their exact wire form, their defaults, and argument checks.

Protocol sections: "Producer Commands", "Worker Commands", "Other Commands";
names and integers: section "Protocol".
"""

from __future__ import annotations

import array
import dataclasses
from collections.abc import Callable

import pytest

import beanproto as bp
from core_helpers import ALL_COMMAND_TYPES, SAMPLE_COMMANDS, parse_command

# -- exact wire form of all 25 commands -------------------------------------

WIRE: list[tuple[bp.Command, bytes]] = [
    (bp.Put(body=b"hello", priority=1, delay=2, ttr=3), b"put 1 2 3 5\r\nhello\r\n"),
    (bp.Use(tube="emails"), b"use emails\r\n"),
    (bp.Reserve(), b"reserve\r\n"),
    (bp.ReserveWithTimeout(timeout=0), b"reserve-with-timeout 0\r\n"),
    (bp.ReserveJob(id=12), b"reserve-job 12\r\n"),
    (bp.Delete(id=13), b"delete 13\r\n"),
    (bp.Release(id=14, priority=10, delay=20), b"release 14 10 20\r\n"),
    (bp.Bury(id=15, priority=5), b"bury 15 5\r\n"),
    (bp.Touch(id=16), b"touch 16\r\n"),
    (bp.Watch(tube="w"), b"watch w\r\n"),
    (bp.Ignore(tube="default"), b"ignore default\r\n"),
    (bp.Peek(id=17), b"peek 17\r\n"),
    (bp.PeekReady(), b"peek-ready\r\n"),
    (bp.PeekDelayed(), b"peek-delayed\r\n"),
    (bp.PeekBuried(), b"peek-buried\r\n"),
    (bp.Kick(bound=100), b"kick 100\r\n"),
    (bp.KickJob(id=18), b"kick-job 18\r\n"),
    (bp.StatsJob(id=19), b"stats-job 19\r\n"),
    (bp.StatsTube(tube="t1"), b"stats-tube t1\r\n"),
    (bp.Stats(), b"stats\r\n"),
    (bp.ListTubes(), b"list-tubes\r\n"),
    (bp.ListTubeUsed(), b"list-tube-used\r\n"),
    (bp.ListTubesWatched(), b"list-tubes-watched\r\n"),
    (bp.PauseTube(tube="t2", delay=60), b"pause-tube t2 60\r\n"),
    (bp.Quit(), b"quit\r\n"),
]


def test_wire_table_covers_every_command() -> None:
    assert {type(command) for command, _ in WIRE} == set(ALL_COMMAND_TYPES)
    assert len(ALL_COMMAND_TYPES) == 25


@pytest.mark.parametrize(("command", "wire"), WIRE, ids=lambda x: type(x).__name__)
def test_wire_form(command: bp.Command, wire: bytes) -> None:
    conn = bp.Connection()
    assert conn.send(command) == wire
    # The server-side reader agrees and consumes exactly these bytes.
    parsed, rest = parse_command(wire)
    assert parsed == command
    assert rest == b""


@pytest.mark.parametrize(("command", "wire"), WIRE, ids=lambda x: type(x).__name__)
def test_send_parts_joins_to_send(command: bp.Command, wire: bytes) -> None:
    assert b"".join(bp.Connection().send_parts(command)) == wire


@pytest.mark.parametrize(
    ("command", "wire"),
    [
        (bp.Put(body=b""), b"put 65536 0 60 0\r\n\r\n"),
        (bp.Put(body=b"a\r\nb"), b"put 65536 0 60 4\r\na\r\nb\r\n"),
        (
            bp.Put(body=b"x", priority=2**32 - 1, delay=2**32 - 1, ttr=2**32 - 1),
            b"put 4294967295 4294967295 4294967295 1\r\nx\r\n",
        ),
        (bp.Put(body=b"x", priority=0, delay=0, ttr=0), b"put 0 0 0 1\r\nx\r\n"),
        (bp.Delete(id=2**64 - 1), b"delete 18446744073709551615\r\n"),
        (bp.Delete(id=0), b"delete 0\r\n"),
        (bp.ReserveWithTimeout(timeout=2**31 - 1), b"reserve-with-timeout 2147483647\r\n"),
        (bp.Kick(bound=0), b"kick 0\r\n"),
        (bp.Use(tube="a" * 200), b"use " + b"a" * 200 + b"\r\n"),
        (bp.PauseTube(tube="x", delay=0), b"pause-tube x 0\r\n"),
    ],
    ids=repr,
)
def test_wire_form_edges(command: bp.Command, wire: bytes) -> None:
    assert bp.Connection().send(command) == wire


# -- defaults (greenstalk 2.1.1's) --------------------------------------------


def test_defaults() -> None:
    assert (bp.DEFAULT_PRIORITY, bp.DEFAULT_DELAY, bp.DEFAULT_TTR) == (2**16, 0, 60)
    put = bp.Put(body=b"hello")
    assert (put.priority, put.delay, put.ttr) == (2**16, 0, 60)
    assert bp.Connection().send(put) == b"put 65536 0 60 5\r\nhello\r\n"
    release = bp.Release(id=3)
    assert (release.priority, release.delay) == (2**16, 0)
    assert bp.Connection().send(release) == b"release 3 65536 0\r\n"
    bury = bp.Bury(id=3)
    assert bury.priority == 2**16
    assert bp.Connection().send(bury) == b"bury 3 65536\r\n"


@pytest.mark.parametrize(
    "make",
    [
        lambda: bp.Put(),  # type: ignore[call-arg]
        lambda: bp.Use(),  # type: ignore[call-arg]
        lambda: bp.ReserveWithTimeout(),  # type: ignore[call-arg]
        lambda: bp.Delete(),  # type: ignore[call-arg]
        lambda: bp.Kick(),  # type: ignore[call-arg]
        lambda: bp.PauseTube(tube="x"),  # type: ignore[call-arg]
        lambda: bp.Delete(7),  # type: ignore[call-arg]
        lambda: bp.Use("emails"),  # type: ignore[call-arg]
    ],
)
def test_required_and_keyword_only_arguments(make: Callable[[], bp.Command]) -> None:
    with pytest.raises(TypeError):
        make()


def test_commands_are_frozen_and_compare_by_value() -> None:
    command = bp.Release(id=1, priority=2, delay=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        command.id = 2  # type: ignore[misc]
    assert command == bp.Release(id=1, priority=2, delay=3)
    assert command != bp.Release(id=1, priority=2, delay=4)
    assert hash(command) == hash(bp.Release(id=1, priority=2, delay=3))


def test_send_queues_every_command_but_quit() -> None:
    conn = bp.Connection()
    commands = [SAMPLE_COMMANDS[t] for t in ALL_COMMAND_TYPES if t is not bp.Quit]
    for n, command in enumerate(commands, 1):
        conn.send(command)
        assert conn.pending == n
    assert conn.pending_commands == tuple(commands)
    conn.send(bp.Quit())
    assert conn.pending == len(commands)
    assert conn.state is bp.State.CLOSING


# -- send_parts: a put body is never copied -----------------------------------


@pytest.mark.parametrize(
    "body",
    [b"hello", bytearray(b"hello"), memoryview(b"hello"), b"", b"x" * (1 << 20)],
    ids=["bytes", "bytearray", "memoryview", "empty", "1MiB"],
)
def test_send_parts_put(body: bytes | bytearray | memoryview) -> None:
    conn = bp.Connection()
    command = bp.Put(body=body, priority=1, delay=2, ttr=3)
    parts = conn.send_parts(command)
    assert len(parts) == 3
    assert parts[0] == b"put 1 2 3 %d\r\n" % len(body)
    assert parts[1] is body
    assert parts[2] == b"\r\n"
    assert conn.pending == 1
    assert conn.pending_commands == (command,)


def test_send_parts_other_commands_are_one_piece() -> None:
    conn = bp.Connection()
    assert conn.send_parts(bp.Delete(id=5)) == [b"delete 5\r\n"]
    assert conn.send_parts(bp.Quit()) == [b"quit\r\n"]
    assert conn.pending == 1


def test_send_put_copies_nothing_into_the_command() -> None:
    body = bytearray(b"abc")
    put = bp.Put(body=body)
    assert put.body is body


def test_memoryview_of_wider_items_is_sent_as_bytes() -> None:
    items = array.array("H", [1, 2, 3])
    put = bp.Put(body=memoryview(items))
    wire = bp.Connection().send(put)
    assert wire == b"put 65536 0 60 6\r\n" + items.tobytes() + b"\r\n"


# -- argument validation: tube names ---------------------------------------------

TUBE_COMMANDS: list[Callable[[str], bp.Command]] = [
    lambda tube: bp.Use(tube=tube),
    lambda tube: bp.Watch(tube=tube),
    lambda tube: bp.Ignore(tube=tube),
    lambda tube: bp.StatsTube(tube=tube),
    lambda tube: bp.PauseTube(tube=tube, delay=1),
]
TUBE_IDS = ["use", "watch", "ignore", "stats-tube", "pause-tube"]

BAD_TUBES = [
    "",
    "a" * 201,
    "a b",
    " a",
    "a ",
    "a\r",
    "a\n",
    "a\r\nb",
    "a\t",
    "a\x00",
    "tübe",
    "日本",
    "-leading",
    "-",
    "a:b",
    "a*b",
    "a#b",
    "a,b",
    "a\\b",
    'a"b',
    "a'b",
    "a@b",
    "a[b]",
]

#: Letters, digits and every punctuation character the protocol allows.
GOOD_TUBES = [
    "default",
    "a" * 200,
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "abcdefghijklmnopqrstuvwxyz",
    "0123456789",
    "123",
    "a-",
    "+",
    "/",
    ";",
    ".",
    "$",
    "_",
    "(",
    ")",
    "a-+/;.$_()",
    "+-+",
]


@pytest.mark.parametrize("make", TUBE_COMMANDS, ids=TUBE_IDS)
@pytest.mark.parametrize("tube", BAD_TUBES, ids=repr)
def test_bad_tube_names_are_refused(make: Callable[[str], bp.Command], tube: str) -> None:
    with pytest.raises(bp.ArgumentError) as info:
        make(tube)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, bp.LocalProtocolError)
    assert isinstance(info.value, bp.Error)


@pytest.mark.parametrize("make", TUBE_COMMANDS, ids=TUBE_IDS)
@pytest.mark.parametrize("tube", GOOD_TUBES, ids=repr)
def test_good_tube_names_are_accepted(make: Callable[[str], bp.Command], tube: str) -> None:
    wire = bp.Connection().send(make(tube))
    assert wire.split(b" ")[1].rstrip(b"\r\n") == tube.encode("ascii")
    assert parse_command(wire)[0] == make(tube)


def test_tube_name_of_exactly_200_bytes_but_not_201() -> None:
    assert bp.MAX_NAME_LENGTH == 200
    assert bp.Use(tube="x" * 200).tube == "x" * 200
    with pytest.raises(bp.ArgumentError):
        bp.Use(tube="x" * 201)


@pytest.mark.parametrize("make", TUBE_COMMANDS, ids=TUBE_IDS)
@pytest.mark.parametrize("tube", [b"default", 1, None, ["a"]], ids=repr)
def test_tube_of_wrong_type_is_refused(make: Callable[[object], bp.Command], tube: object) -> None:
    with pytest.raises(bp.ArgumentTypeError) as info:
        make(tube)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, bp.Error)


# -- argument validation: integers ------------------------------------------------

U32_FIELDS: list[tuple[str, Callable[[object], bp.Command]]] = [
    ("put priority", lambda v: bp.Put(body=b"x", priority=v)),  # type: ignore[arg-type]
    ("put delay", lambda v: bp.Put(body=b"x", delay=v)),  # type: ignore[arg-type]
    ("put ttr", lambda v: bp.Put(body=b"x", ttr=v)),  # type: ignore[arg-type]
    ("release priority", lambda v: bp.Release(id=1, priority=v)),  # type: ignore[arg-type]
    ("release delay", lambda v: bp.Release(id=1, delay=v)),  # type: ignore[arg-type]
    ("bury priority", lambda v: bp.Bury(id=1, priority=v)),  # type: ignore[arg-type]
    ("kick bound", lambda v: bp.Kick(bound=v)),  # type: ignore[arg-type]
    ("pause delay", lambda v: bp.PauseTube(tube="t", delay=v)),  # type: ignore[arg-type]
]

ID_FIELDS: list[tuple[str, Callable[[object], bp.Command]]] = [
    ("reserve-job", lambda v: bp.ReserveJob(id=v)),  # type: ignore[arg-type]
    ("delete", lambda v: bp.Delete(id=v)),  # type: ignore[arg-type]
    ("release", lambda v: bp.Release(id=v)),  # type: ignore[arg-type]
    ("bury", lambda v: bp.Bury(id=v)),  # type: ignore[arg-type]
    ("touch", lambda v: bp.Touch(id=v)),  # type: ignore[arg-type]
    ("peek", lambda v: bp.Peek(id=v)),  # type: ignore[arg-type]
    ("kick-job", lambda v: bp.KickJob(id=v)),  # type: ignore[arg-type]
    ("stats-job", lambda v: bp.StatsJob(id=v)),  # type: ignore[arg-type]
]

#: beanstalkd 1.13 refuses timeouts above a signed 32-bit int.
TIMEOUT_FIELDS: list[tuple[str, Callable[[object], bp.Command]]] = [
    ("reserve timeout", lambda v: bp.ReserveWithTimeout(timeout=v)),  # type: ignore[arg-type]
]

INT_FIELDS = (
    [(name, make, bp.MAX_UINT32) for name, make in U32_FIELDS]
    + [(name, make, bp.MAX_RESERVE_TIMEOUT) for name, make in TIMEOUT_FIELDS]
    + [(name, make, bp.MAX_UINT64) for name, make in ID_FIELDS]
)
INT_IDS = [name for name, _, _ in INT_FIELDS]


def test_integer_limits() -> None:
    assert bp.MAX_UINT32 == 2**32 - 1
    assert bp.MAX_UINT64 == 2**64 - 1


@pytest.mark.parametrize(("name", "make", "maximum"), INT_FIELDS, ids=INT_IDS)
@pytest.mark.parametrize("bad", ["-1", "max+1", "2**64", "-2**64"])
def test_integers_out_of_range_are_refused(
    name: str, make: Callable[[object], bp.Command], maximum: int, bad: str
) -> None:
    value = {"-1": -1, "max+1": maximum + 1, "2**64": 2**64, "-2**64": -(2**64)}[bad]
    with pytest.raises(bp.ArgumentError) as info:
        make(value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, bp.Error)


def test_u32_fields_refuse_two_to_the_32() -> None:
    for _, make in U32_FIELDS + TIMEOUT_FIELDS:
        with pytest.raises(bp.ArgumentError):
            make(2**32)


def test_id_fields_refuse_two_to_the_64() -> None:
    for _, make in ID_FIELDS:
        with pytest.raises(bp.ArgumentError):
            make(2**64)


@pytest.mark.parametrize(("name", "make", "maximum"), INT_FIELDS, ids=INT_IDS)
def test_integers_at_the_limits_are_accepted(
    name: str, make: Callable[[object], bp.Command], maximum: int
) -> None:
    for value in (0, maximum):
        command = make(value)
        wire = bp.Connection().send(command)
        assert b" %d" % value in wire
        assert parse_command(wire)[0] == command


#: Fields that count seconds: they also take a float, rounded up.
SECONDS = {"put delay", "put ttr", "release delay", "reserve timeout", "pause delay"}


#: (field, constructor, value of a wrong type); durations take floats.
WRONG_TYPES = [
    (name, make, bad)
    for name, make, _ in INT_FIELDS
    for bad in (True, False, 1.0, "1", b"1", None)
    if not (name in SECONDS and type(bad) is float)
]


@pytest.mark.parametrize(
    ("name", "make", "bad"), WRONG_TYPES, ids=[f"{n}-{b!r}" for n, _, b in WRONG_TYPES]
)
def test_integers_of_wrong_type_are_refused(
    name: str, make: Callable[[object], bp.Command], bad: object
) -> None:
    with pytest.raises(bp.ArgumentTypeError) as info:
        make(bad)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, bp.Error)


DURATION_FIELDS = [(n, m) for n, m in U32_FIELDS + TIMEOUT_FIELDS if n in SECONDS]


@pytest.mark.parametrize(("name", "make"), DURATION_FIELDS, ids=[n for n, _ in DURATION_FIELDS])
def test_durations_take_floats_rounded_up(name: str, make: Callable[[object], bp.Command]) -> None:
    # greenstalk formats with %d, so timeout=0.5 became "do not wait at all".
    for given, sent in [(0.0, 0), (0.5, 1), (1.0, 1), (2.25, 3)]:
        wire = bp.Connection().send(make(given))
        assert b" %d" % sent in wire
        assert b"." not in wire.split(b"\r\n")[0]
    for bad in (-0.5, float("nan"), float("inf"), 2.0**32 + 1):
        with pytest.raises(bp.ArgumentError):
            make(bad)


@pytest.mark.parametrize(("name", "make", "maximum"), INT_FIELDS, ids=INT_IDS)
def test_integer_like_values_are_accepted_as_int(
    name: str, make: Callable[[object], bp.Command], maximum: int
) -> None:
    class IntLike:
        def __index__(self) -> int:
            return 7

    command = make(IntLike())
    assert b" 7" in bp.Connection().send(command)
    assert 7 in [
        getattr(command, f)
        for f in ("priority", "delay", "ttr", "timeout", "bound", "id")
        if hasattr(command, f)
    ]


# -- argument validation: bodies ---------------------------------------------------


@pytest.mark.parametrize("body", ["hello", "", 5, None, [104, 105]], ids=repr)
def test_body_of_wrong_type_is_refused(body: object) -> None:
    with pytest.raises(bp.ArgumentTypeError) as info:
        bp.Put(body=body)  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, bp.LocalProtocolError)


def test_str_body_is_refused_with_a_hint() -> None:
    with pytest.raises(TypeError, match="encode"):
        bp.Put(body="hello")  # type: ignore[arg-type]


def test_non_contiguous_memoryview_body_is_refused() -> None:
    with pytest.raises(bp.ArgumentError) as info:
        bp.Put(body=memoryview(b"abcdef")[::2])
    assert isinstance(info.value, ValueError)


# -- a refused command changes nothing ----------------------------------------------

REFUSED: list[Callable[[], object]] = [
    lambda: bp.Use(tube="bad name"),
    lambda: bp.Watch(tube=""),
    lambda: bp.Put(body="text"),  # type: ignore[arg-type]
    lambda: bp.Put(body=b"x", priority=2**32),
    lambda: bp.Delete(id=-1),
    lambda: bp.Kick(bound=True),
]


@pytest.mark.parametrize("make", REFUSED)
@pytest.mark.parametrize("method", ["send", "send_parts"])
def test_refused_command_leaves_connection_untouched(
    make: Callable[[], bp.Command], method: str
) -> None:
    conn = bp.Connection()
    assert conn.send(bp.Reserve()) == b"reserve\r\n"
    out: list[object] = []
    send = conn.send if method == "send" else conn.send_parts
    with pytest.raises(bp.LocalProtocolError):
        out.append(send(make()))
    assert out == []  # no bytes were produced
    assert conn.pending == 1
    assert conn.pending_commands == (bp.Reserve(),)
    assert conn.state is bp.State.OPEN
    # The connection is still in step: the next command and reply work.
    assert conn.send(bp.Delete(id=1)) == b"delete 1\r\n"
    conn.receive_data(b"TIMED_OUT\r\nDELETED\r\n")
    assert conn.next_event() == bp.TimedOut()
    assert conn.next_event() == bp.Deleted()


@pytest.mark.parametrize(
    "thing",
    [object(), b"reserve\r\n", "reserve", bp.Command(), bp.Reserve],
    ids=["object", "bytes", "str", "base Command", "class"],
)
def test_sending_a_non_command_is_refused(thing: object) -> None:
    conn = bp.Connection()
    with pytest.raises(bp.ArgumentTypeError) as info:
        conn.send(thing)  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)
    with pytest.raises(bp.ArgumentTypeError):
        conn.send_parts(thing)  # type: ignore[arg-type]
    assert conn.pending == 0
    assert conn.state is bp.State.OPEN


# -- connection limits are checked too ---------------------------------------------


def test_connection_limits_are_checked() -> None:
    with pytest.raises(bp.ArgumentError):
        bp.Connection(max_line_length=7)
    with pytest.raises(bp.ArgumentError):
        bp.Connection(max_body_size=-1)
    conn = bp.Connection(max_line_length=8, max_body_size=0)
    assert (conn.max_line_length, conn.max_body_size) == (8, 0)
