"""The fast path of the core is the general path, only faster.

``Connection.next_event_with(data)`` promises exactly what
``receive_data(data)`` followed by ``next_event()`` gives: the same events,
the same errors (type and message), the same state afterwards. It has its own
code for the common case (one complete reply in one read), so these tests
feed the same byte streams to two connections, one through each path, and
demand the same outcome at every step: valid reply streams cut anywhere or
at reply boundaries (where the fast path triggers), truncated, mutated,
followed by bytes nobody asked for, ended by an end of file; pieces given as
``bytes``, ``bytearray`` or ``memoryview``; a connection with small limits.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import beanproto as bp
from test_properties import Script, garbage, scripts, split_replies

Outcome = list[Any]


def _outcomes(
    sent: list[bp.Command], pieces: list[Any], *, fast: bool, limits: dict[str, int]
) -> Outcome:
    """Feed ``pieces`` one by one, taking every event after each; what
    happened, step by step, and the connection's state at the end."""
    conn = bp.Connection(**limits)
    for command in sent:
        conn.send(command)
    seen: Outcome = []
    for piece in pieces:
        try:
            if fast:
                event = conn.next_event_with(piece)
            else:
                conn.receive_data(piece)
                event = conn.next_event()
            while event is not bp.NEED_DATA:
                seen.append(event)
                if type(event) is bp.ConnectionClosed:
                    break
                event = conn.next_event()
        except bp.Error as exc:
            seen.append((type(exc), str(exc)))
        seen.append("|")  # the end of one piece's events
    seen.append((conn.state, conn.pending, conn.buffered, conn.mid_reply))
    return seen


def _check(sent: list[bp.Command], pieces: list[Any], **limits: int) -> Outcome:
    general = _outcomes(sent, pieces, fast=False, limits=limits)
    assert _outcomes(sent, pieces, fast=True, limits=limits) == general
    return general


def _as(kind: str, piece: bytes) -> Any:
    if kind == "bytearray":
        return bytearray(piece)
    if kind == "memoryview":
        return memoryview(piece)
    return piece


@settings(max_examples=300, deadline=None)
@given(script=scripts(), eof=st.booleans())
def test_one_reply_per_read_gives_the_same_events(script: Script, eof: bool) -> None:
    # The case the fast path is for: every read is exactly one reply.
    sent, stream, expected = script
    pieces: list[Any] = split_replies(sent, stream)
    if eof:
        pieces.append(b"")
    outcome = _check(sent, pieces)
    assert [item for item in outcome if isinstance(item, bp.Event)][: len(expected)] == expected


@settings(max_examples=300, deadline=None)
@given(script=scripts(), data=st.data())
def test_any_cut_truncation_or_mutation_gives_the_same_outcome(
    script: Script, data: st.DataObject
) -> None:
    sent, stream, _ = script
    replies = split_replies(sent, stream)
    # Cut at reply boundaries sometimes, anywhere else otherwise.
    pieces: list[bytes] = []
    for reply in replies:
        if data.draw(st.booleans(), label="whole reply"):
            pieces.append(reply)
        else:
            cut = data.draw(st.integers(0, len(reply)), label="cut")
            pieces.extend(part for part in (reply[:cut], reply[cut:]) if part)
    mutate = data.draw(st.booleans(), label="mutate")
    if pieces and mutate:
        at = data.draw(st.integers(0, len(pieces) - 1), label="piece")
        piece = bytearray(pieces[at])
        how = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]), label="how")
        where = data.draw(st.integers(0, max(len(piece) - 1, 0)), label="where")
        if how == "flip" and piece:
            piece[where] ^= data.draw(st.integers(1, 255), label="bits")
        elif how == "insert":
            piece[where:where] = data.draw(st.binary(min_size=1, max_size=8), label="extra")
        elif how == "delete" and piece:
            del piece[where]
        else:
            del piece[where:]
        pieces[at : at + 1] = [bytes(piece)] if piece else []
    if data.draw(st.booleans(), label="unsolicited"):
        pieces.append(data.draw(garbage, label="garbage") or b"X")
    if data.draw(st.booleans(), label="eof"):
        pieces.append(b"")
    kinds = data.draw(
        st.lists(st.sampled_from(["bytes", "bytearray", "memoryview"]), min_size=1), label="kinds"
    )
    _check(sent, [_as(kinds[i % len(kinds)], piece) for i, piece in enumerate(pieces)])


@settings(max_examples=200, deadline=None)
@given(script=scripts(max_commands=4), data=st.data())
def test_small_limits_give_the_same_errors(script: Script, data: st.DataObject) -> None:
    # Replies at and around the line and body limits.
    sent, stream, _ = script
    limits = {
        "max_line_length": data.draw(st.integers(8, 40), label="max_line_length"),
        "max_body_size": data.draw(st.integers(0, 64), label="max_body_size"),
    }
    _check(sent, [*split_replies(sent, stream), b""], **limits)


@settings(max_examples=200, deadline=None)
@given(sent=scripts(max_commands=3).map(lambda script: script[0]), stream=garbage)
def test_any_bytes_give_the_same_outcome(sent: list[bp.Command], stream: bytes) -> None:
    _check(sent, [stream, b""])


def test_the_fast_path_is_taken() -> None:
    # Not a behaviour, a guard for the tests above: they are only worth
    # something if next_event_with parses straight from the read, without
    # touching the receive buffer.
    conn = bp.Connection()
    conn.send(bp.Put(body=b"x"))
    before = conn._buffer._data
    assert conn.next_event_with(b"INSERTED 7\r\n") == bp.Inserted(id=7)
    conn.send(bp.Reserve())
    assert conn.next_event_with(b"RESERVED 7 1\r\nx\r\n") == bp.Reserved(id=7, body=b"x")
    assert conn._buffer._data is before and conn.buffered == 0
    assert conn._buffer._end == 0


def test_a_reply_cut_after_its_line_waits_for_its_body() -> None:
    conn = bp.Connection()
    conn.send(bp.Reserve())
    assert conn.next_event_with(b"RESERVED 7 3\r\nab") is bp.NEED_DATA
    assert conn.mid_reply
    assert conn.next_event_with(b"c\r\n") == bp.Reserved(id=7, body=b"abc")
    assert conn.pending == 0


def test_a_broken_yaml_body_fails_the_connection_on_both_paths() -> None:
    # Found by the differential test: the fast path once returned the parse
    # error without putting the connection in the ERROR state.
    body = b',--\nname: "0"\ncurrent-jobs-ready: 0\n'
    pieces = [b"OK %d\r\n%b\r\n" % (len(body), body)]
    outcome = _check([bp.StatsTube(tube="0")], pieces)
    assert outcome[-1][0] is bp.State.ERROR
