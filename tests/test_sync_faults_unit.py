"""The blocking client's timeouts against a scripted peer (one end of a
socket pair), for the cases a real server does not produce: a reserve never
answered, a reply that starts and stalls, a set-up answered in part.

The peer acts only on what it reads (a thread blocked in ``recv``), so
nothing here depends on timing except the bounds under test.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import beanproto
import beanproto_sync

#: Slack for a bound to fire late on a loaded machine.
SLACK = 1.0


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    mine, theirs = socket.socketpair()
    mine.settimeout(10)  # the peer side never waits for ever
    yield mine, theirs
    mine.close()
    theirs.close()


def answer_after(peer: socket.socket, wanted: bytes, reply: bytes) -> threading.Thread:
    """In a thread: read until ``wanted`` has arrived, then write ``reply``."""

    def serve() -> None:
        seen = b""
        while wanted not in seen:
            chunk = peer.recv(4096)
            if not chunk:
                return
            seen += chunk
        peer.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def timed(call: Callable[[], object]) -> tuple[BaseException | None, float]:
    start = time.monotonic()
    try:
        call()
    except BaseException as exc:
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


def test_reserve_with_timeout_never_answered(pair: tuple[socket.socket, socket.socket]) -> None:
    """The reply to reserve(timeout=1) is due 1 s + io_timeout after it went out."""
    _, theirs = pair
    client = beanproto_sync.Client(theirs, io_timeout=0.3)
    error, elapsed = timed(lambda: client.reserve(timeout=1))
    assert type(error) is TimeoutError
    assert "reserve-with-timeout within 1.3 s" in str(error)
    assert "may have run" in str(error)
    assert 1.3 <= elapsed < 1.3 + SLACK
    # Given up (the reply is still owed), and a socket passed in is not replaced.
    with pytest.raises(ConnectionError, match="not replaced"):
        client.put("x")


@pytest.mark.parametrize("part", [b"RESERVED 7 10\r\nhal", b"RESERVED 7 10\r\n", b"RESER"])
def test_reserve_reply_that_starts_and_stalls(
    pair: tuple[socket.socket, socket.socket], part: bytes
) -> None:
    """Once the reply began (even just its line, with the body still due),
    its rest is due within io_timeout, even for a reserve that may wait for
    ever."""
    mine, theirs = pair
    client = beanproto_sync.Client(theirs, io_timeout=0.3)
    answer_after(mine, b"reserve\r\n", part)
    error, elapsed = timed(client.reserve)
    assert type(error) is TimeoutError
    assert elapsed < 0.3 + SLACK


def test_reserve_waits_past_io_timeout(pair: tuple[socket.socket, socket.socket]) -> None:
    """A reply to reserve() that comes well after io_timeout is still taken."""
    mine, theirs = pair
    client = beanproto_sync.Client(theirs, io_timeout=0.2)
    gate = threading.Event()

    def serve() -> None:
        assert mine.recv(4096) == b"reserve\r\n"
        gate.wait(10)
        mine.sendall(b"RESERVED 7 2\r\nhi\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    timer = threading.Timer(0.7, gate.set)  # several io_timeouts later
    timer.start()
    job = client.reserve()
    assert (job.id, job.body) == (7, "hi")
    thread.join(10)
    timer.cancel()


def test_set_up_answered_in_part(pair: tuple[socket.socket, socket.socket]) -> None:
    """connect_timeout bounds the whole set-up, not each reply."""
    mine, theirs = pair
    answer_after(mine, b"ignore default\r\n", b"USING a\r\n")  # and nothing for the watch
    error, elapsed = timed(
        lambda: beanproto_sync.Client(theirs, use="a", watch="b", connect_timeout=0.5)
    )
    assert type(error) is TimeoutError
    assert "setting up the connection" in str(error)
    assert 0.5 <= elapsed < 0.5 + SLACK


def test_kernel_giving_the_peer_up_is_a_lost_reply(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """ETIMEDOUT (keepalive or TCP_USER_TIMEOUT gave up) is a ConnectionError
    that says the command may have run, not an io_timeout."""
    _, theirs = pair
    client = beanproto_sync.Client(theirs)
    dead = TimeoutError(errno.ETIMEDOUT, "Connection timed out")
    failure = client._failure(beanproto.Reserve(), dead)
    assert isinstance(failure, beanproto.ReplyLostError)
    assert "stopped answering" in str(failure)
    expired = client._failure(beanproto.Stats(), BlockingIOError(errno.EAGAIN, "again"))
    assert type(expired) is TimeoutError
    client.close()
