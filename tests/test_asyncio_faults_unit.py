"""The asyncio client's fault model against scripted peers (no beanstalkd).

A :class:`Peer` is a loopback server on the test's own event loop that plays
a script per connection: it never answers, answers late, answers a part of a
reply at a time, or hangs up after reading a command. It records every
command it read, so a test can check that nothing was sent twice.

What is checked: ``connect_timeout`` over connecting and the ``use``/
``watch`` set-up, ``io_timeout`` on an ordinary call and while a large body
is written, a ``reserve`` whose wait is never cut by ``io_timeout``, the
deadline of pipelined calls (one late, the others ``ReplyLostError``), a slow
but progressing reply, lost replies (never resent), ``reconnect=False``,
keepalive on the socket, and ``close()`` during any wait (no task, timer or
socket left).

Every test runs under :data:`BOUND` seconds (``asyncio.wait_for``: Python
3.10 has no ``asyncio.timeout``). Nothing sleeps to synchronise: the peers'
scripts sleep to be slow (that is their behaviour), and the tests wait on
events the peers set.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import beanproto
import beanproto_asyncio
from beanproto.client._faults import keepalive_settings

#: Seconds any one test may take.
BOUND = 10.0

#: Added to an expected duration's upper end (a busy machine runs late).
SLACK = 1.0

#: The lower end of an expected duration may come this much early (the
#: loop's clock resolution, rounding).
EARLY = 0.05

Script = Callable[["PeerConnection"], Awaitable[None]]


def run(body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body()`` on a fresh loop, bounded; then check that it left no
    task behind."""

    async def bounded() -> None:
        await asyncio.wait_for(body(), BOUND)
        leftover = asyncio.all_tasks() - {asyncio.current_task()}
        assert not leftover, f"tasks left behind: {leftover}"

    asyncio.run(bounded())


class PeerConnection:
    """One connection a :class:`Peer` accepted."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.commands: list[bytes] = []
        #: Set when the client's end is closed (end of file or reset).
        self.closed = asyncio.Event()
        #: Set each time a command has been read (cleared by who waits).
        self.got = asyncio.Event()

    async def command(self) -> bytes | None:
        """Read one command (with its body); ``None`` once the client closed."""
        try:
            line = await self.reader.readline()
            if not line.endswith(b"\r\n"):
                raise asyncio.IncompleteReadError(line, None)
            data = line
            if line.startswith(b"put "):
                data += await self.reader.readexactly(int(line.split()[4]) + 2)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.set()
            return None
        self.commands.append(data)
        self.got.set()
        return data

    async def commands_until(self, count: int) -> None:
        """Read until ``count`` commands have come (for scripts)."""
        while len(self.commands) < count:
            if await self.command() is None:
                raise AssertionError(f"the client closed after {self.commands}")

    async def received(self, count: int) -> None:
        """Wait until the script has read ``count`` commands (for tests)."""
        while len(self.commands) < count:
            self.got.clear()
            await self.got.wait()

    async def silent(self) -> None:
        """Read every command and never answer, until the client closes."""
        while await self.command() is not None:
            pass

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def reset(self) -> None:
        """Hang up with a RST."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


def answer(command: bytes) -> bytes:
    """What beanstalkd answers to the few commands these tests send."""
    words = command.split(b"\r\n", 1)[0].split()
    if words[0] == b"use":
        return b"USING " + words[1] + b"\r\n"
    if words[0] == b"watch":
        return b"WATCHING 2\r\n"
    if words[0] == b"ignore":
        return b"WATCHING 1\r\n"
    if words[0] == b"list-tube-used":
        return b"USING default\r\n"
    if words[0] == b"put":
        return b"INSERTED 1\r\n"
    if words[0] == b"delete":
        return b"DELETED\r\n"
    if words[0] in (b"reserve", b"reserve-with-timeout"):
        return b"RESERVED 1 2\r\nhi\r\n"
    raise AssertionError(f"unexpected command {command!r}")


async def answering(conn: PeerConnection) -> None:
    """A well-behaved server."""
    while (command := await conn.command()) is not None:
        conn.send(answer(command))


