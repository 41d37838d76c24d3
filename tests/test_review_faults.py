"""A hostile review of the fault model (issue 8), as regression tests.

Each test plays one fault against scripted loopback peers (no beanstalkd) on
the three clients, run directly (``trio.run`` / ``asyncio.run``; the blocking
client inside ``trio.run``, where it simply blocks). The defects it
found have regression tests here (each failed before its fix); the one still
open is marked ``xfail(strict=True)``. The others cover
cases the existing tests did not, and pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import select
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio

import beanproto
import beanproto_anyio
import beanproto_asyncio
import beanproto_sync
import beanproto_trio
from faults_support import BOUND, PeerConnection, _TcpPeer, wait_until

FLAVORS = ["sync", "trio", "asyncio", "anyio"]

#: The async clients, and which of them run on a trio loop here (the anyio
#: client runs in a trio program in this file).
MODULES: dict[str, Any] = {
    "trio": beanproto_trio,
    "asyncio": beanproto_asyncio,
    "anyio": beanproto_anyio,
}
ON_TRIO = ("trio", "anyio")

#: Reply to a command on connection ``n`` (numbered from 0): bytes to send
#: (without the CRLF), ``None`` for the default beanstalkd-like answer,
#: ``"close"`` to hang up, ``"hang"`` to read on and never answer, ``False``
#: when the script already sent the reply itself (or sends none).
Script = Callable[[PeerConnection, int, list[Any], list[bytes]], Any]


def wait_for(event: threading.Event, what: str) -> None:
    """Block until ``event`` is set, failing after :data:`BOUND` seconds."""
    if not event.wait(BOUND):
        raise AssertionError(f"timed out after {BOUND} s waiting for {what}")


def _fin_acked(sock: socket.socket) -> bool:
    """Whether the client's kernel has acknowledged our FIN (so it holds the
    end of file): the socket left FIN_WAIT1."""
    fin_wait1 = 4  # TCP_FIN_WAIT1 in the kernel's tcp_states.h
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != fin_wait1


def _default_answer(words: list[bytes], state: list[Any]) -> bytes:
    if words[0] == b"use":
        state[0] = words[1]
        return b"USING " + words[1]
    if words[0] == b"list-tube-used":
        return b"USING " + bytes(state[0])
    if words[0] == b"watch":
        state[1].add(words[1])
        return b"WATCHING %d" % len(state[1])
    if words[0] == b"ignore":
        state[1].discard(words[1])
        return b"WATCHING %d" % len(state[1])
    if words[0] == b"put":
        return b"INSERTED 1"
    return b"UNKNOWN_COMMAND"


class Scripted(_TcpPeer):
    """A beanstalkd-like peer whose answers a script may override.

    What it did is observable: :meth:`event` ``("closed", n)`` is set once it
    hung up connection ``n`` and the client's kernel acknowledged the FIN,
    ``("hanging", n)`` once it read a command on ``n`` it will never answer.
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self.count = 0
        self._events: dict[tuple[str, int], threading.Event] = {}
        super().__init__()

    def event(self, what: str, n: int) -> threading.Event:
        with self._lock:
            return self._events.setdefault((what, n), threading.Event())

    def handle(self, conn: PeerConnection) -> None:
        with self._lock:
            n = self.count
            self.count += 1
        state: list[Any] = [b"default", {b"default"}]
        for command in self.read_commands(conn):
            words = command.split(b"\r\n", 1)[0].split()
            reply = self.script(conn, n, state, words)
            # ``isinstance`` first: a bytes reply compared with a str is a
            # BytesWarning, an error under ``python -b``.
            if isinstance(reply, str) and reply == "close":
                conn.sock.shutdown(socket.SHUT_WR)  # the FIN; _run closes the socket
                acked = functools.partial(_fin_acked, conn.sock)
                wait_until(acked, "the client to acknowledge the FIN", interval=0.001)
                self.event("closed", n).set()
                return
            if isinstance(reply, str) and reply == "hang":
                self.event("hanging", n).set()
                for _ in self.read_commands(conn):
                    pass
                return
            if reply is None:
                reply = _default_answer(words, state)
            if reply is not False:
                conn.sock.sendall(reply + b"\r\n")

    def puts(self) -> list[bytes]:
        return [c for conn in self.commands() for c in conn if c.startswith(b"put ")]


