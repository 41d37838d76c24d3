"""The fault settings themselves, without a server: refused when wrong,
before any connection is tried, and turned into the right socket options.

The behaviour under faults (timeouts expiring, servers restarting, peers
vanishing) is tested against real servers in ``test_faults.py``.
"""

from __future__ import annotations

import math
import socket
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import beanproto
import beanproto_asyncio
import beanproto_sync
import beanproto_trio
from beanproto.client import _faults as faults
from beanproto_sync import _client as sync_client

CLIENTS = [beanproto_sync.Client, beanproto_trio.Client, beanproto_asyncio.Client]

#: An address nothing listens on: a client that tried to connect would fail
#: with ConnectionRefusedError, not with the argument error expected.
NOWHERE = ("127.0.0.1", 1)


@pytest.mark.parametrize("cls", CLIENTS, ids=lambda c: c.__module__.split(".")[0])
@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("connect_timeout", 0, beanproto.ArgumentError),
        ("connect_timeout", -1.5, beanproto.ArgumentError),
        ("io_timeout", math.nan, beanproto.ArgumentError),
        ("io_timeout", "5", beanproto.ArgumentTypeError),
        ("io_timeout", True, beanproto.ArgumentTypeError),
        ("keepalive", 0.0, beanproto.ArgumentError),
        ("keepalive", [60], beanproto.ArgumentTypeError),
        ("reconnect", 1, beanproto.ArgumentTypeError),
        ("reconnect", None, beanproto.ArgumentTypeError),
    ],
)
def test_bad_settings_are_refused_before_connecting(
    cls: Any, name: str, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match=name):
        cls(NOWHERE, **{name: value})


@pytest.mark.parametrize("cls", CLIENTS, ids=lambda c: c.__module__.split(".")[0])
def test_defaults(cls: Any) -> None:
    client = cls.__new__(cls)
    client._open = lambda: None  # construct without connecting
    cls.__init__(client, NOWHERE)
    assert client._timeouts == faults.Timeouts(10.0, 30.0, 60.0, True)
    client = cls.__new__(cls)
    client._open = lambda: None
    cls.__init__(
        client, NOWHERE, connect_timeout=None, io_timeout=math.inf, keepalive=5, reconnect=False
    )
    assert client._timeouts == faults.Timeouts(None, None, 5.0, False)


@given(st.floats(min_value=0.001, max_value=10_000))
def test_keepalive_gives_up_about_when_asked(seconds: float) -> None:
    idle, interval, count = faults.keepalive_settings(seconds)
    assert min(idle, interval, count) >= 1
    total = idle + interval * count
    # Whole seconds, and never less than 3 probes' worth: within a second or
    # two of the request, or 3-4 s for a tiny one.
    assert abs(total - max(3, seconds)) <= 1.5
    assert idle >= interval  # probing starts only after real silence


def test_keepalive_options_on_a_socket() -> None:
    with socket.socket() as sock:
        faults.set_keepalive(sock, 4)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            idle, interval, count = faults.keepalive_settings(4)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == idle
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == interval
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == count
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 4000
    with socket.socket() as sock:
        faults.set_keepalive(sock, None)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


def test_server_wait() -> None:
    assert faults.server_wait(beanproto.Put(body=b"x")) == 0.0
    assert faults.server_wait(beanproto.ReserveWithTimeout(timeout=7)) == 7.0
    assert faults.server_wait(beanproto.Reserve()) is None
    assert faults.server_wait(beanproto.ReserveJob(id=3)) == 0.0
    assert faults.reply_timeout(beanproto.ReserveWithTimeout(timeout=7), 2.0) == 9.0
    assert faults.reply_timeout(beanproto.ReserveWithTimeout(timeout=7), None) is None
    assert faults.reply_timeout(beanproto.Reserve(), 2.0) is None
    assert faults.reply_timeout(beanproto.Stats(), 2.0) == 2.0


@given(st.one_of(st.none(), st.floats(min_value=1e-9, max_value=2**31)))
def test_timeval_never_rounds_a_bound_to_no_bound(seconds: float | None) -> None:
    sec, usec = struct.unpack("@ll", sync_client._timeval(seconds))
    assert 0 <= usec < 1_000_000
    if seconds is None:
        assert (sec, usec) == (0, 0)
    else:
        assert (sec, usec) != (0, 0)
        assert abs(sec + usec / 1e6 - seconds) <= 1e-6 + 1e-9 * seconds


def test_errors() -> None:
    lost = faults.reply_lost("reset")
    assert isinstance(lost, beanproto.ReplyLostError)
    assert isinstance(lost, ConnectionError)
    assert not isinstance(lost, beanproto.Error)  # greenstalk's except Error stays apart
    assert "may have run" in str(lost)
    assert issubclass(beanproto.ConnectionClosedError, beanproto.ReplyLostError)
    late = faults.reply_timed_out("put", 1.5)
    assert type(late) is TimeoutError
    assert "1.5 s" in str(late) and "may have run" in str(late)
    for package in (beanproto_sync, beanproto_trio, beanproto_asyncio):
        assert package.ReplyLostError is beanproto.ReplyLostError


@pytest.mark.skipif(not sync_client._KERNEL_TIMEOUTS, reason="kernel socket timeouts are Linux's")
def test_blocking_client_bounds_waits_in_the_kernel() -> None:
    """io_timeout becomes SO_RCVTIMEO/SO_SNDTIMEO on a blocking socket (no
    poll before every read); a set-up-free connect needs no server reply."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = beanproto_sync.Client(listener.getsockname(), io_timeout=2.5, keepalive=7)
        try:
            link = client._link
            assert link is not None
            sock = link.sock
            assert sock.gettimeout() is None
            for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
                assert sock.getsockopt(socket.SOL_SOCKET, option, 16) == struct.pack(
                    "@ll", 2, 500_000
                )
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 7000
        finally:
            client.close()
