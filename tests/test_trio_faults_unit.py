"""The trio client's fault model against scripted peers (no beanstalkd).

Each peer is a loopback listener in the same trio run, playing a script per
connection it accepts: never answer, answer late, hang up (FIN or RST) after
reading a command, read nothing at all. The runs use trio's ``MockClock``
with ``autojump_threshold=0``: whenever every task is blocked the clock jumps
to the next deadline, so a timeout of 0.5 s takes no real time, happens at
exactly 0.5 s of virtual time, and a call that would hang fails at once at
its ``trio.fail_after`` bound. Peers hand bytes over a loopback socket, which
is ready for the reader as soon as ``send`` returns, so no jump ever
overtakes bytes in flight. Nothing sleeps to synchronise: a peer's
``trio.sleep`` plays a server that takes its time, on the virtual clock.
"""

from __future__ import annotations

import functools
import gc
import socket
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

import beanproto
import beanproto_trio
from beanproto.client._faults import keepalive_settings

#: Virtual seconds any one test may take before it fails (on the virtual
#: clock a hang fails at once: nothing else is left to wait for).
BOUND = 100_000.0

IO = 0.5


class PeerConnection:
    """The peer's end of one connection: what it read, and a command reader."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.commands: list[bytes] = []
        self._buffer = bytearray()
        #: Set when the client closed (or reset) its end.
        self.client_closed = trio.Event()
        #: Set when this end was closed: the client's end of file is queued.
        self.hung_up = trio.Event()

    async def _fill(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            data = b""
        if not data:
            self.client_closed.set()
            return False
        self._buffer += data
        return True

    async def command(self) -> bytes | None:
        """The next command (its line, and the body of a ``put``); ``None``
        once the client has closed the connection."""
        while b"\r\n" not in self._buffer:
            if not await self._fill():
                return None
        end = self._buffer.index(b"\r\n") + 2
        if self._buffer.startswith(b"put "):
            end += int(self._buffer[:end].split()[4]) + 2
            while len(self._buffer) < end:
                if not await self._fill():
                    return None
        command = bytes(self._buffer[:end])
        del self._buffer[:end]
        self.commands.append(command)
        return command

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def until_closed(self) -> None:
        """Read (and record) commands until the client closes."""
        while await self.command() is not None:
            pass

    async def hang_up(self, reset: bool = False) -> None:
        """Close this end: an end of file for the client, or a reset."""
        if reset:
            self.stream.socket.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        await self.stream.aclose()
        self.hung_up.set()


Script = Callable[[PeerConnection], Awaitable[None]]


class Peer:
    """A scripted server: ``scripts[n]`` plays the ``n``-th connection (the
    last one plays any later connection)."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = scripts
        self.connections: list[PeerConnection] = []
        self.address: tuple[str, int] = ("", 0)

    async def start(self, nursery: trio.Nursery) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.address = listeners[0].socket.getsockname()[:2]
        nursery.start_soon(trio.serve_listeners, self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        connection = PeerConnection(stream)
        self.connections.append(connection)
        script = self.scripts[min(len(self.connections), len(self.scripts)) - 1]
        try:
            await script(connection)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client gave the connection up first: that is its right
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    def commands(self) -> list[list[bytes]]:
        return [connection.commands for connection in self.connections]


def client_tasks() -> list[str]:
    """The names of the client's own tasks (its watchdogs) still alive."""
    found: list[str] = []

    def walk(task: trio.lowlevel.Task) -> None:
        if task.name.startswith("beanproto_trio"):
            found.append(task.name)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    walk(root)
    return found


def run(test: Callable[[trio.Nursery], Awaitable[None]]) -> None:
    """Run ``test(nursery)`` on a virtual clock, bounded, then check that it
    left no task of the client behind."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(BOUND):
                await test(nursery)
            gc.collect()
            await trio.testing.wait_all_tasks_blocked()
            assert client_tasks() == [], "a client task was left behind"
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def started(nursery: trio.Nursery, *scripts: Script) -> Peer:
    peer = Peer(*scripts)
    await peer.start(nursery)
    return peer


# -- scripts ---------------------------------------------------------------------


async def silent(connection: PeerConnection) -> None:
    """Read every command, answer none."""
    await connection.until_closed()


def answering(*replies: bytes, delay: float = 0.0) -> Script:
    """Answer the n-th command with ``replies[n]`` after ``delay`` (virtual)
    seconds, then stay silent."""

    async def script(connection: PeerConnection) -> None:
        for reply in replies:
            if await connection.command() is None:
                return
            await trio.sleep(delay)
            await connection.send(reply)
        await connection.until_closed()

    return script


def hanging_up(reset: bool = False, after: int = 1) -> Script:
    """Read ``after`` commands, then hang up without a reply."""

    async def script(connection: PeerConnection) -> None:
        for _ in range(after):
            await connection.command()
        await connection.hang_up(reset)

    return script


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    """Run ``call()``; (its result or exception, virtual seconds it took)."""
    start = trio.current_time()
    try:
        result = await call()
    except Exception as exc:
        return exc, trio.current_time() - start
    return result, trio.current_time() - start


def client(peer: Peer, **options: Any) -> beanproto_trio.Client[str]:
    return beanproto_trio.Client(peer.address, **options)


def bytes_client(peer: Peer, **options: Any) -> beanproto_trio.Client[bytes]:
    return beanproto_trio.Client(peer.address, None, **options)


# == connect_timeout ================================================================


@pytest.mark.parametrize("connect_timeout", [0.5, 3.0])
def test_connect_timeout_bounds_the_set_up(connect_timeout: float) -> None:
    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, silent)
        c = client(peer, use="x", watch="y", connect_timeout=connect_timeout, io_timeout=IO)
        error, elapsed = await timed(c.__aenter__)
        # The builtin TimeoutError (not trio.TooSlowError), at the deadline:
        # io_timeout (shorter) does not apply while connect_timeout does.
        assert type(error) is TimeoutError, repr(error)
        assert "connecting to 127.0.0.1:" in str(error)
        assert elapsed == pytest.approx(connect_timeout)
        await peer.connections[0].client_closed.wait()  # the link is given up
        assert peer.commands() == [[b"use x\r\n", b"watch y\r\n", b"ignore default\r\n"]]
        # The next call tries again, and fails the same way.
        error, elapsed = await timed(c.stats)
        assert type(error) is TimeoutError
        assert elapsed == pytest.approx(connect_timeout)
        await c.close()

    run(test)


def test_without_connect_timeout_io_timeout_bounds_the_set_up() -> None:
    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, silent)
        c = client(peer, use="x", connect_timeout=None, io_timeout=IO)
        error, elapsed = await timed(c.__aenter__)
        assert type(error) is TimeoutError, repr(error)
        assert "use" in str(error)
        assert elapsed == pytest.approx(IO)
        await c.close()

    run(test)


def test_a_set_up_cut_off_is_a_plain_connection_error() -> None:
    """The caller's own command has not left: nothing of it can be lost."""

    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, hanging_up())
        c = client(peer, use="x")
        error, _ = await timed(c.__aenter__)
        assert isinstance(error, ConnectionError), repr(error)
        assert not isinstance(error, beanproto.ReplyLostError), repr(error)
        await c.close()

    run(test)


