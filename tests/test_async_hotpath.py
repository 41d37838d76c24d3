"""The async clients' hot path (issue 9): what it leaves out, and the rare
paths it hands over to.

A call on a connection that is ready costs no clock read and no coroutine of
the client's own (asyncio), or no lock bookkeeping and one schedule point
(trio). These tests pin what that must not change:

* asyncio: calls read the clock only to arm the watchdog; an oldest call the
  watchdog first sees at one of its looks is due ``io_timeout`` from then,
  never earlier and at most a look later; a reserve cancelled after its job
  arrived (the reply in its future, the task not yet resumed) still closes
  the connection, so the job goes back at once.
* trio: every call yields (other tasks run while one task puts in a loop);
  tasks waiting to read, some cancelled while they wait, all get their own
  replies; commands that do not fit in the socket go out whole and in order
  while other tasks queue behind them; a socket passed in is closed with the
  duplicate the client reads through.
* both: a reply larger than one read comes through whole.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

import beanproto_asyncio
import beanproto_trio
from conftest import address_of, new_tube

#: Seconds any one test may take.
BOUND = 20.0

#: Added to an expected duration's upper end (a busy machine runs late).
SLACK = 1.0

#: The lower end of an expected duration may come this much early (the
#: loop's clock resolution, rounding).
EARLY = 0.05


def run_asyncio(body: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(body(), BOUND)

    asyncio.run(bounded())


def run_trio(body: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        with trio.fail_after(BOUND):
            await body()

    trio.run(bounded)


# == asyncio ==============================================================================


class Silent(asyncio.Protocol):
    """A peer that answers the n-th put after ``delays[n]`` seconds
    (``None``: never), and everything else at once."""

    def __init__(self, delays: list[float | None]) -> None:
        self.delays = delays
        self.buffer = b""
        self.puts = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        loop = asyncio.get_running_loop()
        while b"\r\n" in self.buffer:
            line, rest = self.buffer.split(b"\r\n", 1)
            words = line.split()
            if words[0] == b"put":
                size = int(words[4])
                if len(rest) < size + 2:
                    return
                self.buffer = rest[size + 2 :]
                delay = self.delays[self.puts] if self.puts < len(self.delays) else 0.0
                self.puts += 1
                if delay is not None:
                    reply = b"INSERTED %d\r\n" % self.puts
                    loop.call_later(delay, self._send, reply)
            else:
                self.buffer = rest
                self._send(b"USING default\r\n")

    def _send(self, data: bytes) -> None:
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(data)


async def timed(call: Awaitable[Any]) -> tuple[Any, float]:
    start = time.monotonic()
    try:
        result = await call
    except Exception as exc:
        return exc, time.monotonic() - start
    return result, time.monotonic() - start


def test_asyncio_calls_read_the_clock_only_to_arm_the_watchdog() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Silent([]), "127.0.0.1", 0)
        address = server.sockets[0].getsockname()[:2]
        async with beanproto_asyncio.Client(address, io_timeout=30) as client:
            link = client._link
            assert link is not None
            reads = 0
            clock = link.time

            def counting() -> float:
                nonlocal reads
                reads += 1
                return clock()

            link.time = counting
            for _ in range(200):
                assert await client.put("x") >= 1
            assert reads <= 1  # the first call armed the timer; the others read nothing
        server.close()
        await server.wait_closed()

    run_asyncio(body)


@pytest.mark.parametrize("pipelined", [False, True])
def test_asyncio_a_call_that_became_the_oldest_between_looks_is_never_cut_early(
    pipelined: bool,
) -> None:
    io = 0.4

    async def body() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Silent([0.3, None]), "127.0.0.1", 0)
        address = server.sockets[0].getsockname()[:2]
        async with beanproto_asyncio.Client(address, io_timeout=io) as client:
            start = time.monotonic()
            first = asyncio.ensure_future(timed(client.put("a")))
            if pipelined:
                second = asyncio.ensure_future(timed(client.put("b")))
                result, elapsed = await first
                assert result == 1 and elapsed <= 0.3 + SLACK
                error, elapsed = await second
                # Due io after the reply before it (at 0.3 s): the watchdog
                # first saw it as the oldest at a later look.
                due = 0.3 + io
            else:
                assert (await first)[0] == 1  # 0.3 s: slow, not late
                error, elapsed = await timed(client.put("b"))
                due = io
            assert type(error) is TimeoutError, repr(error)
            if pipelined:
                elapsed = time.monotonic() - start
            assert due - EARLY <= elapsed <= due + io + SLACK
        server.close()
        await server.wait_closed()

    run_asyncio(body)


def test_asyncio_a_reserve_cancelled_after_its_job_came_releases_the_job(
    tcp_server: Any,
) -> None:
    """The reply is in the reserve's future, but the task is cancelled before
    it resumes: the job would be reserved for nobody until its TTR. The
    connection is closed instead, and the job is ready again at once."""
    tube = new_tube()
    address = address_of(tcp_server)

    async def body() -> None:
        async with (
            beanproto_asyncio.Client(address, use=tube, watch=tube) as other,
            beanproto_asyncio.Client(address, watch=tube) as consumer,
        ):
            job_id = await other.put("the job", ttr=120)
            link = consumer._link
            assert link is not None
            reserving: asyncio.Task[Any] | None = None
            make = link.new_future

            def with_cancel() -> asyncio.Future[Any]:
                # Registered before the task awaits the future, so it runs
                # first when the reply arrives: the task is cancelled with the
                # job already in its future.
                future = make()
                assert reserving is not None
                future.add_done_callback(lambda _: reserving.cancel())  # type: ignore[union-attr]
                return future

            link.new_future = with_cancel
            reserving = asyncio.ensure_future(consumer.reserve())
            await asyncio.wait([reserving])
            assert reserving.cancelled()
            assert link.error is not None  # the connection was given up
            job = await other.reserve(timeout=0)  # ready again at once, not after 120 s
            assert job.id == job_id
            await other.delete(job)

    run_asyncio(body)


class HalfReply(asyncio.Protocol):
    """A peer that answers a reserve with the start of a reply and its body,
    then hangs up."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if data.startswith(b"reserve"):
            self.transport.write(b"RESERVED 1 100000\r\n" + b"x" * 1000)
            asyncio.get_running_loop().call_later(0.05, self.transport.close)