class Peer:
    """A scripted server on loopback: connection ``n`` plays ``scripts[n]``
    (the last script plays every connection after)."""

    def __init__(self, *scripts: Script, listener: socket.socket | None = None) -> None:
        self.scripts = scripts
        self.connections: list[PeerConnection] = []
        self.accepted = asyncio.Event()
        self._listener = listener
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> Peer:
        if self._listener is not None:
            self.server = await asyncio.start_server(self._handle, sock=self._listener)
        else:
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.address: tuple[str, int] = self.server.sockets[0].getsockname()[:2]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = PeerConnection(reader, writer)
        self.connections.append(conn)
        self.accepted.set()
        script = self.scripts[min(len(self.connections), len(self.scripts)) - 1]
        try:
            await script(conn)
        finally:
            writer.transport.abort()

    async def connection(self, n: int) -> PeerConnection:
        """Connection ``n`` (from 0), once accepted."""
        while len(self.connections) <= n:
            self.accepted.clear()
            await self.accepted.wait()
        return self.connections[n]

    def commands(self) -> list[list[bytes]]:
        return [conn.commands for conn in self.connections]

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for conn in self.connections:  # every script then ends (reads fail)
            conn.writer.transport.abort()
            conn.closed.set()
        if self._tasks:
            await asyncio.wait(self._tasks)
        await self.server.wait_closed()


async def timed(call: Awaitable[Any]) -> tuple[BaseException | None, float]:
    """Await ``call``; what it raised (or ``None``) and how long it took."""
    start = time.monotonic()
    try:
        await call
    except Exception as exc:
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


def link_of(client: beanproto_asyncio.Client[Any]) -> Any:
    return client._link


async def until(check: Callable[[], bool]) -> None:
    """Let the loop run until ``check()`` holds (bounded by the test's BOUND)."""
    while not check():
        await asyncio.sleep(0)


# -- connect_timeout -------------------------------------------------------------------


def test_connect_timeout_bounds_the_set_up() -> None:
    async def body() -> None:
        async with Peer(PeerConnection.silent, answering) as peer:
            client = beanproto_asyncio.Client(peer.address, use="x", connect_timeout=0.5)
            error, elapsed = await timed(client.put("a"))
            assert type(error) is TimeoutError, repr(error)  # the builtin, also on 3.10
            assert f"connecting to 127.0.0.1:{peer.address[1]}" in str(error)
            assert "0.5 s" in str(error)
            assert 0.5 - EARLY <= elapsed <= 0.5 + SLACK
            first = await peer.connection(0)
            await first.closed.wait()  # the half set-up connection was given up
            # The next call connects again; the put goes out once, there.
            assert await client.put("b") == 1
            assert peer.commands() == [[b"use x\r\n"], [b"use x\r\n", b"put 65536 0 60 1\r\nb\r\n"]]
            await client.close()

    run(body)


def test_without_connect_timeout_io_timeout_bounds_the_set_up() -> None:
    async def body() -> None:
        async with Peer(PeerConnection.silent) as peer:
            client = beanproto_asyncio.Client(
                peer.address, use="x", connect_timeout=None, io_timeout=0.3
            )
            error, elapsed = await timed(client.stats())
            assert type(error) is TimeoutError, repr(error)
            assert "the reply to use took longer than 0.3 s" in str(error)
            assert 0.3 - EARLY <= elapsed <= 0.3 + SLACK
            await client.close()

    run(body)


def test_a_set_up_cut_off_is_a_plain_connection_error() -> None:
    # The caller's own command never left: nothing of it can have run.
    async def hangs_up(conn: PeerConnection) -> None:
        await conn.commands_until(1)

    async def body() -> None:
        async with Peer(hangs_up, answering) as peer:
            client = beanproto_asyncio.Client(peer.address, use="x")
            with pytest.raises(ConnectionError, match="setting the connection up") as caught:
                await client.put("a")
            assert not isinstance(caught.value, beanproto.ReplyLostError)
            assert await client.put("b") == 1
            assert peer.commands() == [[b"use x\r\n"], [b"use x\r\n", b"put 65536 0 60 1\r\nb\r\n"]]
            await client.close()

    run(body)