def test_a_cancelled_connect_stays_a_cancellation() -> None:
    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, silent)
        c = client(peer, use="x", connect_timeout=5)
        with trio.move_on_after(1) as outer:
            await c.__aenter__()
        assert outer.cancelled_caught  # trio.Cancelled went through, not TimeoutError
        assert trio.current_time() == pytest.approx(1)
        await peer.connections[0].client_closed.wait()
        await c.close()

    run(test)


def test_close_during_the_set_up_ends_it() -> None:
    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, silent)
        c = client(peer, use="x", connect_timeout=5)
        outcome: list[BaseException | None] = []

        async def connect() -> None:
            error, _ = await timed(c.__aenter__)
            outcome.append(error)

        async with trio.open_nursery() as inner:
            inner.start_soon(connect)
            while not peer.connections or not peer.connections[0].commands:
                await trio.testing.wait_all_tasks_blocked()
            await c.close()
        assert len(outcome) == 1 and isinstance(outcome[0], ConnectionError), outcome
        assert trio.current_time() < 1
        await peer.connections[0].client_closed.wait()

    run(test)


@pytest.mark.parametrize("end", ["deadline", "close"])
def test_a_tcp_connect_that_hangs(end: str) -> None:
    """A connect that never completes (a listener whose accept queue is full
    drops the SYN; with a set-up to do, a handshake the kernel completes all
    the same gets no reply) ends at connect_timeout, or on close()."""

    async def test(nursery: trio.Nursery) -> None:
        listener = socket.socket()
        fillers = []
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            address = listener.getsockname()
            for _ in range(3):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(address)
                fillers.append(filler)
            c = beanproto_trio.Client(address, use="x", connect_timeout=2)
            if end == "deadline":
                error, elapsed = await timed(c.__aenter__)
                assert type(error) is TimeoutError, repr(error)
                assert elapsed == pytest.approx(2)
            else:
                outcome: list[BaseException | None] = []

                async def connect() -> None:
                    outcome.append((await timed(c.__aenter__))[0])

                async with trio.open_nursery() as inner:
                    inner.start_soon(connect)
                    await trio.testing.wait_all_tasks_blocked()
                    await c.close()
                assert isinstance(outcome[0], ConnectionError), outcome
                assert "closed" in str(outcome[0])
                assert trio.current_time() == 0
            await c.close()
        finally:
            for filler in fillers:
                filler.close()
            listener.close()

    run(test)