def test_asyncio_a_reply_cut_off_while_read_into_the_buffer() -> None:
    """The rest of a reply that came in part is read through the link's
    buffered protocol; an end of file then still reaches the call."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(HalfReply, "127.0.0.1", 0)
        address = server.sockets[0].getsockname()[:2]
        client = beanproto_asyncio.Client(address, io_timeout=5)
        await client.__aenter__()
        link = client._link
        assert link is not None
        error, _ = await timed(client.reserve())
        assert isinstance(error, beanproto_asyncio.ReplyLostError), repr(error)
        assert link.into_buffer is not None  # the rest was read into the buffer
        await client.close()
        server.close()
        await server.wait_closed()

    run_asyncio(body)


# == trio =================================================================================


def test_trio_every_call_yields(tcp_server: Any) -> None:
    tube = new_tube()

    async def body() -> None:
        turns = 0
        done = False

        async def other_task() -> None:
            nonlocal turns
            while not done:
                turns += 1
                await trio.lowlevel.checkpoint()

        async with (
            beanproto_trio.Client(address_of(tcp_server), use=tube, watch=tube) as client,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(other_task)
            await trio.lowlevel.checkpoint()
            before = turns
            for _ in range(100):
                await client.put("x")
            done = True
            # Each call yielded at least once: the other task ran about once
            # per call (trio may run it before or after the caller in a turn).
            assert turns - before >= 90

    run_trio(body)


def test_trio_waiting_readers_some_cancelled_all_get_their_replies(tcp_server: Any) -> None:
    tube = new_tube()

    async def body() -> None:
        results: dict[int, Any] = {}
        timed_out: list[Exception] = []

        async with beanproto_trio.Client(address_of(tcp_server), use=tube, watch=tube) as client:

            async def call(n: int, scope: trio.CancelScope) -> None:
                with scope:
                    results[n] = await client.using()

            async def waiting_reserve() -> None:
                try:
                    await client.reserve(timeout=1)
                except beanproto_trio.TimedOutError as exc:
                    timed_out.append(exc)

            async with trio.open_nursery() as nursery:
                # The reserve holds the read until the server's 1 s is up; the
                # calls behind it wait for the read (parked), in order.
                nursery.start_soon(waiting_reserve)
                await trio.testing.wait_all_tasks_blocked()
                scopes = [trio.CancelScope() for _ in range(8)]
                for n, scope in enumerate(scopes):
                    nursery.start_soon(call, n, scope)
                await trio.testing.wait_all_tasks_blocked()
                assert client._recv_lock.waiting == 8
                scopes[2].cancel()
                scopes[5].cancel()
            assert len(timed_out) == 1
            assert results == {n: tube for n in range(8) if n not in (2, 5)}
            assert not client._recv_lock.held and client._recv_lock.waiting == 0
            # The cancelled calls' replies were dropped, not taken for others'.
            assert await client.put("after") >= 1
            assert await client.using() == tube

    run_trio(body)


def test_trio_commands_that_do_not_fit_go_out_whole_and_in_order() -> None:
    """Forty 16 KiB puts from forty tasks on one client, to a peer that does
    not read until they are all queued: the socket fills up, a command goes
    out in parts (under the send lock), the others wait for it; then each
    body arrives whole, and each task gets the reply to its own put."""
    count, size = 40, 16 * 1024

    async def body() -> None:
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        # Small buffers on both ends (the accepted socket inherits them).
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client_sock = trio.socket.socket()
        client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        await client_sock.connect(listener.getsockname())
        server, _ = await listener.accept()
        ids: dict[int, int] = {}
        client = beanproto_trio.Client(client_sock, encoding=None)
        await client.__aenter__()

        async def put(n: int) -> None:
            ids[n] = await client.put(bytes([n]) * size)

        async with trio.open_nursery() as nursery:
            for n in range(count):
                nursery.start_soon(put, n)
            # Every task has queued (or waits to queue) its command.
            await trio.testing.wait_all_tasks_blocked()
            assert client._send_lock.held  # a command is out only in part
            data = b""
            bodies: list[int] = []
            while len(bodies) < count:
                data += await server.recv(65536)
                while True:
                    head, sep, rest = data.partition(b"\r\n")
                    if not sep:
                        break
                    length = int(head.split()[4])
                    if len(rest) < length + 2:
                        break
                    job, data = rest[:length], rest[length + 2 :]
                    assert job == job[:1] * size  # whole, not interleaved
                    bodies.append(job[0])
                    await server.send(b"INSERTED %d\r\n" % (1000 + job[0]))
        assert sorted(bodies) == list(range(count))
        assert ids == {n: 1000 + n for n in range(count)}
        await client.close()
        server.close()
        listener.close()

    run_trio(body)


def test_trio_a_socket_passed_in_is_closed_with_the_clients_duplicate() -> None:
    async def body() -> None:
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        sock = trio.socket.socket()
        await sock.connect(listener.getsockname())
        server, _ = await listener.accept()
        client = beanproto_trio.Client(sock)
        await client.__aenter__()

        async def answer() -> None:
            assert (await server.recv(100)).startswith(b"put ")
            await server.send(b"INSERTED 7\r\n")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer)
            assert await client.put("x") == 7
        link = client._link
        assert link is not None
        duplicate = link.raw.fileno()
        assert duplicate != sock.fileno()
        await client.close()
        assert sock.fileno() == -1  # closed, as a socket passed in always was
        with pytest.raises(OSError):
            os.fstat(duplicate)
        server.close()
        listener.close()

    run_trio(body)


# == both =================================================================================


@pytest.mark.parametrize("flavor", ["trio", "asyncio"])
def test_a_reply_larger_than_one_read_comes_whole(tcp_server: Any, flavor: str) -> None:
    tube = new_tube()
    body_bytes = bytes(range(256)) * (1024 * 1024 // 256 + 7)  # 1 MiB and a bit

    async def main(module: Any) -> None:
        async with module.Client(
            address_of(tcp_server), encoding=None, use=tube, watch=tube
        ) as client:
            job_id = await client.put(body_bytes)
            job = await client.reserve(timeout=0)
            assert job.id == job_id and job.body == body_bytes
            await client.delete(job)
            assert await client.put(b"small") >= 1  # the stream is still in step

    if flavor == "trio":
        run_trio(lambda: main(beanproto_trio))
    else:
        run_asyncio(lambda: main(beanproto_asyncio))


def test_readiness_probe_sees_bytes_and_end_of_file_and_waits_in_milliseconds() -> None:
    """The idle check every client makes before sending: false on a quiet
    socket, true once bytes or an end of file wait, and a timed wait counts
    milliseconds (a quiet socket is waited on, not reported ready)."""
    from beanproto.client._readiness import close_probe, readiness_probe

    a, b = socket.socketpair()
    try:
        probe = readiness_probe(a.fileno())
        assert not probe(0)
        started = time.monotonic()
        assert not probe(50)  # 50 ms, not 50 s
        assert 0.04 <= time.monotonic() - started < 5
        b.send(b"x")
        assert probe(0)
        assert a.recv(1) == b"x"
        assert not probe(0)
        b.close()
        assert probe(0)  # the end of file
        assert probe(None)  # and a wait without limit returns at once
        close_probe(probe)
    finally:
        a.close()
        b.close()
