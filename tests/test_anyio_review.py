"""A hostile review of ``beanproto_anyio`` on both of anyio's backends.

Every probe runs the anyio client through ``anyio.run`` on asyncio and on
trio, against scripted peers (a local socket server in a thread, scripted per
connection) or real beanstalkd servers. A probe that found a defect is marked
``xfail(strict=True)`` with the defect in its reason; the others are
regression tests. (The three defects it found, a socket left open by a
cancelled ``close()`` and, on asyncio, stray bytes hidden from the idle check
in anyio's stream buffer, are fixed: the client now reads the socket itself
and closes it as it gives a link up. Their probes stay, as regression tests.)
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from tools.beanstalkd import Server, running_beanstalkd

import beanproto
import beanproto_anyio
from faults_support import open_fds, stats_job, stats_tube

BACKENDS = ["asyncio", "trio"]
#: The longest a probe may run.
LIMIT = 20.0
#: The longest any single wait for a condition may take.
BOUND = 10.0

Client = beanproto_anyio.Client


def run(backend: str, main: Callable[[], Awaitable[Any]]) -> Any:
    async def bounded() -> Any:
        with anyio.fail_after(LIMIT):
            return await main()

    return anyio.run(bounded, backend=backend)


async def wait_in_thread(event: threading.Event, what: str) -> None:
    """Wait for ``event`` while the event loop runs on."""
    done = await anyio.to_thread.run_sync(event.wait, BOUND)
    assert done, f"timed out waiting for {what}"


async def poll(check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` with a deadline, yielding to the loop between checks."""
    with anyio.fail_after(BOUND):
        while not check():
            await anyio.sleep(0.001)
    _ = what


def spin(until: Callable[[], bool], what: str) -> None:
    """Block the event loop (as a CPU-bound handler does) until ``until``."""
    end = time.monotonic() + BOUND
    while not until():
        assert time.monotonic() < end, f"timed out blocking for {what}"


def client_socket(client: Any) -> tuple[int, str]:
    """The client's own socket: its descriptor and what /proc says it is.

    (Counting every socket of the process would count the scripted peer's
    side too, which its thread closes only when it sees the end of file.)
    """
    link = client._link
    assert link is not None
    fd = link.raw.fileno()
    return fd, open_fds()[fd]


def still_open(socket_id: tuple[int, str]) -> bool:
    fd, what = socket_id
    return open_fds().get(fd) == what


# == a scripted peer =====================================================================