# == io_timeout =======================================================================


def test_io_timeout_on_put_gives_the_connection_up() -> None:
    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, silent)
        c = client(peer, io_timeout=IO)
        error, elapsed = await timed(lambda: c.put("x"))
        assert type(error) is TimeoutError, repr(error)
        assert "the reply to put" in str(error)
        assert elapsed == pytest.approx(IO)
        await peer.connections[0].client_closed.wait()
        # Not sent again: the next call goes out on a new connection, alone.
        error, elapsed = await timed(c.stats)
        assert type(error) is TimeoutError
        assert peer.commands() == [[b"put 65536 0 60 1\r\nx\r\n"], [b"stats\r\n"]]
        await c.close()

    run(test)


def test_each_call_has_its_own_io_timeout() -> None:
    """Calls answered within io_timeout each, over much longer than
    io_timeout in all, with idle spells longer than io_timeout between."""

    async def test(nursery: trio.Nursery) -> None:
        replies = [b"INSERTED %d\r\n" % n for n in range(10)]
        peer = await started(nursery, answering(*replies, delay=IO * 0.9))
        async with client(peer, io_timeout=IO) as c:
            for n in range(10):
                assert await c.put("x") == n
                if n % 3 == 0:
                    await trio.sleep(IO * 4)  # idle: the watchdog has nothing to watch
        assert trio.current_time() > 10 * IO

    run(test)


def test_io_timeout_none_waits_for_ever() -> None:
    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, answering(b"INSERTED 7\r\n", delay=3600))
        async with client(peer, io_timeout=None) as c:
            assert await c.put("x") == 7

    run(test)


def test_a_stalled_send_times_out() -> None:
    """A peer that reads nothing: the body fills the socket buffers, and the
    send makes no progress for io_timeout."""
    drain = trio.Event()

    async def unread(connection: PeerConnection) -> None:
        await drain.wait()
        await connection.until_closed()

    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, unread)
        async with bytes_client(peer, io_timeout=IO) as c:
            assert client_tasks() == ["beanproto_trio io_timeout watchdog"]
            error, elapsed = await timed(lambda: c.put(b"x" * (64 * 1024 * 1024)))
            assert type(error) is TimeoutError, repr(error)
            assert "sending put" in str(error)
            assert elapsed == pytest.approx(IO)
            drain.set()
            await peer.connections[0].client_closed.wait()
            assert peer.connections[0].commands == []  # only part of the put came

    run(test)