class HangingConnect:
    """Replaces ``loop.create_connection``: a TCP handshake that never ends."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.entered = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.loop = loop

    async def __call__(self, *args: object, **kwargs: object) -> Any:
        self.entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    def __enter__(self) -> HangingConnect:
        self.loop.create_connection = self  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.loop.create_connection


def test_connect_timeout_bounds_opening_the_connection() -> None:
    async def body() -> None:
        with HangingConnect(asyncio.get_running_loop()) as hanging:
            client = beanproto_asyncio.Client(("127.0.0.1", 9), connect_timeout=0.3)
            error, elapsed = await timed(client.stats())
            assert type(error) is TimeoutError, repr(error)
            assert "connecting to 127.0.0.1:9 took longer than 0.3 s" in str(error)
            assert 0.3 - EARLY <= elapsed <= 0.3 + SLACK
            assert hanging.cancelled.is_set()
            await client.close()

    run(body)


def test_cancelling_a_connecting_call_is_cancellation() -> None:
    async def body() -> None:
        with HangingConnect(asyncio.get_running_loop()) as hanging:
            client = beanproto_asyncio.Client(("127.0.0.1", 9), connect_timeout=5)
            task = asyncio.create_task(client.stats())
            await hanging.entered.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert hanging.cancelled.is_set()
            await client.close()

    run(body)


def test_close_ends_a_call_still_opening_its_connection() -> None:
    async def body() -> None:
        with HangingConnect(asyncio.get_running_loop()) as hanging:
            client = beanproto_asyncio.Client(("127.0.0.1", 9), connect_timeout=None)
            task = asyncio.create_task(client.stats())
            await hanging.entered.wait()
            await client.close()
            error, elapsed = await timed(task)
            assert type(error) is ConnectionError, repr(error)  # nothing was sent
            assert "closed" in str(error)
            assert elapsed < SLACK
            assert hanging.cancelled.is_set()

    run(body)


# -- io_timeout ----------------------------------------------------------------------


def test_io_timeout_on_put_gives_the_connection_up_and_never_resends() -> None:
    async def body() -> None:
        async with Peer(PeerConnection.silent, answering) as peer:
            client = beanproto_asyncio.Client(peer.address, io_timeout=0.5)
            error, elapsed = await timed(client.put("x"))
            assert type(error) is TimeoutError, repr(error)
            assert "the reply to put took longer than 0.5 s" in str(error)
            assert 0.5 - EARLY <= elapsed <= 0.5 + SLACK
            await (await peer.connection(0)).closed.wait()
            assert await client.using() == "default"  # on a new connection
            assert peer.commands() == [[b"put 65536 0 60 1\r\nx\r\n"], [b"list-tube-used\r\n"]]
            await client.close()

    run(body)


def test_one_timer_per_connection_not_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        armed = 0
        call_at = loop.call_at

        def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal armed
            armed += 1
            return call_at(when, callback, *args, **kwargs)

        async with Peer(answering) as peer:
            async with beanproto_asyncio.Client(peer.address, io_timeout=30) as client:
                monkeypatch.setattr(loop, "call_at", counting)
                for _ in range(100):
                    await client.put("x")
                await client.reserve(timeout=1)
                await client.delete(1)
                assert armed == 1
                timer = link_of(client).timer
                assert timer is not None
            assert link_of(client).timer is None and timer.cancelled()  # closed: no timer left

    run(body)


def test_io_timeout_does_not_cut_reserve_with_timeout() -> None:
    async def late(conn: PeerConnection) -> None:
        while (command := await conn.command()) is not None:
            if command.startswith(b"reserve-with-timeout"):
                await asyncio.sleep(1.5)  # the server waits for a job, in vain
                conn.send(b"TIMED_OUT\r\n")
            else:
                conn.send(answer(command))

    async def body() -> None:
        async with Peer(late) as peer:
            async with beanproto_asyncio.Client(peer.address, io_timeout=0.5) as client:
                error, elapsed = await timed(client.reserve(timeout=2))
                assert isinstance(error, beanproto_asyncio.TimedOutError), repr(error)
                assert elapsed >= 1.5 - EARLY
                assert await client.put("after") == 1  # the same connection
            assert len(peer.connections) == 1

    run(body)


def test_reserve_with_timeout_is_bounded_by_its_timeout_plus_io_timeout() -> None:
    async def body() -> None:
        async with Peer(PeerConnection.silent) as peer:
            client = beanproto_asyncio.Client(peer.address, io_timeout=0.5)
            error, elapsed = await timed(client.reserve(timeout=1))
            assert type(error) is TimeoutError, repr(error)
            assert "the reply to reserve-with-timeout took longer than 1.5 s" in str(error)
            assert 1.5 - EARLY <= elapsed <= 1.5 + SLACK
            await client.close()

    run(body)


def test_reserve_without_timeout_waits_past_io_timeout() -> None:
    async def late(conn: PeerConnection) -> None:
        await conn.commands_until(1)
        await asyncio.sleep(1.0)  # 5 x io_timeout: a job comes at last
        conn.send(b"RESERVED 3 2\r\nhi\r\n")
        await conn.silent()

    async def body() -> None:
        async with Peer(late) as peer:
            async with beanproto_asyncio.Client(peer.address, io_timeout=0.2) as client:
                job = await client.reserve()
                assert (job.id, job.body) == (3, "hi")

    run(body)


def test_a_reserve_reply_that_stops_half_way_times_out() -> None:
    # Once the reply has begun the server is not waiting any more: the rest
    # is due within io_timeout, even for reserve().
    async def stalls(conn: PeerConnection) -> None:
        await conn.commands_until(1)
        conn.send(b"RESERVED 3 100\r\npart")
        await conn.silent()

    async def body() -> None:
        async with Peer(stalls) as peer:
            client = beanproto_asyncio.Client(peer.address, io_timeout=0.3)
            error, elapsed = await timed(client.reserve())
            assert type(error) is TimeoutError, repr(error)
            assert 0.3 - EARLY <= elapsed <= 0.3 + SLACK
            await client.close()

    run(body)


def test_a_slow_but_progressing_reply_is_not_cut() -> None:
    body_bytes = bytes(range(256)) * 16  # 4 KiB

    async def trickles(conn: PeerConnection) -> None:
        await conn.commands_until(1)
        conn.send(b"RESERVED 5 %d\r\n" % len(body_bytes))
        for start in range(0, len(body_bytes), 512):  # 8 pieces, 0.15 s apart
            await asyncio.sleep(0.15)
            conn.send(body_bytes[start : start + 512])
        conn.send(b"\r\n")
        await conn.silent()

    async def body() -> None:
        async with Peer(trickles) as peer:
            client = beanproto_asyncio.Client(peer.address, encoding=None, io_timeout=0.4)
            start = time.monotonic()
            job = await client.reserve()
            assert time.monotonic() - start >= 1.2 - EARLY  # 3 x io_timeout
            assert (job.id, job.body) == (5, body_bytes)
            await client.close()

    run(body)


def test_pipelined_calls_one_late_the_others_reply_lost() -> None:
    """Three calls outstanding on one connection; the first is answered
    after 0.3 s, then nothing: the second's deadline runs from that reply
    (not from its own send), it gets TimeoutError, the third ReplyLostError."""

    async def first_only(conn: PeerConnection) -> None:
        await conn.commands_until(3)
        await asyncio.sleep(0.3)
        conn.send(b"INSERTED 1\r\n")
        await conn.silent()

    async def body() -> None:
        async with Peer(first_only, answering) as peer:
            client = beanproto_asyncio.Client(peer.address, io_timeout=0.5)
            await client.__aenter__()  # connected: the three go out on it
            start = time.monotonic()
            calls = [
                asyncio.create_task(timed(call))
                for call in (client.put("a"), client.put("b"), client.stats())
            ]
            (e1, _), (e2, t2), (e3, _) = await asyncio.gather(*calls)
            assert e1 is None
            assert type(e2) is TimeoutError, repr(e2)
            assert 0.8 - EARLY <= time.monotonic() - start
            assert 0.8 - EARLY <= t2 <= 0.8 + SLACK
            assert type(e3) is beanproto.ReplyLostError, repr(e3)
            assert "may have run" in str(e3)
            # Given up; the next call connects again.
            assert await client.using() == "default"
            assert len(peer.connections) == 2
            await client.close()

    run(body)


def _small_buffer_listener() -> socket.socket:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


async def _small_buffer_socket(address: tuple[str, int]) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, address)
    return sock


def test_a_large_put_written_slowly_is_not_cut() -> None:
    big = b"z" * (3 * 1024 * 1024)

    async def slow_reader(conn: PeerConnection) -> None:
        line = await conn.reader.readline()
        received = 0
        while received < len(big) + 2:  # about 1.5 s in all, 0.05 s per 100 KiB
            size = min(100 * 1024, len(big) + 2 - received)
            await conn.reader.readexactly(size)
            received += size
            await asyncio.sleep(0.05)
        conn.commands.append(line)
        conn.send(b"INSERTED 9\r\n")
        await conn.silent()

    async def body() -> None:
        async with Peer(slow_reader, listener=_small_buffer_listener()) as peer:
            sock = await _small_buffer_socket(peer.address)
            client = beanproto_asyncio.Client(sock, encoding=None, io_timeout=0.4)
            start = time.monotonic()
            assert await client.put(big) == 9
            assert time.monotonic() - start > 0.8  # 2 x io_timeout
            await client.close()

    run(body)


def test_a_large_put_the_server_stops_reading_times_out() -> None:
    big = b"z" * (3 * 1024 * 1024)

    async def stops(conn: PeerConnection) -> None:
        await conn.reader.readline()
        await conn.reader.readexactly(64 * 1024)
        await conn.closed.wait()  # reads no more

    async def body() -> None:
        async with Peer(stops, listener=_small_buffer_listener()) as peer:
            sock = await _small_buffer_socket(peer.address)
            client = beanproto_asyncio.Client(sock, encoding=None, io_timeout=0.3)
            error, elapsed = await timed(client.put(big))
            assert type(error) is TimeoutError, repr(error)
            assert "writing to the server took longer than 0.3 s" in str(error)
            assert elapsed <= 0.3 + SLACK
            assert link_of(client).writing is None
            await client.close()

    run(body)


# -- lost replies ----------------------------------------------------------------------


@pytest.mark.parametrize("hang_up", ["fin", "rst"])
def test_a_lost_reply_is_reply_lost_and_never_resent(hang_up: str) -> None:
    async def loses(conn: PeerConnection) -> None:
        while (command := await conn.command()) is not None:
            if command.startswith(b"put"):
                if hang_up == "rst":
                    conn.reset()
                return  # the peer closes: the reply never comes
            conn.send(answer(command))

    async def body() -> None:
        async with Peer(loses, answering) as peer:
            client = beanproto_asyncio.Client(peer.address, use="jobs")
            with pytest.raises(beanproto.ReplyLostError):
                await client.put("once")
            assert await client.using() == "default"  # (the scripted answer)
            assert peer.commands() == [
                [b"use jobs\r\n", b"put 65536 0 60 4\r\nonce\r\n"],
                [b"use jobs\r\n", b"list-tube-used\r\n"],
            ]
            await client.close()

    run(body)


def test_calls_behind_a_cancelled_reserve_are_reply_lost() -> None:
    async def body() -> None:
        async with Peer(PeerConnection.silent, answering) as peer:
            client = beanproto_asyncio.Client(peer.address)
            await client.__aenter__()
            reserving = asyncio.create_task(client.reserve())
            putting = asyncio.create_task(client.put("behind"))
            conn = await peer.connection(0)
            await conn.received(2)
            reserving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reserving
            with pytest.raises(beanproto.ReplyLostError, match="a reserve was cancelled"):
                await putting
            await conn.closed.wait()
            assert await client.put("next") == 1  # reconnects; nothing resent
            assert peer.commands()[1] == [b"put 65536 0 60 4\r\nnext\r\n"]
            await client.close()

    run(body)


def test_an_idle_connection_the_server_closed_is_no_error() -> None:
    async def once(conn: PeerConnection) -> None:
        command = await conn.command()
        assert command is not None
        conn.send(answer(command))  # then hang up, idle

    async def body() -> None:
        async with Peer(once, answering) as peer:
            client = beanproto_asyncio.Client(peer.address)
            assert await client.put("a") == 1
            await until(lambda: link_of(client).error is not None)  # the EOF seen
            assert await client.put("b") == 1  # silently on a new connection
            assert len(peer.connections) == 2
            await client.close()

    run(body)


def test_close_ends_every_waiting_call_and_leaves_nothing() -> None:
    async def body() -> None:
        async with Peer(PeerConnection.silent) as peer:
            client = beanproto_asyncio.Client(peer.address, io_timeout=5)
            await client.__aenter__()
            link = link_of(client)
            calls = [asyncio.create_task(timed(c)) for c in (client.reserve(), client.stats())]
            conn = await peer.connection(0)
            await conn.received(2)
            timer = link.timer
            assert timer is not None
            await client.close()
            for error, elapsed in await asyncio.gather(*calls):
                assert isinstance(error, beanproto.ReplyLostError), repr(error)
                assert elapsed < SLACK
            assert link.timer is None and timer.cancelled()
            await conn.closed.wait()
            assert link.transport.is_closing()
            with pytest.raises(ConnectionError):
                await client.stats()

    run(body)


# -- reconnect=False -------------------------------------------------------------------


def test_without_reconnect_a_lost_connection_stays_lost() -> None:
    async def once(conn: PeerConnection) -> None:
        command = await conn.command()
        assert command is not None
        conn.send(answer(command))

    async def body() -> None:
        async with Peer(once, answering) as peer:
            client = beanproto_asyncio.Client(peer.address, reconnect=False)
            assert await client.put("a") == 1
            await until(lambda: link_of(client).error is not None)
            for _ in range(2):
                with pytest.raises(ConnectionError, match="reconnect=False") as caught:
                    await client.put("b")
                assert type(caught.value) is ConnectionError  # refused before sending
            assert len(peer.connections) == 1
            await client.close()

    run(body)


def test_without_reconnect_a_lost_reply_then_refusals() -> None:
    async def loses(conn: PeerConnection) -> None:
        await conn.commands_until(1)

    async def body() -> None:
        async with Peer(loses, answering) as peer:
            client = beanproto_asyncio.Client(peer.address, reconnect=False)
            with pytest.raises(beanproto.ReplyLostError):
                await client.put("a")
            with pytest.raises(ConnectionError) as caught:
                await client.put("b")
            assert not isinstance(caught.value, beanproto.ReplyLostError)
            assert len(peer.connections) == 1
            await client.close()

    run(body)


# -- keepalive -------------------------------------------------------------------------


@pytest.mark.parametrize("keepalive", [7.0, None])
def test_keepalive_on_the_tcp_socket(keepalive: float | None) -> None:
    async def body() -> None:
        async with Peer(answering) as peer:
            client = beanproto_asyncio.Client(peer.address, keepalive=keepalive)
            async with client:
                sock = link_of(client).transport.get_extra_info("socket")
                on = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
                if keepalive is None:
                    assert not on
                    return
                assert on
                idle, interval, count = keepalive_settings(keepalive)
                if hasattr(socket, "TCP_KEEPIDLE"):
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == idle
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == interval
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == count
                if hasattr(socket, "TCP_USER_TIMEOUT"):
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 7000

    run(body)


def test_a_socket_passed_in_is_left_as_it_is() -> None:
    async def body() -> None:
        async with Peer(answering) as peer:
            sock = await _small_buffer_socket(peer.address)
            async with beanproto_asyncio.Client(sock, keepalive=5) as client:
                assert await client.put("x") == 1
                assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)

    run(body)