class Conn:
    """The peer's side of one connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()
        self.commands: list[bytes] = []

    def command(self) -> bytes | None:
        """The next whole command (a put with its body); ``None`` at EOF."""
        while True:
            end = self.pending.find(b"\r\n")
            if end >= 0:
                size = end + 2
                if self.pending.startswith(b"put "):
                    size += int(self.pending[:end].split()[-1]) + 2
                if len(self.pending) >= size:
                    command = bytes(self.pending[:size])
                    del self.pending[:size]
                    self.commands.append(command)
                    return command
            try:
                chunk = self.sock.recv(1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                return None
            self.pending += chunk

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def drain(self) -> None:
        while self.command() is not None:
            pass


Script = Callable[[Conn, int], None]


class Peer:
    """Listens (unix or TCP); runs ``script(conn, n)`` for connection ``n``."""

    def __init__(self, script: Script, unix: bool = True) -> None:
        self.script = script
        self._dir = tempfile.TemporaryDirectory(prefix="bp-anyio-review-")
        if unix:
            self.address: Any = os.path.join(self._dir.name, "peer.sock")
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind(self.address)
        else:
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.bind(("127.0.0.1", 0))
            self.address = self._listener.getsockname()
        self._listener.listen(16)
        self.conns: list[Conn] = []
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._start(self._accept)

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                conn = Conn(sock)
                n = len(self.conns)
                self.conns.append(conn)
            self._start(self._serve, conn, n)

    def _serve(self, conn: Conn, n: int) -> None:
        try:
            self.script(conn, n)
        except OSError:
            pass
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            conn.sock.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            conns = list(self.conns)
            threads = list(self._threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(BOUND)
        self._dir.cleanup()
        assert not self.errors, self.errors


@contextlib.contextmanager
def peer(script: Script, unix: bool = True) -> Iterator[Peer]:
    made = Peer(script, unix)
    try:
        yield made
    finally:
        made.close()


def answer(words: list[bytes]) -> bytes:
    """A beanstalkd-like answer to a command nobody scripted."""
    if words[0] == b"use":
        return b"USING " + words[1] + b"\r\n"
    if words[0] in (b"watch", b"ignore"):
        return b"WATCHING 1\r\n"
    if words[0] == b"put":
        return b"INSERTED 1\r\n"
    return b"UNKNOWN_COMMAND\r\n"


def verb(command: bytes) -> bytes:
    return command.split(b"\r\n", 1)[0].split()[0]


# == real servers ========================================================================

BIG = 12 * 1024 * 1024


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Server]]:
    with (
        running_beanstalkd(max_job_size=BIG) as tcp,
        running_beanstalkd(unix_socket=True, max_job_size=BIG) as unix,
    ):
        yield {"tcp": tcp, "unix": unix}


def where(server: Server) -> Any:
    return server.unix_path if server.unix_path is not None else server.address


def tcp_address(server: Server) -> tuple[str, int]:
    return server.address


def tube_name() -> str:
    return f"r-{os.urandom(6).hex()}"


@contextlib.asynccontextmanager
async def client_on(address: Any, **kwargs: Any) -> AsyncIterator[Client[str]]:
    async with Client(address, **kwargs) as client:
        yield client


# == close() under a cancellation ========================================================


def _serve_defaults(conn: Conn, n: int) -> None:
    while (command := conn.command()) is not None:
        conn.send(answer(command.split(b"\r\n", 1)[0].split()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_leaving_async_with_under_a_cancellation_closes_the_socket(backend: str) -> None:
    with peer(_serve_defaults) as server:

        async def main() -> bool:
            with anyio.CancelScope() as scope:
                async with Client(server.address, use="t") as client:
                    assert await client.put("x") == 1
                    ours = client_socket(client)
                    scope.cancel()
                    await anyio.lowlevel.checkpoint()
            left = still_open(ours)
            await client.close()  # (a second close() closes what the first left)
            return left

        assert not run(backend, main), "the socket is left open after the client was closed"


@pytest.mark.parametrize("backend", BACKENDS)
def test_close_in_a_cancelled_scope_closes_the_socket(backend: str) -> None:
    with peer(_serve_defaults) as server:

        async def main() -> bool:
            client = Client(server.address, use="t")
            await client.__aenter__()
            assert await client.put("x") == 1
            ours = client_socket(client)
            with anyio.CancelScope() as scope:
                scope.cancel()
                await client.close()
            left = still_open(ours)
            await client.close()  # (a second close() closes what the first left)
            return left

        assert not run(backend, main), "the socket is left open after the client was closed"


# == bytes nobody asked for ==============================================================


@pytest.mark.parametrize("backend", BACKENDS)
def test_stray_bytes_on_a_fresh_connection_are_not_a_reply(backend: str) -> None:
    sent = threading.Event()

    def script(conn: Conn, n: int) -> None:
        if n == 0:
            conn.send(b"INSERTED 99\r\n")  # before any command: nobody asked
            sent.set()
        _serve_defaults(conn, n)

    with peer(script) as server:

        async def main() -> object:
            # use/watch "default": no set-up, so nothing was read yet.
            async with Client(server.address) as client:
                await wait_in_thread(sent, "the stray reply")
                try:
                    return await client.put("x")
                except beanproto.RemoteProtocolError as exc:
                    return exc

        outcome = run(backend, main)
        assert outcome != 99, "the stray reply became the put's result"
        assert isinstance(outcome, beanproto.RemoteProtocolError) or outcome == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_stray_bytes_after_a_large_reply_are_not_the_next_reply(backend: str) -> None:
    head = b"FOUND 5 %d\r\n"
    size = 65536 - len(head % 60000) - 2  # the reply is exactly 64 KiB
    reply = head % size + b"b" * size + b"\r\n"
    assert len(reply) == 65536
    sent = threading.Event()

    def script(conn: Conn, n: int) -> None:
        while (command := conn.command()) is not None:
            if n == 0 and verb(command) == b"peek":
                conn.send(reply + b"INSERTED 77\r\n")  # one write: a reply and a stray one
                sent.set()
            else:
                conn.send(answer(command.split(b"\r\n", 1)[0].split()))

    with peer(script) as server:

        async def main() -> object:
            async with Client(server.address, encoding=None) as client:

                async def hog() -> None:
                    # The loop is busy (a CPU-bound task) while the reply comes:
                    # it is all in the socket when the loop next reads.
                    await anyio.lowlevel.checkpoint()
                    spin(sent.is_set, "the peer's reply")

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(hog)
                    job = await client.peek(5)
                assert len(job.body) == size
                try:
                    return await client.put(b"x")
                except beanproto.RemoteProtocolError as exc:
                    return exc

        outcome = run(backend, main)
        assert outcome != 77, "the stray reply became the put's result"


# == a reply that came in time is not late ===============================================


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_reply_that_came_while_the_loop_was_busy_is_not_late(backend: str) -> None:
    replied = threading.Event()

    def script(conn: Conn, n: int) -> None:
        while (command := conn.command()) is not None:
            conn.send(answer(command.split(b"\r\n", 1)[0].split()))
            if verb(command) == b"put":
                replied.set()

    with peer(script) as server:

        async def main() -> object:
            async with Client(server.address, use="t", io_timeout=0.3) as client:
                outcome: list[object] = []

                async def put() -> None:
                    try:
                        outcome.append(await client.put("x"))
                    except Exception as exc:
                        outcome.append(exc)

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(put)
                    await wait_in_thread(replied, "the reply")
                    # The reply is here (answered in microseconds); now the loop is
                    # busy for longer than io_timeout before the put reads it.
                    start = time.monotonic()
                    spin(lambda: time.monotonic() - start > 0.6, "io_timeout to pass")
                return outcome[0]

        assert run(backend, main) == 1


# == against a real server ===============================================================

TRANSPORTS = ["tcp", "unix"]


@pytest.mark.integration
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_bodies_both_ways(backend: str, transport: str, servers: dict[str, Server]) -> None:
    body = os.urandom(6 * 1024 * 1024)
    tube = tube_name()

    async def main() -> None:
        async with Client(where(servers[transport]), encoding=None, use=tube, watch=tube) as c:
            job_id = await c.put(body)
            job = await c.reserve(timeout=5)
            assert job.id == job_id and job.body == body
            await c.delete(job)
            assert await c.put(b"small") > job_id  # the connection is in step

    run(backend, main)


@pytest.mark.integration
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_many_tasks_share_one_client(
    backend: str, transport: str, servers: dict[str, Server]
) -> None:
    tube = tube_name()

    async def main() -> None:
        async with Client(where(servers[transport]), use=tube, watch=tube, io_timeout=5) as c:
            ids: dict[int, int] = {}

            async def worker(i: int) -> None:
                ids[i] = await c.put(f"{i}", priority=i)
                job = await c.peek(ids[i])
                assert job.body == f"{i}"
                stats = await c.stats_job(ids[i])
                assert stats["pri"] == i

            async with anyio.create_task_group() as tasks:
                for i in range(200):
                    tasks.start_soon(worker, i)
            assert len(set(ids.values())) == 200

    run(backend, main)


@pytest.mark.integration
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cancelled_large_put_leaves_no_job_and_the_client_usable(
    backend: str, servers: dict[str, Server]
) -> None:
    tube = tube_name()
    body = b"z" * (10 * 1024 * 1024)
    address = tcp_address(servers["tcp"])

    async def main() -> None:
        async with Client(address, encoding=None, use=tube, watch=tube) as c:
            with anyio.CancelScope() as scope:

                async def cancel_soon() -> None:
                    await poll(lambda: c._link is not None and c._link.send_lock.locked(), "send")
                    scope.cancel()

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(cancel_soon)
                    await c.put(body)
            assert scope.cancelled_caught
            job_id = await c.put(b"after")
            job = await c.reserve(timeout=5)
            assert (job.id, job.body) == (job_id, b"after")
            await c.delete(job)

    run(backend, main)
    stats = stats_tube(address, tube)
    assert stats is None or stats["total-jobs"] == "1"


@pytest.mark.integration
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cancelled_reserve_puts_the_job_back_and_fails_the_calls_behind_it(
    backend: str, servers: dict[str, Server]
) -> None:
    tube = tube_name()
    address = tcp_address(servers["tcp"])

    async def main() -> None:
        async with Client(address, use=tube, watch=tube) as c, Client(address, use=tube) as o:
            held_id = await c.put("held")
            held = await c.reserve(timeout=5)
            assert held.id == held_id
            outcome: list[object] = []
            scope = anyio.CancelScope()

            async def behind() -> None:
                try:
                    outcome.append(await c.stats())
                except Exception as exc:
                    outcome.append(exc)

            async def reserve() -> None:
                with scope:
                    await c.reserve()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(reserve)
                await poll(lambda: c._link is not None and len(c._link.slots) == 1, "reserve")
                tasks.start_soon(behind)
                await poll(lambda: c._link is not None and len(c._link.slots) == 2, "stats")
                scope.cancel()
            assert len(outcome) == 1 and isinstance(outcome[0], beanproto.ReplyLostError)

            def back() -> bool:
                stats = stats_job(address, held_id)
                return stats is not None and stats["state"] == "ready"

            await poll(back, "the held job to be put back")
            assert await c.put("again") > held_id  # reconnects
            assert (await o.stats_tube(tube))["current-jobs-ready"] == 2

    run(backend, main)


@pytest.mark.integration
@pytest.mark.parametrize("backend", BACKENDS)
def test_reserve_with_timeout_then_other_calls_are_not_late(
    backend: str, servers: dict[str, Server]
) -> None:
    tube = tube_name()

    async def main() -> None:
        async with Client(tcp_address(servers["tcp"]), use=tube, watch=tube, io_timeout=0.3) as c:
            got: list[object] = []

            async def reserve() -> None:
                try:
                    got.append(await c.reserve(timeout=1))
                except Exception as exc:
                    got.append(exc)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(reserve)
                await poll(lambda: c._link is not None and len(c._link.slots) == 1, "reserve")
                for _ in range(3):  # queued behind a reserve that waits 1 s > io_timeout
                    assert (await c.stats_tube(tube))["name"] == tube
            assert len(got) == 1 and isinstance(got[0], beanproto_anyio.TimedOutError)

    run(backend, main)


# == faults from a scripted peer =========================================================


def _close_on_put(conn: Conn, n: int) -> None:
    while (command := conn.command()) is not None:
        if n == 0 and verb(command) == b"put":
            return  # read the put, hang up: its reply is lost
        conn.send(answer(command.split(b"\r\n", 1)[0].split()))


def _garbage_on_put(conn: Conn, n: int) -> None:
    while (command := conn.command()) is not None:
        if n == 0 and verb(command) == b"put":
            conn.send(b"WHAT IS THIS\r\n")
        else:
            conn.send(answer(command.split(b"\r\n", 1)[0].split()))


@pytest.mark.parametrize("unix", [True, False], ids=["unix", "tcp"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_eof_while_a_reply_is_owed_then_reconnect(backend: str, unix: bool) -> None:
    with peer(_close_on_put, unix) as server:

        async def main() -> None:
            async with Client(server.address, use="t") as client:
                with pytest.raises(beanproto.ReplyLostError):
                    await client.put("a")
                assert await client.put("b") == 1

        run(backend, main)
        assert len(server.conns) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_eof_with_reconnect_false_ends_the_client(backend: str) -> None:
    with peer(_close_on_put) as server:

        async def main() -> None:
            async with Client(server.address, use="t", reconnect=False) as client:
                with pytest.raises(beanproto.ReplyLostError):
                    await client.put("a")
                with pytest.raises(ConnectionError) as info:
                    await client.put("b")
                assert not isinstance(info.value, beanproto.ReplyLostError)

        run(backend, main)
        assert len(server.conns) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_garbage_reply_is_a_remote_protocol_error(backend: str) -> None:
    with peer(_garbage_on_put) as server:

        async def main() -> None:
            async with Client(server.address, use="t") as client:
                with pytest.raises(beanproto.RemoteProtocolError):
                    await client.put("a")
                assert await client.put("b") == 1

        run(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_socket_passed_in_is_not_replaced(backend: str) -> None:
    with peer(_close_on_put) as server:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(server.address)

        async def main() -> None:
            async with Client(sock, use="t") as client:
                with pytest.raises(beanproto.ReplyLostError):
                    await client.put("a")
                with pytest.raises(ConnectionError):
                    await client.put("b")

        run(backend, main)
        sock.close()
        assert len(server.conns) == 1


def _hang_puts(conn: Conn, n: int) -> None:
    while (command := conn.command()) is not None:
        if verb(command) != b"put":
            conn.send(answer(command.split(b"\r\n", 1)[0].split()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_close_from_another_task_ends_every_call_in_flight(backend: str) -> None:
    with peer(_hang_puts) as server:

        async def main() -> list[object]:
            client = Client(server.address, use="t", io_timeout=None)
            await client.__aenter__()
            outcome: list[object] = []

            async def put(i: int) -> None:
                try:
                    outcome.append(await client.put(str(i)))
                except Exception as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tasks:
                for i in range(5):
                    tasks.start_soon(put, i)
                await poll(lambda: client._link is not None and len(client._link.slots) == 5, "5")
                with anyio.fail_after(2):
                    await client.close()
            with pytest.raises(ConnectionError):
                await client.put("after")
            return outcome

        outcome = run(backend, main)
        assert len(outcome) == 5
        assert all(isinstance(o, beanproto.ReplyLostError) for o in outcome), outcome


@pytest.mark.parametrize("backend", BACKENDS)
def test_io_timeout_with_pipelined_calls(backend: str) -> None:
    with peer(_hang_puts) as server:

        async def main() -> list[object]:
            outcome: list[object] = []
            async with Client(server.address, use="t", io_timeout=0.3) as client:

                async def put(i: int) -> None:
                    try:
                        outcome.append(await client.put(str(i)))
                    except Exception as exc:
                        outcome.append(exc)

                start = time.monotonic()
                async with anyio.create_task_group() as tasks:
                    for i in range(4):
                        tasks.start_soon(put, i)
                assert time.monotonic() - start < 2.0
            return outcome

        outcome = run(backend, main)
        late = [o for o in outcome if isinstance(o, TimeoutError)]
        lost = [o for o in outcome if isinstance(o, beanproto.ReplyLostError)]
        assert len(late) == 1 and len(lost) == 3, outcome


def _lose_on_third_put(conn: Conn, n: int) -> None:
    puts = 0
    while (command := conn.command()) is not None:
        if n == 0 and verb(command) == b"put":
            puts += 1
            if puts == 3:
                return
        conn.send(answer(command.split(b"\r\n", 1)[0].split()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_put_many_losing_the_connection_part_way(backend: str) -> None:
    with peer(_lose_on_third_put) as server:

        async def main() -> None:
            async with Client(server.address, use="t") as client:
                with pytest.raises(beanproto_anyio.BatchLostError) as info:
                    await client.put_many([str(i) for i in range(6)])
                results = info.value.results
                assert results[:2] == [1, 1], results
                assert all(isinstance(r, ConnectionError) for r in results[2:]), results
                # The third put was read by the server: its reply is lost.
                assert isinstance(results[2], beanproto.ReplyLostError), results
                assert await client.put("again") == 1

        run(backend, main)


# == Pool and Worker =====================================================================


@pytest.mark.integration
@pytest.mark.parametrize("backend", BACKENDS)
def test_worker_handles_every_job_once(backend: str, servers: dict[str, Server]) -> None:
    tube = tube_name()
    address = tcp_address(servers["tcp"])

    async def main() -> list[str]:
        async with Client(address, use=tube) as c:
            ids = [await c.put(f"job-{i}") for i in range(8)]
        seen: list[str] = []
        worker: beanproto_anyio.Worker[str]

        async def handler(job: beanproto_anyio.Job[str]) -> None:
            seen.append(job.body)
            await anyio.sleep(0)
            if len(seen) == len(ids):
                worker.stop()

        worker = beanproto_anyio.Worker(address, handler, watch=tube, concurrency=3)
        await worker.run()
        await poll(lambda: all(stats_job(address, i) is None for i in ids), "the deletes")
        return seen

    assert sorted(run(backend, main)) == sorted(f"job-{i}" for i in range(8))


@pytest.mark.integration
@pytest.mark.parametrize("backend", BACKENDS)
def test_pool_puts_and_reserves_across_servers(backend: str, servers: dict[str, Server]) -> None:
    tube = tube_name()

    async def main() -> None:
        addresses = [where(servers["tcp"]), where(servers["unix"])]
        async with beanproto_anyio.Pool(addresses, use=tube, watch=tube) as pool:
            for i in range(6):
                await pool.put(f"p{i}")
            bodies = []
            for _ in range(6):
                job = await pool.reserve(timeout=2)
                bodies.append(job.body)
                await pool.delete(job)
            assert sorted(bodies) == [f"p{i}" for i in range(6)]

    run(backend, main)