def test_a_slow_but_steady_send_is_not_cut() -> None:
    """io_timeout bounds progress, not the whole transfer: the peer reads
    8 MiB every 0.4 s, the put takes many times io_timeout. (The peer's
    receive buffer is kept small, so that once the last byte is handed to
    the kernel, the peer reads the rest within io_timeout: the reply is due
    from then. And a burst frees enough of the client's send buffer for the
    kernel to let it write again.)"""
    body = b"x" * (64 * 1024 * 1024)
    size = len(b"put 65536 0 60 %d\r\n" % len(body)) + len(body) + 2

    async def slow_reader(connection: PeerConnection) -> None:
        connection.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024 * 1024)
        received = 0
        while received < size:
            await trio.sleep(IO * 0.8)
            burst = min(received + 8 * 1024 * 1024, size)
            while received < burst:
                data = await connection.stream.receive_some(burst - received)
                assert data
                received += len(data)
        await connection.send(b"INSERTED 1\r\n")
        await connection.until_closed()

    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, slow_reader)
        async with bytes_client(peer, io_timeout=IO) as c:
            assert await c.put(body) == 1
        assert trio.current_time() > 4 * IO

    run(test)

    run(test)


def test_reserve_with_timeout_is_not_cut_by_io_timeout() -> None:
    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, answering(b"TIMED_OUT\r\n", b"INSERTED 3\r\n", delay=2))
        async with client(peer, io_timeout=IO) as c:
            error, elapsed = await timed(lambda: c.reserve(timeout=2))
            assert isinstance(error, beanproto_trio.TimedOutError), repr(error)
            assert elapsed == pytest.approx(2)
            # An ordinary command after it is bound by io_timeout again.
            error, elapsed = await timed(lambda: c.put("x"))
            assert type(error) is TimeoutError, repr(error)
            assert elapsed == pytest.approx(IO)

    run(test)


def test_a_reserve_with_timeout_never_answered_times_out_after_its_wait() -> None:
    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, silent)
        async with client(peer, io_timeout=IO) as c:
            error, elapsed = await timed(lambda: c.reserve(timeout=2))
            assert type(error) is TimeoutError, repr(error)
            assert "reserve-with-timeout" in str(error)
            assert elapsed == pytest.approx(2 + IO)

    run(test)


def test_reserve_without_timeout_waits_for_ever() -> None:
    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, answering(b"RESERVED 5 3\r\nabc\r\n", delay=3600))
        async with client(peer, io_timeout=IO) as c:
            job = await c.reserve()
            assert (job.id, job.body) == (5, "abc")
            assert trio.current_time() == pytest.approx(3600)

    run(test)


def test_a_reply_that_stops_half_way_times_out() -> None:
    """Once a reserve's reply has begun, the rest is owed now."""

    async def half(connection: PeerConnection) -> None:
        await connection.command()
        await trio.sleep(100)
        await connection.send(b"RESERVED 5 10\r\nabc")
        await connection.until_closed()

    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, half)
        async with client(peer, io_timeout=IO) as c:
            error, elapsed = await timed(c.reserve)
            assert type(error) is TimeoutError, repr(error)
            assert elapsed == pytest.approx(100 + IO)

    run(test)


# == pipelined calls ================================================================


async def _pipelined(
    c: beanproto_trio.Client[str], calls: list[Callable[[], Awaitable[Any]]]
) -> list[tuple[Any, float]]:
    """Start ``calls`` in order (each sends before the next starts); return
    each one's outcome and when it ended."""
    outcomes: list[tuple[Any, float]] = [(None, 0.0)] * len(calls)

    async def one(n: int) -> None:
        outcomes[n] = await timed(calls[n])

    async with trio.open_nursery() as nursery:
        for n in range(len(calls)):
            nursery.start_soon(one, n)
            await trio.testing.wait_all_tasks_blocked()
    return outcomes


