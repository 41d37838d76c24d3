"""The trio, asyncio and anyio clients on their own loops: cancellation, tasks
sharing one client, closing while busy, the server dying mid-call.

Every test runs on each client (the ``backend`` fixture: the anyio one both
in a trio program and in an asyncio one) over TCP and a unix
socket, inside ``trio.run`` / ``asyncio.run`` and under a deadline of
:data:`TEST_TIMEOUT` seconds (``trio.fail_after`` / ``asyncio.wait_for``: the
tests run on Python 3.10, which has no ``asyncio.timeout``).
Tasks are started in a nursery (trio) or with ``create_task`` (asyncio); at
the end of a test none may be left (trio: the nursery exits; asyncio: only
the test's own task remains). Nothing sleeps to synchronise: where a test
needs the server to have seen something, it polls a server-side statistic in
a bounded loop (every poll is a round trip).

The API itself (every method, every error reply) runs on these clients in
tests/test_sync_client.py and tests/test_sync_errors.py, through a blocking
proxy; here are the things only an async client has.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, Union

import pytest
import trio
from tools.beanstalkd import Server, running_beanstalkd

import beanproto_anyio
import beanproto_asyncio
import beanproto_sync
import beanproto_trio
from beanproto.errors import NotFoundError
from conftest import address_of, new_tube

pytestmark = pytest.mark.integration

#: Seconds any one test may take, enforced on its own event loop.
TEST_TIMEOUT = 10

#: Seconds a bounded poll of the server waits at most (far below TTR=60).
POLL_DEADLINE = 5.0

T = TypeVar("T")

AsyncClient = Union[  # noqa: UP007
    beanproto_trio.Client[str], beanproto_asyncio.Client[str], beanproto_anyio.Client[str]
]


# -- one test body, two event loops --------------------------------------------------


class Task:
    """A task started by a :class:`Backend`. After ``await join()``: ``value``
    (what it returned), ``error`` (the exception it raised) or ``cancelled``."""

    def __init__(self) -> None:
        self.value: Any = None
        self.error: Exception | None = None
        self.cancelled = False

    @property
    def finished(self) -> bool:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError

    async def join(self) -> None:
        raise NotImplementedError


class Backend:
    """What a test needs from its event loop, for trio and for asyncio."""

    name: str
    #: The event loop the test runs on: "trio" or "asyncio".
    loop: str
    #: Whether the client reads what arrived on an idle connection just
    #: before sending on it (trio, anyio) rather than as it arrives (asyncio).
    checks_before_sending: bool

    def run(self, test: Callable[[], Awaitable[None]]) -> None:
        """Run ``test()`` on a fresh loop under the test deadline."""
        raise NotImplementedError

    def client(self, address: Any, **kwargs: Any) -> AsyncClient:
        raise NotImplementedError

    def start(self, fn: Callable[[], Awaitable[Any]]) -> Task:
        """Start ``fn()`` in a task of its own."""
        raise NotImplementedError

    async def checkpoint(self) -> None:
        """Let every other runnable task run."""
        raise NotImplementedError

    async def cancelled_after(self, seconds: float, fn: Callable[[], Awaitable[Any]]) -> bool:
        """Run ``fn()`` under the loop's own timeout; whether it was cut short."""
        raise NotImplementedError


class TrioTask(Task):
    def __init__(self, nursery: trio.Nursery, fn: Callable[[], Awaitable[Any]]) -> None:
        super().__init__()
        self._scope = trio.CancelScope()
        self._done = trio.Event()
        nursery.start_soon(self._run, fn)

    async def _run(self, fn: Callable[[], Awaitable[Any]]) -> None:
        try:
            with self._scope:
                try:
                    self.value = await fn()
                except Exception as exc:
                    self.error = exc
            self.cancelled = self._scope.cancelled_caught
        finally:
            self._done.set()

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        self._scope.cancel()

    async def join(self) -> None:
        await self._done.wait()


