"""Regression tests for edge cases found in review: allocation limits, argument
types at the core's receive API, list replies, and exceptions that must
survive pickling (multiprocessing, concurrent.futures)."""

from __future__ import annotations

import copy
import pickle
import resource

import pytest

import beanproto as bp
from beanproto import errors


def test_an_announced_body_does_not_allocate_it_in_advance() -> None:
    conn = bp.Connection()
    conn.send(bp.Reserve())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    conn.receive_data(b"RESERVED 1 1073741823\r\n")
    assert conn.next_event() is bp.NEED_DATA
    view = conn.get_buffer()
    # Room for at most 8 MiB is made ahead of the bytes themselves.
    assert len(view) <= 16 * 1024 * 1024
    view.release()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024


def test_a_body_larger_than_the_advance_still_arrives_whole() -> None:
    conn = bp.Connection()
    conn.send(bp.Reserve())
    body = bytes(range(256)) * (40 * 1024 * 4)  # 40 MiB
    conn.receive_data(b"RESERVED 9 %d\r\n" % len(body))
    assert conn.next_event() is bp.NEED_DATA
    data = memoryview(body + b"\r\n")
    while data:
        view = conn.get_buffer()
        n = min(len(view), len(data), 3 * 1024 * 1024 + 17)
        view[:n] = data[:n]
        view.release()
        conn.buffer_updated(n)
        data = data[n:]
    event = conn.next_event()
    assert event == bp.Reserved(id=9, body=body)


@pytest.mark.parametrize("nbytes", [1.0, "1", None, True])
def test_buffer_updated_refuses_non_int(nbytes: object) -> None:
    conn = bp.Connection()
    conn.send(bp.ListTubes())
    view = conn.get_buffer()
    view[:1] = b"O"
    view.release()
    with pytest.raises(bp.ArgumentTypeError):
        conn.buffer_updated(nbytes)  # type: ignore[arg-type]
    conn.buffer_updated(1)  # the connection is not wedged
    conn.receive_data(b"K 12\r\n---\n- a\n- b\n\r\n")
    assert conn.next_event() == bp.Ok(data=["a", "b"])


@pytest.mark.parametrize("data", ["abc", 3, memoryview(b"abcdef")[::2]], ids=repr)
def test_receive_data_refuses_what_is_not_contiguous_bytes(data: object) -> None:
    conn = bp.Connection()
    conn.send(bp.Stats())
    with pytest.raises(bp.ArgumentTypeError):
        conn.receive_data(data)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs", [{"max_line_length": None}, {"max_body_size": "big"}, {"max_line_length": 4}]
)
def test_connection_limits_are_checked(kwargs: dict[str, object]) -> None:
    with pytest.raises(bp.LocalProtocolError):
        bp.Connection(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "yaml", [b"---\n- a b\n", b"---\n- \xff\n", b"---\n- -lead\n", b"---\n- \n"], ids=repr
)
def test_list_replies_hold_valid_names_only(yaml: bytes) -> None:
    conn = bp.Connection()
    conn.send(bp.ListTubes())
    conn.receive_data(b"OK %d\r\n%s\r\n" % (len(yaml), yaml))
    with pytest.raises(bp.RemoteProtocolError):
        conn.next_event()


def test_duplicate_stats_keys_are_a_protocol_error() -> None:
    conn = bp.Connection()
    conn.send(bp.Stats())
    yaml = b"---\npid: 1\npid: 2\n"
    conn.receive_data(b"OK %d\r\n%s\r\n" % (len(yaml), yaml))
    with pytest.raises(bp.RemoteProtocolError, match="duplicate"):
        conn.next_event()


def _decode_error() -> errors.JobDecodeError:
    try:
        b"\xff".decode("utf-8")
    except UnicodeDecodeError as exc:
        return errors.JobDecodeError(exc, 5, b"\xff")
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "exc",
    [
        errors.BuriedError(id=3),
        errors.BuriedError([b"4"]),
        errors.BuriedError(),
        errors.UnknownResponseError(b"HUH", [b"1"]),
        errors.NotFoundError("NOT_FOUND in reply to delete 1"),
        _decode_error(),
    ],
    ids=repr,
)
def test_exceptions_survive_pickle_and_copy(exc: Exception) -> None:
    for clone in (pickle.loads(pickle.dumps(exc)), copy.copy(exc)):
        assert type(clone) is type(exc)
        assert str(clone) == str(exc)
        for attribute in ("id", "body", "status", "values"):
            assert getattr(clone, attribute, None) == getattr(exc, attribute, None)