def test_pipelined_calls_when_the_oldest_is_late() -> None:
    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, silent, answering(b"INSERTED 9\r\n"))
        async with client(peer, io_timeout=IO) as c:
            outcomes = await _pipelined(
                c, [lambda: c.put("a"), lambda: c.put("b"), lambda: c.stats()]
            )
            (first, t1), (second, t2), (third, t3) = outcomes
            assert type(first) is TimeoutError, repr(first)
            for other in (second, third):
                assert isinstance(other, beanproto.ReplyLostError), repr(other)
            assert t1 == t2 == t3 == pytest.approx(IO)
            assert len(peer.commands()[0]) == 3
            # The next call reconnects; nothing is sent again.
            assert await c.put("c") == 9
            assert peer.commands()[1] == [b"put 65536 0 60 1\r\nc\r\n"]

    run(test)


def test_pipelined_calls_deadlines_run_from_the_previous_reply() -> None:
    """Each reply is due within io_timeout of the one before it: replies
    0.4 s apart never time out, though the third comes 1.2 s after it was
    sent; a fourth reply that never comes times out 0.5 s after the third."""

    async def spaced(connection: PeerConnection) -> None:
        for _ in range(4):
            await connection.command()
        for n in range(3):
            await trio.sleep(0.4)
            await connection.send(b"INSERTED %d\r\n" % n)
        await connection.until_closed()

    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, spaced)
        async with client(peer, io_timeout=IO) as c:
            start = trio.current_time()
            outcomes = await _pipelined(c, [functools.partial(c.put, f"{n}") for n in range(4)])
            ends = [end for _, end in outcomes]
            assert [result for result, _ in outcomes[:3]] == [0, 1, 2]
            assert type(outcomes[3][0]) is TimeoutError, repr(outcomes[3][0])
            assert trio.current_time() - start == pytest.approx(1.2 + IO)
            assert ends[:3] == pytest.approx([0.4, 0.8, 1.2])

    run(test)


def test_a_call_behind_a_waiting_reserve_waits_with_it() -> None:
    async def late(connection: PeerConnection) -> None:
        await connection.command()
        await connection.command()
        await trio.sleep(1.2)  # within reserve(timeout=1) + io_timeout
        await connection.send(b"TIMED_OUT\r\n")
        await trio.sleep(0.4)  # within io_timeout of the reply before
        await connection.send(b"INSERTED 4\r\n")
        await connection.until_closed()

    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, late)
        async with client(peer, io_timeout=IO) as c:
            (reserved, _), (put, end) = await _pipelined(
                c, [lambda: c.reserve(timeout=1), lambda: c.put("x")]
            )
            assert isinstance(reserved, beanproto_trio.TimedOutError), repr(reserved)
            assert put == 4
            assert end == pytest.approx(1.6)

    run(test)


def test_a_cancelled_calls_reply_read_with_another_is_not_taken_for_late() -> None:
    """A call cancelled while its command is out: its reply, read together
    with the reply before it, is dropped at once (the watchdog never sees a
    late reply, and the connection, with the jobs it holds, stays)."""
    cancelled = trio.Event()

    async def both_at_once(connection: PeerConnection) -> None:
        await connection.command()
        await connection.command()
        await cancelled.wait()
        await connection.send(b"INSERTED 1\r\nINSERTED 2\r\n")
        await answering(b"INSERTED 3\r\n")(connection)

    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, both_at_once)
        async with client(peer, io_timeout=IO) as c:
            outcome: list[Any] = []
            second = trio.CancelScope()

            async def first() -> None:
                outcome.append(await c.put("a"))

            async def other() -> None:
                with second:
                    await c.put("b")

            async with trio.open_nursery() as inner:
                inner.start_soon(first)
                await trio.testing.wait_all_tasks_blocked()
                inner.start_soon(other)
                await trio.testing.wait_all_tasks_blocked()
                second.cancel()
                await trio.testing.wait_all_tasks_blocked()
                cancelled.set()
            assert outcome == [1]
            await trio.sleep(IO * 10)
            assert await c.put("c") == 3
        assert len(peer.connections) == 1

    run(test)