class TrioBackend(Backend):
    name = "trio"
    loop = "trio"
    checks_before_sending = True

    def __init__(self) -> None:
        self._nursery: trio.Nursery | None = None

    def run(self, test: Callable[[], Awaitable[None]]) -> None:
        async def main() -> None:
            with trio.fail_after(TEST_TIMEOUT):
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await test()
                # The nursery waited for every task: none is left behind.

        trio.run(main)

    def client(self, address: Any, **kwargs: Any) -> AsyncClient:
        return beanproto_trio.Client(address, **kwargs)

    def start(self, fn: Callable[[], Awaitable[Any]]) -> Task:
        assert self._nursery is not None
        return TrioTask(self._nursery, fn)

    async def checkpoint(self) -> None:
        await trio.sleep(0)

    async def cancelled_after(self, seconds: float, fn: Callable[[], Awaitable[Any]]) -> bool:
        with trio.move_on_after(seconds) as scope:
            await fn()
        return scope.cancelled_caught


class AsyncioTask(Task):
    def __init__(self, fn: Callable[[], Awaitable[Any]]) -> None:
        super().__init__()
        self._task = asyncio.get_running_loop().create_task(self._run(fn))

    async def _run(self, fn: Callable[[], Awaitable[Any]]) -> None:
        try:
            self.value = await fn()
        except Exception as exc:  # CancelledError is not an Exception
            self.error = exc

    @property
    def finished(self) -> bool:
        return self._task.done()

    def cancel(self) -> None:
        self._task.cancel()

    async def join(self) -> None:
        await asyncio.wait([self._task])
        self.cancelled = self._task.cancelled()


class AsyncioBackend(Backend):
    name = "asyncio"
    loop = "asyncio"
    checks_before_sending = False

    def run(self, test: Callable[[], Awaitable[None]]) -> None:
        reported: list[dict[str, Any]] = []

        async def main() -> None:
            # What asyncio would log: "exception was never retrieved" and the like.
            asyncio.get_running_loop().set_exception_handler(lambda _, ctx: reported.append(ctx))
            await asyncio.wait_for(test(), TEST_TIMEOUT)
            left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            assert not left, f"tasks left behind: {left}"

        asyncio.run(main())
        gc.collect()  # futures report unretrieved exceptions when collected
        assert not reported, f"the loop reported: {reported}"

    def client(self, address: Any, **kwargs: Any) -> AsyncClient:
        return beanproto_asyncio.Client(address, **kwargs)

    def start(self, fn: Callable[[], Awaitable[Any]]) -> Task:
        return AsyncioTask(fn)

    async def checkpoint(self) -> None:
        await asyncio.sleep(0)

    async def cancelled_after(self, seconds: float, fn: Callable[[], Awaitable[Any]]) -> bool:
        try:
            await asyncio.wait_for(fn(), seconds)
        except asyncio.TimeoutError:  # not yet the builtin TimeoutError on 3.10
            return True
        return False


class AnyioOnTrio(TrioBackend):
    """The anyio client in a trio program."""

    name = "anyio-trio"

    def client(self, address: Any, **kwargs: Any) -> AsyncClient:
        return beanproto_anyio.Client(address, **kwargs)


class AnyioOnAsyncio(AsyncioBackend):
    """The anyio client in an asyncio program."""

    name = "anyio-asyncio"
    checks_before_sending = True

    def client(self, address: Any, **kwargs: Any) -> AsyncClient:
        return beanproto_anyio.Client(address, **kwargs)


BACKENDS: dict[str, Callable[[], Backend]] = {
    "trio": TrioBackend,
    "asyncio": AsyncioBackend,
    "anyio-trio": AnyioOnTrio,
    "anyio-asyncio": AnyioOnAsyncio,
}


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]()


# -- helpers ---------------------------------------------------------------------------