class _SyncAsAsync:
    """The blocking client behind coroutine methods (it blocks the run)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call


@contextlib.asynccontextmanager
async def open_client(flavor: str, address: Any, **kwargs: Any) -> AsyncIterator[Any]:
    if flavor == "sync":
        client = beanproto_sync.Client(address, **kwargs)
        try:
            yield _SyncAsAsync(client)
        finally:
            client.close()
        return
    module = MODULES[flavor]
    async with module.Client(address, **kwargs) as client:
        yield client


def run(flavor: str, main: Callable[[], Awaitable[Any]]) -> Any:
    if flavor == "asyncio":
        return asyncio.run(main())  # type: ignore[arg-type]
    return trio.run(main)


async def wait_running(flavor: str, event: threading.Event, what: str) -> None:
    """:func:`wait_for`, letting the event loop run meanwhile (the blocking
    client: just wait)."""
    if flavor in ON_TRIO:
        done = await trio.to_thread.run_sync(event.wait, BOUND)
    elif flavor == "asyncio":
        done = await asyncio.to_thread(event.wait, BOUND)
    else:
        done = event.wait(BOUND)
    if not done:
        raise AssertionError(f"timed out after {BOUND} s waiting for {what}")


def _reply_then_close(conn: PeerConnection, replied: threading.Event) -> Any:
    """Answer a put, and hang up once the client has that answer (the test
    sets ``replied``): the connection is idle when the FIN goes out."""
    conn.sock.sendall(b"INSERTED 1\r\n")
    wait_for(replied, "the client to have the put's reply")
    return "close"


# == the idle check: a command that provably never left ==================================


def _close_after_first_put(replied: threading.Event) -> Script:
    def script(conn: PeerConnection, n: int, state: list[Any], words: list[bytes]) -> Any:
        if n == 0 and words[0] == b"put":
            return _reply_then_close(conn, replied)  # the server closes the idle connection
        return None

    return script


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_call_after_the_server_closed_the_idle_connection_goes_out_once_on_a_new_one(
    flavor: str,
) -> None:
    # The README: "the server closed the connection while the client was idle
    # (restart, idle timeout) -> nothing: the call goes out on a new
    # connection". The client here did blocking work meanwhile (a CPU-bound
    # job handler), so an event loop did not run between the FIN and the call.
    replied = threading.Event()
    with Scripted(_close_after_first_put(replied)) as peer:

        async def main() -> None:
            async with open_client(flavor, peer.address) as client:
                await client.put("before")
                replied.set()
                # Blocking work (no event loop runs): the FIN arrives meanwhile.
                wait_for(peer.event("closed", 0), "the server to close the idle connection")
                await client.put("after")

        run(flavor, main)
        assert [p.split(b"\r\n")[1] for p in peer.puts()] == [b"before", b"after"]
        assert len(peer.commands()) == 2


# == connect_timeout bounds the set-up =====================================================


def _dripping_setup(conn: PeerConnection, n: int, state: list[Any], words: list[bytes]) -> Any:
    if words[0] == b"watch":
        for byte in b"WATCHING 2\r\n":  # one byte every 0.3 s: 3.6 s in all
            conn.sock.sendall(bytes([byte]))
            time.sleep(0.3)  # the fault itself: a peer this slow, not synchronisation
        return False
    return None


@pytest.mark.parametrize("flavor", FLAVORS)
def test_connect_timeout_bounds_a_set_up_whose_reply_drips_in(flavor: str) -> None:
    with Scripted(_dripping_setup) as peer:
        start = time.monotonic()

        async def main() -> None:
            async with open_client(flavor, peer.address, watch=["a", "default"], connect_timeout=1):
                pass

        with pytest.raises(TimeoutError):
            run(flavor, main)
        assert time.monotonic() - start < 2.0


@pytest.mark.parametrize("flavor", FLAVORS)
def test_with_no_connect_timeout_the_set_up_reply_is_bounded_by_io_timeout(flavor: str) -> None:
    with Scripted(lambda conn, n, state, words: "hang") as peer:
        outcome: list[BaseException | None] = []

        def attempt() -> None:
            async def main() -> None:
                async with open_client(
                    flavor, peer.address, use="t", connect_timeout=None, io_timeout=0.5
                ):
                    pass

            try:
                run(flavor, main)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=attempt, daemon=True)
        thread.start()
        thread.join(3.0)
        ended = not thread.is_alive()
        peer.close()  # wakes a set-up that still waits (end of file)
        thread.join(5.0)
        assert ended, "the set-up still waited 3 s after io_timeout=0.5"
        assert isinstance(outcome[0], TimeoutError)


def _setup_cut_off_on_reconnect(replied: threading.Event) -> Script:
    def script(conn: PeerConnection, n: int, state: list[Any], words: list[bytes]) -> Any:
        if n == 0 and words[0] == b"put":
            return _reply_then_close(conn, replied)
        if n == 1 and words[0] == b"use":
            return "close"  # the reconnect's set-up is cut off
        return None

    return script


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_set_up_cut_off_during_a_reconnect_is_not_a_lost_reply(flavor: str) -> None:
    replied = threading.Event()
    with Scripted(_setup_cut_off_on_reconnect(replied)) as peer:

        async def main() -> BaseException | None:
            async with open_client(flavor, peer.address, use="t") as client:
                await client.put("a")
                replied.set()
                # The event loops run while the server's FIN arrives.
                await wait_running(flavor, peer.event("closed", 0), "the server's FIN")
                try:
                    await client.put("b")
                except ConnectionError as exc:
                    return exc
                return None

        error = run(flavor, main)
        assert [p.split(b"\r\n")[1] for p in peer.puts()] == [b"a"]  # "b" never left
        assert isinstance(error, ConnectionError)
        assert not isinstance(error, beanproto.ReplyLostError)


# == close() during a reconnect's set-up ===================================================


def _hang_on_reconnect(replied: threading.Event) -> Script:
    def script(conn: PeerConnection, n: int, state: list[Any], words: list[bytes]) -> Any:
        if n == 0 and words[0] == b"put":
            return _reply_then_close(conn, replied)
        if n >= 1:
            return "hang"  # the new connection's set-up is never answered
        return None

    return script


def test_close_from_another_thread_ends_a_call_that_is_reconnecting() -> None:
    replied = threading.Event()
    with Scripted(_hang_on_reconnect(replied)) as peer:
        client = beanproto_sync.Client(peer.address, use="t", connect_timeout=3)
        client.put("a")
        replied.set()
        wait_for(peer.event("closed", 0), "the server to close the idle connection")
        outcome: list[tuple[BaseException | None, float]] = []

        def call() -> None:
            try:
                client.put("b")
                outcome.append((None, time.monotonic()))
            except BaseException as exc:
                outcome.append((exc, time.monotonic()))

        thread = threading.Thread(target=call)
        thread.start()
        # The call now waits for the set-up reply: the peer has its set-up command.
        wait_for(peer.event("hanging", 1), "the reconnect's set-up command")
        closed = time.monotonic()
        client.close()
        thread.join(5.0)
        error, ended = outcome[0]
        assert ended - closed < 1.0, f"ended {ended - closed:.2f} s after close()"
        assert isinstance(error, ConnectionError)


@pytest.mark.parametrize("flavor", ["trio", "asyncio", "anyio"])
def test_close_from_another_task_ends_a_call_that_is_reconnecting(flavor: str) -> None:
    replied = threading.Event()
    with Scripted(_hang_on_reconnect(replied)) as peer:
        hanging = peer.event("hanging", 1)

        async def main() -> tuple[BaseException | None, float]:
            module = MODULES[flavor]
            client = module.Client(peer.address, use="t", connect_timeout=None)
            await client.__aenter__()
            await client.put("a")
            replied.set()
            wait_for(peer.event("closed", 0), "the server to close the idle connection")
            outcome: list[BaseException | None] = []

            async def call() -> None:
                try:
                    await client.put("b")
                    outcome.append(None)
                except ConnectionError as exc:
                    outcome.append(exc)

            if flavor in ON_TRIO:
                ended = trio.Event()

                async def call_then_tell() -> None:
                    try:
                        await call()
                    finally:
                        ended.set()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(call_then_tell)
                    await wait_running(flavor, hanging, "the reconnect's set-up command")
                    closed = time.monotonic()
                    await client.close()
                    with trio.fail_after(5):
                        await ended.wait()
            else:
                task = asyncio.ensure_future(call())
                await wait_running(flavor, hanging, "the reconnect's set-up command")
                closed = time.monotonic()
                await client.close()
                await asyncio.wait_for(task, 5)
            return outcome[0], time.monotonic() - closed

        error, after = run(flavor, main)
        assert isinstance(error, ConnectionError)
        assert after < 1.0


# == io_timeout bounds a stalled send, whatever waits before it ============================


class _ReadsOneCommandThenStops(_TcpPeer):
    def __init__(self) -> None:
        self.got_reserve = threading.Event()
        self._released = threading.Event()
        super().__init__()

    def handle(self, conn: PeerConnection) -> None:
        data = b""
        while b"\r\n" not in data:
            chunk = conn.sock.recv(100)
            if not chunk:
                return
            data += chunk
        self.got_reserve.set()
        self._released.wait(BOUND)  # reads nothing more: the client's sends stall

    def close(self) -> None:
        self._released.set()
        super().close()


@pytest.mark.parametrize("flavor", ["trio", "asyncio", "anyio"])
def test_io_timeout_bounds_a_stalled_send_behind_a_waiting_reserve(flavor: str) -> None:
    body = b"x" * (64 * 1024 * 1024)
    with _ReadsOneCommandThenStops() as peer:

        async def main_trio() -> BaseException | None:
            async with beanproto_trio.Client(peer.address, encoding=None, io_timeout=0.5) as c:
                outcome: list[BaseException | None] = []

                async def put() -> None:
                    try:
                        await c.put(body)
                        outcome.append(None)
                    except Exception as exc:
                        outcome.append(exc)

                async def reserve() -> None:
                    with contextlib.suppress(Exception):
                        await c.reserve()

                with trio.move_on_after(4):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(reserve)
                        await wait_running("trio", peer.got_reserve, "the reserve")
                        await put()
                        nursery.cancel_scope.cancel()
                assert outcome, "the put was still sending 4 s after it stalled"
                return outcome[0]

        async def main_asyncio() -> BaseException | None:
            async with beanproto_asyncio.Client(peer.address, encoding=None, io_timeout=0.5) as c:
                waiting = asyncio.ensure_future(c.reserve())
                await wait_running("asyncio", peer.got_reserve, "the reserve")
                # Not wait_for: since 3.11 its TimeoutError is the client's own.
                putting = asyncio.ensure_future(c.put(body))
                done, _ = await asyncio.wait({putting}, timeout=4)
                if not done:
                    putting.cancel()
                    waiting.cancel()
                    raise AssertionError("the put was still sending 4 s after it stalled")
                error = putting.exception()
                waiting.cancel()
                with contextlib.suppress(BaseException):
                    await waiting
                return error

        error = run(flavor, main_trio if flavor in ON_TRIO else main_asyncio)
        assert isinstance(error, TimeoutError)


# == settings the constructor accepts must work ============================================


@pytest.mark.parametrize(
    ("setting", "flavor"),
    [
        pytest.param(
            {"io_timeout": 1e19},
            "sync",
        ),
        pytest.param(
            {"connect_timeout": 1e10},
            "sync",
        ),
        *[
            pytest.param(
                {"keepalive": 3e6},
                f,
            )
            for f in FLAVORS
        ],
        *[pytest.param({"io_timeout": 1e19}, f) for f in ("trio", "asyncio", "anyio")],
        *[pytest.param({"connect_timeout": 1e10}, f) for f in ("trio", "asyncio", "anyio")],
    ],
)
def test_a_very_large_setting_is_refused_or_works(setting: dict[str, float], flavor: str) -> None:
    with Scripted(lambda conn, n, state, words: None) as peer:

        async def main() -> int:
            async with open_client(flavor, peer.address, use="t", **setting) as client:
                return int(await client.put("x"))

        try:
            assert run(flavor, main) == 1
        except beanproto.ArgumentError:
            pass  # refused before connecting: fine too


# == what passes: gaps in the existing tests ==============================================


def _close_on_stats(conn: PeerConnection, n: int, state: list[Any], words: list[bytes]) -> Any:
    return "close" if words[0] == b"stats" else None


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_watch_list_changed_at_runtime_is_what_a_reconnect_restores(flavor: str) -> None:
    with Scripted(_close_on_stats) as peer:

        async def main() -> None:
            async with open_client(flavor, peer.address, use="u", watch=["a", "default"]) as c:
                await c.watch("c")
                await c.ignore("a")
                await c.use("v")
                await c.ignore("default")
                with pytest.raises(beanproto.ReplyLostError):
                    await c.stats()
                assert await c.using() == "v"

        run(flavor, main)
        setup = [command.strip() for command in peer.commands()[-1][:-1]]
        assert setup == [b"use v", b"watch c", b"ignore default"]


def _slow_or_fast_put(conn: PeerConnection, n: int, state: list[Any], words: list[bytes]) -> Any:
    if words[0] == b"put":
        body = conn.commands[-1].split(b"\r\n")[1]
        number = int(body.split(b"-")[0])
        if body.endswith(b"slow"):  # half a reply line, then the rest
            conn.sock.sendall(b"INSERT")
            # The rest only once the client gave up on the call and moved on:
            # its next command is in.
            readable, _, _ = select.select([conn.sock], [], [], BOUND)
            assert readable, "the client sent nothing after the cancelled put"
            conn.sock.sendall(b"ED %d\r\n" % number)
            return False
        return b"INSERTED %d" % number
    return None


@pytest.mark.parametrize("flavor", ["trio", "asyncio", "anyio"])
def test_a_call_cancelled_in_the_middle_of_its_reply_leaves_the_next_call_its_own(
    flavor: str,
) -> None:
    with Scripted(_slow_or_fast_put) as peer:

        async def main() -> list[int]:
            got = []
            async with open_client(flavor, peer.address, io_timeout=5) as c:
                for i in range(3):
                    if flavor in ON_TRIO:
                        with trio.move_on_after(0.1):
                            await c.put(f"{100 + i}-slow")
                    else:
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(c.put(f"{100 + i}-slow"), 0.1)
                    got.append(await c.put(f"{i}-fast"))
            return got

        assert run(flavor, main) == [0, 1, 2]
        assert len(peer.commands()) == 1  # no reconnect was needed


def _lose_first_connection(in_flight: int, started: threading.Event) -> Script:
    """Read ``in_flight`` puts on the first connection, leaving them all
    unanswered, and hang up once every call has started (``started``)."""

    def script(conn: PeerConnection, n: int, state: list[Any], words: list[bytes]) -> Any:
        if n == 0 and words[0] == b"put":
            if sum(c.startswith(b"put ") for c in conn.commands) < in_flight:
                return False  # no reply: this put is in flight when the link dies
            wait_for(started, "every call to start")
            return "close"
        return None

    return script


@pytest.mark.parametrize("flavor", FLAVORS)
def test_concurrent_puts_when_the_link_dies_are_never_sent_twice(flavor: str) -> None:
    n = 20
    started = threading.Event()
    # The async clients pipeline the tasks' puts, so several are in flight
    # when the link dies; the blocking one has one on the wire at a time.
    in_flight = 1 if flavor == "sync" else 5
    with Scripted(_lose_first_connection(in_flight, started)) as peer:
        results: dict[int, object] = {}

        async def main() -> None:
            async with open_client(flavor, peer.address) as c:

                async def put(i: int) -> None:
                    try:
                        results[i] = await c.put(str(i))
                    except ConnectionError as exc:
                        results[i] = exc

                if flavor == "asyncio":
                    started.set()  # gather starts every put at once
                    await asyncio.gather(*(put(i) for i in range(n)))
                elif flavor in ON_TRIO:
                    async with trio.open_nursery() as nursery:
                        for i in range(n):
                            nursery.start_soon(put, i)
                        started.set()
                else:
                    threads = [threading.Thread(target=trio.run, args=(put, i)) for i in range(n)]
                    for thread in threads:
                        thread.start()
                    started.set()
                    for thread in threads:
                        thread.join(10)

        run(flavor, main)
        bodies = [p.split(b"\r\n")[1] for p in peer.puts()]
        assert len(bodies) == len(set(bodies)), "a put reached the server twice"
        lost = {int(p.split(b"\r\n")[1]) for p in peer.commands()[0] if p.startswith(b"put ")}
        for i in lost:
            assert isinstance(results[i], beanproto.ReplyLostError)
        assert len(results) == n