def test_a_cancelled_calls_reply_nobody_reads_is_not_taken_for_late() -> None:
    """The reply of a cancelled call that came while no call waits stays in
    the socket for the next call (which drops it): not late either."""

    async def late(connection: PeerConnection) -> None:
        await connection.command()
        await trio.sleep(IO / 5)
        await connection.send(b"USING default\r\n")
        await answering(b"INSERTED 3\r\n")(connection)

    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, late)
        async with client(peer, io_timeout=IO) as c:
            with trio.move_on_after(IO / 10):
                await c.using()
            await trio.sleep(IO * 10)
            assert await c.put("c") == 3
        assert len(peer.connections) == 1

    run(test)


# == lost replies ===================================================================


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_a_lost_reply_is_reported_and_never_resent(reset: bool) -> None:
    async def losing(connection: PeerConnection) -> None:
        await connection.command()
        await connection.send(b"USING jobs\r\n")
        await connection.command()  # the put
        await connection.command()  # the stats behind it
        await connection.hang_up(reset)

    async def test(nursery: trio.Nursery) -> None:
        again = answering(b"USING jobs\r\n", b"USING jobs\r\n")
        peer = await started(nursery, losing, again)
        async with client(peer, use="jobs", io_timeout=IO) as c:
            outcomes = await _pipelined(c, [lambda: c.put("once"), lambda: c.stats()])
            for error, _ in outcomes:
                assert isinstance(error, beanproto.ReplyLostError), repr(error)
            assert await c.using() == "jobs"
        put = b"put 65536 0 60 4\r\nonce\r\n"
        assert peer.commands() == [
            [b"use jobs\r\n", put, b"stats\r\n"],
            [b"use jobs\r\n", b"list-tube-used\r\n"],
        ]

    run(test)


def test_a_cancelled_reserve_loses_the_replies_behind_it() -> None:
    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, silent, answering(b"INSERTED 2\r\n"))
        async with client(peer, io_timeout=IO) as c:
            outcome: list[tuple[Any, float]] = []
            reserving = trio.CancelScope()

            async def reserve() -> None:
                with reserving:
                    await c.reserve()

            async def put() -> None:
                outcome.append(await timed(lambda: c.put("behind")))

            async with trio.open_nursery() as inner:
                inner.start_soon(reserve)
                await trio.testing.wait_all_tasks_blocked()
                inner.start_soon(put)
                await trio.testing.wait_all_tasks_blocked()
                reserving.cancel()
            ((error, _),) = outcome
            assert isinstance(error, beanproto.ReplyLostError), repr(error)
            assert await c.put("next") == 2
        assert peer.commands()[0] == [b"reserve\r\n", b"put 65536 0 60 6\r\nbehind\r\n"]
        assert peer.commands()[1] == [b"put 65536 0 60 4\r\nnext\r\n"]

    run(test)


def test_close_ends_every_waiting_call_and_leaves_nothing_behind() -> None:
    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, silent)
        c = client(peer, io_timeout=None)
        await c.__aenter__()
        outcome: list[tuple[Any, float]] = []

        async def call(fn: Callable[[], Awaitable[Any]]) -> None:
            outcome.append(await timed(fn))

        async with trio.open_nursery() as inner:
            for fn in (c.reserve, lambda: c.put("x"), c.stats):
                inner.start_soon(call, fn)
                await trio.testing.wait_all_tasks_blocked()
            await c.close()
        assert len(outcome) == 3
        for error, _ in outcome:
            assert isinstance(error, ConnectionError), repr(error)
        assert trio.current_time() == 0
        await peer.connections[0].client_closed.wait()
        with pytest.raises(ConnectionError):
            await c.put("after close")
        assert len(peer.connections) == 1

    run(test)


def test_close_ends_a_stalled_send() -> None:
    async def unread(connection: PeerConnection) -> None:
        await trio.sleep_forever()

    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, unread)
        c = bytes_client(peer, io_timeout=None)
        await c.__aenter__()
        outcome: list[tuple[Any, float]] = []

        async def put() -> None:
            outcome.append(await timed(lambda: c.put(b"x" * (64 * 1024 * 1024))))

        async with trio.open_nursery() as inner:
            inner.start_soon(put)
            await trio.testing.wait_all_tasks_blocked()
            assert not outcome  # stuck: the peer reads nothing
            await c.close()
        ((error, _),) = outcome
        assert isinstance(error, ConnectionError), repr(error)
        assert trio.current_time() == 0

    run(test)