async def wait_until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` (a query to the server) until it holds, for at most
    :data:`POLL_DEADLINE` seconds."""
    end = time.monotonic() + POLL_DEADLINE
    while not await check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")


async def waiting_on(observer: AsyncClient, tube: str) -> int:
    """How many connections wait in a reserve on ``tube``, per the server."""
    return (await observer.stats_tube(tube))["current-waiting"]


async def until_waiting(observer: AsyncClient, tube: str, count: int) -> None:
    async def check() -> bool:
        return await waiting_on(observer, tube) == count

    await wait_until(check, f"{count} reserve(s) waiting on {tube}")


async def until_state(observer: AsyncClient, jid: int, state: str) -> None:
    async def check() -> bool:
        return (await observer.stats_job(jid))["state"] == state

    await wait_until(check, f"job {jid} to be {state}")


async def gather(backend: Backend, fns: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run ``fns`` concurrently, each in a task; their results, in order."""
    tasks = [backend.start(fn) for fn in fns]
    for task in tasks:
        await task.join()
    for task in tasks:
        if task.error is not None:
            raise task.error
        assert not task.cancelled
    return [task.value for task in tasks]


# -- cancelling a reserve ----------------------------------------------------------------


def test_cancelled_reserve_then_the_client_keeps_working(
    backend: Backend, server: Server, tube: str
) -> None:
    address = address_of(server)

    async def body() -> None:
        async with (
            backend.client(address, use=tube, watch=tube) as client,
            backend.client(address, use=tube, watch=tube) as other,
            backend.client(address, watch=tube) as third,
        ):
            used, watched = new_tube(), new_tube()
            await client.use(used)
            assert await client.watch(watched) == 2
            connections = (await other.stats())["total-connections"]

            # Cut short by the loop's own timeout, wherever the call had got to...
            assert await backend.cancelled_after(0.05, client.reserve)
            # (the server ends that reserve: its connection was closed)...
            await until_waiting(other, tube, 0)
            # ...and cancelled while the server has it waiting.
            task = backend.start(client.reserve)
            await until_waiting(other, tube, 1)
            task.cancel()
            await task.join()
            assert task.cancelled

            # Every later call gets its own reply, on a new connection set up
            # with the tubes the client had.
            assert await client.using() == used
            assert sorted(await client.watching()) == sorted([tube, watched])
            jid = await client.put("after the cancellation")
            assert type(jid) is int
            assert (await client.stats_job(jid))["tube"] == used
            assert (await other.stats())["total-connections"] > connections

            # The server-side reserve is gone: a job put now goes to whoever
            # asks next, straight away.
            assert await waiting_on(other, tube) == 0
            put = await other.put("for the third client")
            job = await third.reserve(timeout=0)
            assert (job.id, job.body) == (put, "for the third client")
            await third.delete(job)

    backend.run(body)


def test_reserve_cancelled_as_its_job_arrives(backend: Backend, server: Server, tube: str) -> None:
    """Whichever wins the race, the job is never stuck reserved for nobody:
    either the call returned it, or it is back in the ready queue at once
    (TTR is 60 s, so its expiry cannot explain a prompt return)."""
    address = address_of(server)

    async def body() -> None:
        async with (
            backend.client(address, use=tube, watch=tube) as client,
            backend.client(address, use=tube, watch=tube) as other,
        ):
            outcomes = []
            for n in range(9):
                task = backend.start(client.reserve)
                await until_waiting(other, tube, 1)
                if n % 3 == 1:
                    # The reply is on its way (or read) when the cancel comes.
                    jid = await other.put(f"race {n}", ttr=60)
                    task.cancel()
                elif n % 3 == 2:
                    # A blocking put, so the loop cannot run before the
                    # cancel: the reply is sent (or in the client's socket
                    # buffer) and has not been read.
                    jid = blocking.put(f"race {n}", ttr=60)
                    task.cancel()
                else:
                    # The cancel comes while the job is being put.
                    put = backend.start(functools.partial(other.put, f"race {n}", ttr=60))
                    task.cancel()
                    await put.join()
                    assert put.error is None
                    jid = put.value
                await task.join()
                if task.cancelled:
                    outcomes.append("cancelled")
                    await until_state(other, jid, "ready")
                    job = await other.reserve(timeout=0)
                    assert job.id == jid
                    await other.delete(job)
                else:
                    outcomes.append("reserved")
                    assert task.error is None
                    assert (task.value.id, task.value.body) == (jid, f"race {n}")
                    assert (await other.stats_job(jid))["state"] == "reserved"
                    await client.delete(task.value)
                assert await client.using() == tube  # still in step
            assert "cancelled" in outcomes
            stats = await other.stats_tube(tube)
            assert stats["current-jobs-ready"] == stats["current-jobs-reserved"] == 0

    with beanproto_sync.Client(address, use=tube, watch=tube) as blocking:
        backend.run(body)


def test_cancelled_reserve_releases_the_clients_other_jobs(
    backend: Backend, server: Server, tube: str
) -> None:
    """Documented: closing the connection gives back every job it held."""
    address = address_of(server)

    async def body() -> None:
        async with (
            backend.client(address, use=tube, watch=tube) as client,
            backend.client(address, use=tube, watch=tube) as other,
        ):
            jid = await other.put("A", ttr=60)
            held = await client.reserve(timeout=0)
            assert held.id == jid
            assert (await other.stats_job(jid))["state"] == "reserved"

            task = backend.start(client.reserve)
            await until_waiting(other, tube, 1)
            task.cancel()
            await task.join()
            assert task.cancelled

            await until_state(other, jid, "ready")
            with pytest.raises(NotFoundError):
                await client.release(held)  # no longer this client's
            assert (await other.reserve(timeout=0)).id == jid

    backend.run(body)


# -- cancelling other calls ---------------------------------------------------------------


def test_cancelled_calls_never_leave_a_stale_reply(
    backend: Backend, server: Server, tube: str
) -> None:
    address = address_of(server)

    async def body() -> None:
        async with backend.client(address, use=tube, watch=tube) as client:
            bodies: dict[int, str] = {}

            async def put(text: str) -> None:
                bodies[await client.put(text)] = text

            async def put_for_ever(prefix: str) -> None:
                n = 0
                while True:
                    await put(f"{prefix} {n}")
                    n += 1

            # Cut short by timeouts, at whatever point of a call they land.
            for k in range(1, 6):
                cut = functools.partial(put_for_ever, f"r{k}")
                assert await backend.cancelled_after(0.002 * k, cut)
            # Tasks cancelled before they start, and after they have sent.
            tasks = [backend.start(functools.partial(put, f"task {n}")) for n in range(20)]
            for task in tasks[::3]:
                task.cancel()
            await backend.checkpoint()
            for task in tasks[1::3]:
                task.cancel()
            for task in tasks:
                await task.join()
                assert task.error is None

            # Each later call gets its own reply.
            assert await client.using() == tube
            assert await client.watching() == [tube]
            assert (await client.stats_tube(tube))["name"] == tube
            last = max(bodies)
            for n in range(5):
                text = f"after {n}"
                jid = await client.put(text)
                assert jid > last
                last = jid
                assert (await client.stats_job(jid))["id"] == jid
                assert (await client.peek(jid)).body == text
            # And every put that returned an id returned its own job's.
            for jid, text in bodies.items():
                assert (await client.peek(jid)).body == text

    backend.run(body)


# -- tasks sharing a client ----------------------------------------------------------------


def test_concurrent_round_trips_on_one_client(backend: Backend, server: Server, tube: str) -> None:
    address = address_of(server)

    async def body() -> None:
        async with backend.client(address, use=tube, watch=tube) as other:
            connections = (await other.stats())["total-connections"]
            # Not entered: the tasks race to connect, and connect once.
            client = backend.client(address, use=tube, watch=tube)
            try:

                async def round_trip(n: int) -> int:
                    text = f"job {n} " + "x" * (n * 2000)  # some above 32 KiB
                    jid = await client.put(text)
                    job = await client.peek(jid)
                    assert (job.id, job.body) == (jid, text)
                    await client.delete(jid)
                    return jid

                fns = [functools.partial(round_trip, n) for n in range(20)]
                ids = await gather(backend, fns)
                assert len(set(ids)) == 20
                assert (await other.stats())["total-connections"] == connections + 1
                assert (await other.stats_tube(tube))["current-jobs-ready"] == 0
            finally:
                await client.close()

    backend.run(body)


def test_concurrent_mixed_calls_on_one_client(backend: Backend, server: Server, tube: str) -> None:
    address = address_of(server)

    async def body() -> None:
        async with backend.client(address, use=tube, watch=tube) as client:
            kinds = ["stats", "using", "put", "watching", "stats_tube"]
            fns: list[Callable[[], Awaitable[Any]]] = []
            for n in range(10):
                fns += [
                    client.stats,
                    client.using,
                    functools.partial(client.put, f"mix {n}"),
                    client.watching,
                    functools.partial(client.stats_tube, tube),
                ]
            results = await gather(backend, fns)
            ids = []
            for n, result in enumerate(results):
                kind = kinds[n % len(kinds)]
                if kind == "stats":
                    assert result["pid"] == server.pid
                elif kind == "using":
                    assert result == tube
                elif kind == "put":
                    assert type(result) is int
                    ids.append(result)
                elif kind == "watching":
                    assert result == [tube]
                else:
                    assert result["name"] == tube
            assert len(set(ids)) == 10
            for n, jid in enumerate(ids):
                assert (await client.peek(jid)).body == f"mix {n}"

    backend.run(body)


def test_put_waits_behind_a_reserve_on_the_same_client(
    backend: Backend, server: Server, tube: str
) -> None:
    """Documented: beanstalkd serves a connection's commands one at a time,
    so a put sent while a reserve waits is served after the reserve."""
    address = address_of(server)

    async def body() -> None:
        async with (
            backend.client(address, use=tube, watch=tube) as client,
            backend.client(address, use=tube, watch=tube) as other,
        ):
            reserving = backend.start(client.reserve)
            await until_waiting(other, tube, 1)
            putting = backend.start(functools.partial(client.put, "sent behind the reserve"))
            for _ in range(3):
                await backend.checkpoint()
                assert (await other.stats_tube(tube))["total-jobs"] == 0
            assert not putting.finished
            assert not reserving.finished

            jid = await other.put("wakes the reserve")
            await reserving.join()
            await putting.join()
            assert reserving.error is None and putting.error is None
            assert (reserving.value.id, reserving.value.body) == (jid, "wakes the reserve")
            assert putting.value > jid
            assert (await other.peek(putting.value)).body == "sent behind the reserve"
            await client.delete(reserving.value)

    backend.run(body)


# -- closing -----------------------------------------------------------------------------------


def test_close_while_busy(backend: Backend, server: Server, tube: str) -> None:
    address = address_of(server)

    async def body() -> None:
        async with (
            backend.client(address, use=tube, watch=tube) as client,
            backend.client(address, use=tube, watch=tube) as other,
        ):
            reserving = backend.start(client.reserve)
            await until_waiting(other, tube, 1)
            behind = backend.start(client.stats)  # waits behind the reserve
            behind_too = backend.start(functools.partial(client.put, "x"))
            for _ in range(3):
                await backend.checkpoint()
            assert not behind.finished

            started = time.monotonic()
            await client.close()
            for task in (reserving, behind, behind_too):
                await task.join()
                assert isinstance(task.error, ConnectionError), task.error
            assert time.monotonic() - started < 2

            for call in (client.stats, client.using, functools.partial(client.put, "y")):
                with pytest.raises(ConnectionError):
                    await call()
            await client.close()  # twice is harmless
            await until_waiting(other, tube, 0)

    backend.run(body)


async def poll_socket(backend: Backend, fn: Callable[[], T], what: str) -> T:
    """Call ``fn`` (a non-blocking socket operation) until it stops raising
    ``BlockingIOError``, letting the loop run in between; bounded."""
    end = time.monotonic() + POLL_DEADLINE
    while True:
        try:
            return fn()
        except BlockingIOError:
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what}") from None
            await backend.checkpoint()


def test_close_while_connecting(backend: Backend, tube: str) -> None:
    """``close()`` while the first call is still setting its connection up
    (the peer accepted it and read ``use``/``watch``, and has not answered):
    the call ends with ConnectionError at once and the socket is closed."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    setup = f"use {tube}\r\nwatch {tube}\r\nignore default\r\n".encode()

    async def body() -> None:
        client = backend.client(listener.getsockname(), use=tube, watch=tube)
        putting = backend.start(functools.partial(client.put, "x"))
        peer, _ = await poll_socket(backend, listener.accept, "the client to connect")
        try:
            peer.setblocking(False)
            received = b""
            while len(received) < len(setup):
                received += await poll_socket(
                    backend, lambda: peer.recv(1024), "the setup commands"
                )
            assert received == setup  # the call now waits for the replies

            await client.close()
            finished = not await backend.cancelled_after(1.0, putting.join)
            if not finished:
                putting.cancel()
                await putting.join()
            assert finished, "close() left the connecting call waiting"
            assert isinstance(putting.error, ConnectionError), putting.error
            assert await poll_socket(backend, lambda: peer.recv(1024), "EOF") == b""
        finally:
            peer.close()

    try:
        backend.run(body)
    finally:
        listener.close()


def test_cancelled_while_connecting(backend: Backend, tube: str) -> None:
    """A call cancelled while its connection is being set up (the peer has
    not answered ``use``/``watch``): the socket is closed, nothing is left
    for the loop to report, and the next call connects again."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    setup = f"use {tube}\r\nwatch {tube}\r\nignore default\r\n".encode()

    async def read_exactly(peer: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            receive = functools.partial(peer.recv, size - len(data))
            data += await poll_socket(backend, receive, "bytes")
        return data

    async def body() -> None:
        client = backend.client(listener.getsockname(), use=tube, watch=tube)
        putting = backend.start(functools.partial(client.put, "x"))
        first, _ = await poll_socket(backend, listener.accept, "the client to connect")
        with first:
            first.setblocking(False)
            assert await read_exactly(first, len(setup)) == setup
            putting.cancel()
            await putting.join()
            assert putting.cancelled
            assert await poll_socket(backend, lambda: first.recv(1024), "EOF") == b""

        # The next call connects again and sets the tubes up again.
        putting = backend.start(functools.partial(client.put, "y"))
        second, _ = await poll_socket(backend, listener.accept, "the client to reconnect")
        with second:
            second.setblocking(False)
            assert await read_exactly(second, len(setup)) == setup
            second.sendall(f"USING {tube}\r\nWATCHING 2\r\nWATCHING 1\r\n".encode())
            put = b"put 65536 0 60 1\r\ny\r\n"
            assert await read_exactly(second, len(put)) == put
            second.sendall(b"INSERTED 7\r\n")
            await putting.join()
            assert (putting.value, putting.error) == (7, None)
            await client.close()

    try:
        backend.run(body)
    finally:
        listener.close()


def test_aclose_and_async_with_return_the_client(backend: Backend, server: Server) -> None:
    async def body() -> None:
        client = backend.client(address_of(server))
        async with client as entered:
            assert entered is client
            assert await client.using() == "default"
        with pytest.raises(ConnectionError):
            await client.using()
        await client.aclose()

    backend.run(body)


# -- the server going away ----------------------------------------------------------------


def test_server_killed_mid_call(backend: Backend, transport: str) -> None:
    with running_beanstalkd(unix_socket=transport == "unix") as private:
        address = address_of(private)

        async def body() -> None:
            async with (
                backend.client(address) as client,
                backend.client(address) as other,
            ):
                reserving = backend.start(client.reserve)
                await until_waiting(other, "default", 1)
                os.kill(private.pid, signal.SIGKILL)
                await reserving.join()
                assert isinstance(reserving.error, ConnectionError), reserving.error
                # A later call (which tries to connect again) fails, not hangs.
                # Its exact type is checked by test_sync_errors.py's
                # test_server_killed_mid_session and test_connection_refused.
                with pytest.raises(OSError):
                    await client.put("after")

        backend.run(body)


# -- a connected socket passed in ------------------------------------------------------------


def test_connected_socket_is_used_and_not_replaced(
    backend: Backend, server: Server, tube: str
) -> None:
    if server.unix_path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(server.unix_path)
    else:
        sock = socket.create_connection(server.address)
    address: Any = trio.socket.from_stdlib_socket(sock) if backend.name == "trio" else sock

    async def body() -> None:
        async with backend.client(address, use=tube, watch=tube) as client:
            package = "beanproto_" + backend.name.split("-")[0]
            assert repr(client) == f"{package}.Client({address!r})"
            jid = await client.put("through my socket")
            assert (await client.reserve(timeout=0)).id == jid
            # A cancelled reserve gives the connection up; a socket passed in
            # cannot be replaced, so later calls fail.
            assert await backend.cancelled_after(0.01, client.reserve)
            with pytest.raises(ConnectionError, match="not replaced"):
                await client.using()
        assert sock.fileno() == -1  # the client closed the socket it was given

    try:
        backend.run(body)
    finally:
        sock.close()
