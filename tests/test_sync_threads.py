"""One blocking client shared by several threads.

Calls are serialized by the client: every thread gets its own reply, a
``reserve()`` waiting in one thread holds the others up until it returns, a
failure in one thread's call makes the calls waiting behind it raise
``ConnectionError``, and ``close()`` works from any thread.

Threads are synchronised through the server (its ``current-waiting``
counter) and through the stacks of the threads themselves (a thread is known
to wait for the client when its stack is inside ``Client._request``), never
through sleeps. Every wait is bounded.
"""

from __future__ import annotations

import gc
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tools.beanstalkd import Server

import beanproto_sync
from beanproto_sync import Client
from conftest import address_of, new_tube

pytestmark = pytest.mark.integration

#: Bound of every wait in this file (seconds).
BOUND = 10.0


def poll_until(condition: Callable[[], bool], what: str) -> None:
    """Wait, boundedly, until ``condition()`` holds (a state polled, not a
    time slept through)."""
    deadline = time.monotonic() + BOUND
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


class Worker(threading.Thread):
    """Runs ``fn`` in a thread and keeps its result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc

    def finish(self) -> Any:
        """Join (boundedly) and return the result, raising its exception."""
        self.join(BOUND)
        assert not self.is_alive(), "the thread hangs"
        if self.error is not None:
            raise self.error
        return self.result

    def waits_in_client(self) -> bool:
        """Whether the thread is inside a client call (sending, reading or
        waiting for another thread's call to end)."""
        frame = sys._current_frames().get(self.ident or -1)
        while frame is not None:
            if frame.f_code.co_name == "_request":
                return True
            frame = frame.f_back
        return False


@pytest.fixture
def tcp(server_pool: Any) -> Server:
    server: Server = server_pool.get("tcp")
    return server


@pytest.fixture
def shared(tcp: Server) -> Iterator[tuple[Client[str], str]]:
    tube = new_tube()
    client = Client(address_of(tcp), use=tube, watch=tube)
    try:
        yield client, tube
    finally:
        client.close()


def waiting_reserves(server: Server, tube: str) -> int:
    """How many connections wait in a reserve on ``tube`` (0 once the tube
    is gone: nobody watches it any more)."""
    with Client(address_of(server)) as observer:
        try:
            count: int = observer.stats_tube(tube)["current-waiting"]
        except beanproto_sync.NotFoundError:
            return 0
        return count


def test_threads_putting_on_one_client_each_get_their_own_ids(
    shared: tuple[Client[str], str],
) -> None:
    client, _ = shared
    per_thread = 300

    def produce(name: str) -> list[tuple[int, str]]:
        return [(client.put(f"{name}-{i}"), f"{name}-{i}") for i in range(per_thread)]

    workers = [Worker(lambda name=f"w{n}": produce(name)) for n in range(4)]  # type: ignore[misc]
    for worker in workers:
        worker.start()
    results = [worker.finish() for worker in workers]
    ids = [job_id for result in results for job_id, _ in result]
    assert len(set(ids)) == 4 * per_thread
    # Every id a thread got is the job that thread inserted.
    for result in results:
        for job_id, body in result:
            assert client.peek(job_id).body == body


def test_mixed_commands_from_threads_keep_their_replies(
    shared: tuple[Client[str], str],
) -> None:
    client, tube = shared

    def cycle(name: str) -> int:
        done = 0
        for i in range(150):
            job_id = client.put(f"{name}-{i}")
            assert client.stats_job(job_id)["tube"] == tube
            assert client.peek(job_id).body == f"{name}-{i}"
            assert client.using() == tube
            client.delete(job_id)
            done += 1
        return done

    workers = [Worker(lambda name=f"w{n}": cycle(name)) for n in range(3)]  # type: ignore[misc]
    for worker in workers:
        worker.start()
    assert [worker.finish() for worker in workers] == [150, 150, 150]


def test_a_waiting_reserve_holds_up_the_other_threads(
    tcp: Server, shared: tuple[Client[str], str]
) -> None:
    client, tube = shared
    reserver = Worker(client.reserve)
    reserver.start()
    poll_until(lambda: waiting_reserves(tcp, tube) == 1, "the reserve to wait on the server")
    putter = Worker(lambda: client.put("from the putter"))
    putter.start()
    poll_until(putter.waits_in_client, "the putter to wait for the client")
    assert putter.is_alive()  # held up behind the reserve, not failed
    with Client(address_of(tcp), use=tube) as other:
        other_id = other.put("for the reserve")
    job = reserver.finish()
    assert (job.id, job.body) == (other_id, "for the reserve")
    put_id = putter.finish()
    assert client.peek(put_id).body == "from the putter"
    client.delete(job)


def test_close_from_another_thread_ends_a_waiting_reserve(
    tcp: Server, shared: tuple[Client[str], str]
) -> None:
    client, tube = shared
    reserver = Worker(client.reserve)
    reserver.start()
    poll_until(lambda: waiting_reserves(tcp, tube) == 1, "the reserve to wait on the server")
    client.close()
    with pytest.raises(ConnectionError):
        reserver.finish()
    with pytest.raises(ConnectionError, match="closed"):
        client.put("after close")
    # The server saw the connection go: nobody waits on the tube any more.
    poll_until(lambda: waiting_reserves(tcp, tube) == 0, "the server to drop the reserve")


class DyingPeer:
    """A server that answers nothing and hangs up when told to; the test
    holds its end of a socket pair."""

    def __init__(self) -> None:
        self.mine, theirs = socket.socketpair()
        self.mine.settimeout(BOUND)
        theirs.settimeout(BOUND)
        self.client: Client[str] = Client(theirs)

    def received(self, expected: bytes) -> bool:
        data = b""
        while len(data) < len(expected):
            chunk = self.mine.recv(len(expected) - len(data))
            if not chunk:
                break
            data += chunk
        return data == expected


def test_a_failed_call_fails_the_threads_waiting_behind_it() -> None:
    peer = DyingPeer()
    try:
        reserver = Worker(peer.client.reserve)
        reserver.start()
        assert peer.received(b"reserve\r\n")
        putters = [Worker(lambda: peer.client.put("x")) for _ in range(3)]
        for putter in putters:
            putter.start()
        for putter in putters:
            poll_until(putter.waits_in_client, "a putter to wait for the client")
        peer.mine.close()  # the server dies while the reserve waits
        with pytest.raises(ConnectionError):
            reserver.finish()
        for putter in putters:
            with pytest.raises(ConnectionError):
                putter.finish()
            assert not isinstance(putter.error, beanproto_sync.BeanstalkdError)
    finally:
        peer.client.close()
        peer.mine.close()


class Interrupt(BaseException):
    """What a signal handler raises, like ``KeyboardInterrupt``."""


@pytest.fixture
def interrupting_alarm() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise Interrupt

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def interrupted_at(call: Callable[[], object], n: int) -> bool:
    """Run ``call``, raising :class:`Interrupt` as the ``n``-th C function
    it calls returns (where a signal handler's exception lands, as after a
    lock's ``acquire()``). Return whether the interrupt happened."""
    seen = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal seen
        if event == "c_return":
            seen += 1
            if seen == n:
                sys.setprofile(None)
                raise Interrupt

    # No garbage collection meanwhile: its callbacks (Hypothesis keeps one)
    # make C calls too, and the interrupt must land in ``call``, not there.
    collecting = gc.isenabled()
    gc.disable()
    sys.setprofile(profile)
    try:
        call()
    except Interrupt:
        return True
    finally:
        sys.setprofile(None)
        if collecting:
            gc.enable()
    return False


@pytest.mark.parametrize("method", ["put", "stats", "reserve"])
def test_an_interrupt_at_any_point_never_leaves_the_client_locked(tcp: Server, method: str) -> None:
    # An exception from a signal handler (Ctrl-C) can land after any C call
    # returns: the client must then be usable or raise ConnectionError, and
    # never keep its lock (every later call, from any thread, would hang).
    tube = new_tube()
    client: Client[str] = Client(address_of(tcp), use=tube, watch=tube)
    calls: dict[str, Callable[[], object]] = {
        "put": lambda: client.put("x"),
        "stats": lambda: client.stats(),
        "reserve": lambda: client.reserve(timeout=0),
    }
    try:
        n = 0
        while True:
            n += 1
            assert n < 500, "the call never ran to its end"
            client.put("ready")  # so that a reserve finds a job
            if not interrupted_at(lambda: calls[method](), n):
                break
            assert not client._lock.locked(), f"lock left held by an interrupt at C call {n}"
            try:
                client.stats()
            except ConnectionError:  # given up: the reply was owed
                client.close()
                client = Client(address_of(tcp), use=tube, watch=tube)
    except beanproto_sync.TimedOutError:
        pass
    finally:
        client.close()
    assert n > 5


@pytest.mark.usefixtures("interrupting_alarm")
def test_close_from_a_signal_handler_ends_the_reserve_it_interrupted(
    tcp: Server, shared: tuple[Client[str], str]
) -> None:
    client, _ = shared

    def close_it(signum: int, frame: object) -> None:
        client.close()  # as a SIGTERM handler of a worker does

    signal.signal(signal.SIGALRM, close_it)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    with pytest.raises(ConnectionError):
        client.reserve()  # waits: nothing is ready; the handler ends it
    assert not client._lock.locked()