def test_a_put_cut_off_half_way_is_a_plain_connection_error() -> None:
    """Part of the command went out: it cannot have run."""

    async def reset_mid_body(connection: PeerConnection) -> None:
        await connection.stream.receive_some(1024)
        await connection.hang_up(reset=True)

    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, reset_mid_body)
        async with bytes_client(peer, io_timeout=IO) as c:
            error, _ = await timed(lambda: c.put(b"x" * (64 * 1024 * 1024)))
            assert isinstance(error, ConnectionError), repr(error)
            assert not isinstance(error, beanproto.ReplyLostError), repr(error)

    run(test)


# == reconnect=False ==================================================================


def test_without_reconnect_a_server_closing_the_idle_connection_ends_the_client() -> None:
    async def answer_then_close(connection: PeerConnection) -> None:
        await connection.command()
        await connection.send(b"INSERTED 1\r\n")
        await connection.hang_up()

    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, answer_then_close)
        async with client(peer, reconnect=False) as c:
            assert await c.put("x") == 1
            await peer.connections[0].hung_up.wait()  # the end of file is queued
            for _ in range(3):
                with pytest.raises(ConnectionError, match="reconnect=False") as info:
                    await c.put("y")
                assert not isinstance(info.value, beanproto.ReplyLostError)
        assert len(peer.connections) == 1  # not one new connection
        assert peer.commands() == [[b"put 65536 0 60 1\r\nx\r\n"]]

    run(test)


def test_with_reconnect_the_same_close_is_invisible() -> None:
    async def answer_then_close(connection: PeerConnection) -> None:
        await connection.command()
        await connection.send(b"INSERTED 1\r\n")
        await connection.hang_up()

    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, answer_then_close, answering(b"INSERTED 2\r\n"))
        async with client(peer) as c:
            assert await c.put("x") == 1
            await peer.connections[0].hung_up.wait()
            assert await c.put("y") == 2

    run(test)


def test_without_reconnect_a_timeout_ends_the_client() -> None:
    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, silent)
        async with client(peer, reconnect=False, io_timeout=IO) as c:
            with pytest.raises(TimeoutError):
                await c.put("x")
            with pytest.raises(ConnectionError, match="reconnect=False"):
                await c.put("y")
        assert len(peer.connections) == 1

    run(test)


# == keepalive and the watchdog's life ==============================================


@pytest.mark.parametrize("keepalive", [4.0, 60.0, None])
def test_keepalive_on_tcp_connections(keepalive: float | None) -> None:
    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, silent)
        async with client(peer, keepalive=keepalive) as c:
            link = c._link
            assert link is not None
            sock = link.sock
            enabled = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            assert bool(enabled) is (keepalive is not None)
            if keepalive is not None and hasattr(socket, "TCP_KEEPIDLE"):
                idle, interval, count = keepalive_settings(keepalive)
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == idle
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == interval
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == count
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    run(test)


def test_a_socket_passed_in_is_left_alone() -> None:
    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, answering(b"INSERTED 1\r\n"))
        sock = trio.socket.socket()
        await sock.connect(peer.address)
        async with beanproto_trio.Client(sock, keepalive=5) as c:
            assert await c.put("x") == 1
            assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)

    run(test)


def test_an_abandoned_client_leaves_no_task_behind() -> None:
    """A client dropped without close(): its watchdog holds its connection
    only weakly, so both go (``run`` counts the tasks)."""

    async def test(nursery: trio.Nursery) -> None:
        peer = await started(nursery, answering(b"INSERTED 1\r\n"))
        c = client(peer, io_timeout=IO)
        await c.__aenter__()
        assert await c.put("x") == 1
        assert client_tasks() == ["beanproto_trio io_timeout watchdog"]
        del c
        gc.collect()
        await peer.connections[0].client_closed.wait()  # the collector closed it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the unclosed socket
        run(test)
