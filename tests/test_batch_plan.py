"""The batch planner (``beanproto._batch``) and the batch errors, without a server.

The planner is what keeps a batch deadlock-free, so its rules are checked
as properties over random batches and limits: the replies not yet read
never exceed the budget (in count and in estimated bytes), nothing is
written after a command whose reply may carry a body until that reply is
read, joined writes stay within their size and never hold a large body,
every command goes out exactly once and in order, and the plan never
stalls (when it says "read", a reply is owed).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import beanproto
import beanproto as bp
import beanproto_asyncio
import beanproto_sync
import beanproto_trio
from beanproto import _batch as batch
from beanproto.errors import BatchError, BatchLostError, ReplyLostError

# -- commands ---------------------------------------------------------------------

_tube = st.from_regex(r"[a-z0-9][a-z0-9-]{0,199}", fullmatch=True)
_id = st.integers(min_value=0, max_value=2**63)

#: Bodies mostly small, sometimes around or above a large-body threshold.
_body = st.one_of(
    st.binary(max_size=64),
    st.integers(min_value=0, max_value=150_000).map(lambda n: b"b" * n),
)

_command: st.SearchStrategy[bp.Command] = st.one_of(
    _body.map(lambda body: bp.Put(body=body)),
    _tube.map(lambda tube: bp.Use(tube=tube)),
    _tube.map(lambda tube: bp.Watch(tube=tube)),
    _id.map(lambda id: bp.Delete(id=id)),
    _id.map(lambda id: bp.Touch(id=id)),
    _id.map(lambda id: bp.Peek(id=id)),
    _id.map(lambda id: bp.ReserveJob(id=id)),
    st.integers(min_value=0, max_value=100).map(lambda t: bp.ReserveWithTimeout(timeout=t)),
    st.just(bp.Stats()),
    st.just(bp.ListTubeUsed()),
    st.just(bp.PeekReady()),
    _tube.map(lambda tube: bp.StatsTube(tube=tube)),
    st.integers(min_value=0, max_value=2**32 - 1).map(lambda n: bp.Kick(bound=n)),
)


def estimate(command: bp.Command, max_line: int) -> int:
    """The reply size the rules allow for (written from the rules, not
    taken from the planner)."""
    if type(command) in (bp.Use, bp.ListTubeUsed):
        return max_line
    return 32


#: A reply every command accepts (one of the four general errors).
_ANY_REPLY = b"INTERNAL_ERROR\r\n"


def run_plan(
    commands: Sequence[bp.Command],
    *,
    reply_budget: int = batch.REPLY_BUDGET,
    max_unread: int = batch.MAX_UNREAD,
    write_size: int = batch.WRITE_SIZE,
    large_body: int = batch.LARGE_BODY,
) -> list[batch.Write]:
    """Drive a plan to the end as a client does, replying in memory, and
    check every rule after each step; return the writes."""
    conn = bp.Connection()
    plan = batch.Plan(
        conn,
        commands,
        reply_budget=reply_budget,
        max_unread=max_unread,
        write_size=write_size,
        large_body=large_body,
    )
    writes: list[batch.Write] = []
    wire = bytearray()
    unread: list[int] = []  # indices written for and not yet read, oldest first
    while not plan.done:
        write = plan.next_write()
        if write is None:
            # "Read first": a reply must be owed, or the plan stalled.
            assert unread, "the plan asks for a read with no reply owed"
            assert not plan.ready
            conn.receive_data(_ANY_REPLY)
            assert type(conn.next_event()) is bp.InternalError
            unread.pop(0)
            plan.replied()
            continue
        # Every command exactly once, in order.
        assert write.start == (writes[-1].stop if writes else 0)
        assert write.stop > write.start
        # Nothing written after a body reply before that reply is read.
        assert not any(type(commands[i]) in batch.BODY_REPLIES for i in unread)
        chunk = commands[write.start : write.stop]
        if write.large is not None:
            assert write.stop == write.start + 1
            assert write.large is commands[write.start]
            assert len(write.large.body) >= large_body
            assert write.data == b""
            wire += b"".join(bytes(part) for part in conn.send_parts(write.large))
        else:
            assert not any(
                type(command) is bp.Put and len(command.body) >= large_body for command in chunk
            )
            # Bounded writes (a single command may be larger than the bound).
            assert len(write.data) <= write_size or len(chunk) == 1
            # Only the last command of a write may have a body reply.
            assert not any(type(command) in batch.BODY_REPLIES for command in chunk[:-1])
            wire += write.data
        unread.extend(range(write.start, write.stop))
        writes.append(write)
        # The windows: counted replies and estimated bytes (one command
        # alone always goes, whatever its estimate).
        assert len(unread) == plan.unread == conn.pending
        assert len(unread) <= max_unread or len(unread) == 1
        owed = sum(estimate(commands[i], conn.max_line_length) for i in unread)
        assert owed <= reply_budget or len(unread) == 1
    assert plan.sent == plan.answered == len(commands)
    expected = b"".join(bp.Connection().send(command) for command in commands)
    assert bytes(wire) == expected
    return writes


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    commands=st.lists(_command, max_size=300),
    reply_budget=st.integers(min_value=1, max_value=20_000),
    max_unread=st.integers(min_value=1, max_value=300),
    write_size=st.integers(min_value=1, max_value=100_000),
    large_body=st.integers(min_value=1, max_value=100_000),
)
def test_plan_rules_hold_for_any_batch_and_limits(
    commands: list[bp.Command],
    reply_budget: int,
    max_unread: int,
    write_size: int,
    large_body: int,
) -> None:
    run_plan(
        commands,
        reply_budget=reply_budget,
        max_unread=max_unread,
        write_size=write_size,
        large_body=large_body,
    )


@settings(max_examples=50, deadline=None)
@given(commands=st.lists(_command, max_size=600))
def test_plan_rules_hold_with_the_default_limits(commands: list[bp.Command]) -> None:
    run_plan(commands)


def test_many_small_puts_go_out_in_few_writes() -> None:
    commands = [bp.Put(body=b"x" * 100) for _ in range(1000)]
    writes = run_plan(commands)
    # The window of MAX_UNREAD replies is refilled by half at a time.
    assert len(writes) <= 2 * len(commands) // batch.MAX_UNREAD + 1
    assert writes[0].stop == batch.MAX_UNREAD


def test_over_tcp_only_the_byte_budget_limits_the_window() -> None:
    assert batch.unread_limit(tcp=True) is None
    assert batch.unread_limit(tcp=False) == batch.MAX_UNREAD
    commands = [bp.Put(body=b"x" * 100) for _ in range(2000)]
    writes = run_plan(commands, max_unread=10**9)  # (run_plan's own checks need a number)
    plan = batch.Plan(bp.Connection(), commands, max_unread=None)
    first = plan.next_write()
    assert first is not None and first.stop == batch.REPLY_BUDGET // batch.LINE_REPLY
    assert writes[0].stop == first.stop


def test_large_bodies_are_writes_of_their_own_never_joined() -> None:
    big = b"B" * batch.LARGE_BODY
    commands: list[bp.Command] = [
        bp.Put(body=b"small"),
        bp.Put(body=big),
        bp.Put(body=big),
        bp.Delete(id=1),
    ]
    writes = run_plan(commands)
    assert [(w.start, w.stop, w.large is not None) for w in writes] == [
        (0, 1, False),
        (1, 2, True),
        (2, 3, True),
        (3, 4, False),
    ]
    assert writes[1].large is commands[1]  # the caller's body, not a copy
    assert writes[1].large.body is big


def test_nothing_is_written_behind_a_body_reply() -> None:
    commands: list[bp.Command] = [
        bp.Put(body=b"a"),
        bp.Peek(id=1),
        bp.Put(body=b"b"),
        bp.Stats(),
        bp.Stats(),
    ]
    conn = bp.Connection()
    plan = batch.Plan(conn, commands)
    first = plan.next_write()
    assert first is not None and (first.start, first.stop) == (0, 2)
    assert plan.next_write() is None  # the peek's reply first
    plan.replied()  # the put's
    assert plan.next_write() is None
    plan.replied()  # the peek's
    second = plan.next_write()
    assert second is not None and (second.start, second.stop) == (2, 4)
    assert not plan.ready


def test_a_full_window_is_drained_to_half_before_the_next_write() -> None:
    commands = [bp.Delete(id=n) for n in range(20)]
    plan = batch.Plan(bp.Connection(), commands, max_unread=8)
    write = plan.next_write()
    assert write is not None and (write.start, write.stop) == (0, 8)
    for _ in range(3):
        plan.replied()
        assert plan.next_write() is None  # 7, 6, 5 unread: not yet
    plan.replied()
    write = plan.next_write()  # 4 unread: half
    assert write is not None and (write.start, write.stop) == (8, 12)


def test_the_byte_budget_counts_tube_replies_at_the_longest_line() -> None:
    commands = [bp.Use(tube="t") for _ in range(10)]
    conn = bp.Connection()
    plan = batch.Plan(conn, commands, reply_budget=3 * conn.max_line_length)
    write = plan.next_write()
    assert write is not None and write.stop == 3


def test_writes_are_bounded_in_bytes() -> None:
    commands = [bp.Put(body=b"x" * 1000) for _ in range(100)]
    writes = run_plan(commands, write_size=4096)
    assert all(len(w.data) <= 4096 for w in writes)
    assert len(writes) >= 100 * 1000 // 4096


def test_an_empty_batch_is_done_at_once() -> None:
    plan = batch.Plan(bp.Connection(), [])
    assert plan.done
    assert plan.next_write() is None


@pytest.mark.parametrize("bad", [bp.Quit(), b"put 0 0 1 1\r\nx\r\n", None])
def test_commands_without_a_reply_are_refused_before_anything_is_planned(bad: object) -> None:
    conn = bp.Connection()
    with pytest.raises(beanproto.ArgumentTypeError):
        batch.Plan(conn, [bp.Put(body=b"x"), bad])  # type: ignore[list-item]
    assert conn.pending == 0


# -- what a lost batch becomes ------------------------------------------------------


def test_lost_error_accounts_for_every_command() -> None:
    commands: list[bp.Command] = [bp.Put(body=b"x"), bp.Put(body=b"x"), bp.Put(body=b"x")]
    commands += [bp.Delete(id=1), bp.Put(body=b"y"), bp.Put(body=b"y")]
    answered: list[object] = [1, beanproto_sync.JobTooBigError("JOB_TOO_BIG"), 3]
    cause = TimeoutError("no reply to delete within 1 s")
    interrupted = batch.Interrupted([], [cause, ReplyLostError("lost")], cause)
    error = batch.lost_error(commands, answered, interrupted)
    assert isinstance(error, BatchLostError)
    assert isinstance(error, BatchError)
    assert isinstance(error, ReplyLostError)
    assert isinstance(error, ConnectionError)
    assert isinstance(error, beanproto.Error)
    assert error.results[:3] == answered
    # Sent and not answered: ReplyLostError (a timeout is wrapped, keeping it as the cause).
    assert type(error.results[3]) is ReplyLostError
    assert error.results[3].__cause__ is cause
    assert type(error.results[4]) is ReplyLostError
    # Never sent: a plain ConnectionError that says so.
    unsent = error.results[5]
    assert type(unsent) is ConnectionError
    assert "not sent" in str(unsent)
    assert error.unsent == [5]
    assert error.ids == [1, 3]
    assert sorted(error.failures) == [1, 3, 4, 5]
    text = str(error)
    assert "2 answered" in text or "3 answered" in text
    assert "1 not sent" in text
    assert "JobTooBigError" in text


def test_a_broken_reply_keeps_its_own_error() -> None:
    broken = beanproto.RemoteProtocolError("garbage")
    interrupted = batch.Interrupted([], [broken], broken)
    error = batch.lost_error([bp.Stats()], [], interrupted)
    assert error.results == [broken]
    assert error.unsent == []


def test_batch_error_says_how_many_failed_and_the_first() -> None:
    too_big = beanproto_sync.JobTooBigError("JOB_TOO_BIG in reply to put 65536 0 60 11")
    error = BatchError([1, too_big, 3, beanproto_sync.DrainingError("DRAINING")], [1, 3])
    assert error.failures == {1: too_big, 3: error.results[3]}
    assert error.ids == [1, 3]
    text = str(error)
    assert text.startswith("2 of 4 commands failed")
    assert "#1: JobTooBigError: JOB_TOO_BIG" in text


def test_batch_errors_pickle() -> None:
    error = BatchError([1, beanproto_sync.NotFoundError("NOT_FOUND")], [1])
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is BatchError
    assert again.ids == [1]
    assert list(again.failures) == [1]
    lost = BatchLostError([1, ReplyLostError("x"), ConnectionError("y")], [1], unsent=[2])
    again_lost = pickle.loads(pickle.dumps(lost))
    assert type(again_lost) is BatchLostError
    assert again_lost.unsent == [2]
    assert str(again_lost) == str(lost)


def test_put_ids_and_raise_failures() -> None:
    commands: list[bp.Command] = [bp.Put(body=b"a"), bp.Stats(), bp.Put(body=b"b")]
    assert batch.put_ids(commands, [5, {"pid": 1}, 6]) == [5, 6]
    batch.raise_failures(commands, [5, {}, 6])  # nothing failed: nothing raised
    failure = beanproto_sync.JobTooBigError("x")
    with pytest.raises(BatchError) as caught:
        batch.raise_failures(commands, [5, {}, failure])
    assert caught.value.ids == [5]
    assert caught.value.failures == {2: failure}


@pytest.mark.parametrize("module", [beanproto, beanproto_sync, beanproto_trio, beanproto_asyncio])
def test_batch_errors_are_exported_everywhere(module: object) -> None:
    for name in ("BatchError", "BatchLostError"):
        assert getattr(module, name) is getattr(beanproto.errors, name)
        assert name in module.__all__  # type: ignore[attr-defined]
