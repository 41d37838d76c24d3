"""Review probes for the workers (blocking, trio, asyncio) against real
beanstalkd processes and scripted peers.

Each defect the review found has its test here (now passing: the defects
are fixed); the others verify behaviour the review checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
import trio
from tools.beanstalkd import Server, free_port

import beanproto_anyio
import beanproto_asyncio
import beanproto_sync
import beanproto_trio
from conftest import address_of, new_tube
from faults_support import CuttingProxy, RestartableServer, SilentServer
from test_worker import BOUND, Running, eventually, job_stats, tube_stats
from test_worker_async import Running as AsyncRunning

pytestmark = pytest.mark.integration

SHORT = 5.0  # how long a probe waits for something that should happen soon
#: The async workers (the anyio one runs in a trio program here).
ASYNC = ["trio", "asyncio", "anyio"]
MODULES: dict[str, Any] = {
    "trio": beanproto_trio,
    "asyncio": beanproto_asyncio,
    "anyio": beanproto_anyio,
}
SLEEPS: dict[str, Callable[[float], Any]] = {
    "trio": trio.sleep,
    "asyncio": asyncio.sleep,
    "anyio": anyio.sleep,
}


@pytest.fixture
def runs() -> Iterator[list[Any]]:
    """Runs started by a test, stopped at teardown."""
    started: list[Any] = []
    yield started
    for run in started:
        if isinstance(run, Running):
            run.worker.stop()
        elif run.thread.is_alive() and run.stopper is not None:
            try:
                run.stopper()
            except RuntimeError:
                pass
        run.thread.join(BOUND)


def sync_run(runs: list[Any], *args: Any, **kwargs: Any) -> Running:
    run = Running(beanproto_sync.Worker(*args, **kwargs))
    runs.append(run)
    return run


def async_run(runs: list[Any], flavor: str, *args: Any, **kwargs: Any) -> AsyncRunning:
    run = AsyncRunning(flavor, MODULES[flavor].Worker(*args, **kwargs))
    runs.append(run)
    return run


def state_of(address: Any, job_id: int) -> str:
    try:
        return str(job_stats(address, job_id)["state"])
    except beanproto_sync.NotFoundError:
        return "gone"


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("beanproto")]


# -- a job whose body does not decode ---------------------------------------------------


def put_bad_then_good(address: Any, tube: str) -> tuple[int, int]:
    with beanproto_sync.Client(address, use=tube, encoding=None) as client:
        bad = client.put(b"\xff\xfe not utf-8", priority=0)
        good = client.put(b"fine", priority=10)
    return bad, good


def test_sync_an_undecodable_job_does_not_stop_the_worker(
    tcp_server: Server, runs: list[Any]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    bad, good = put_bad_then_good(address, tube)
    handled = threading.Event()
    run = sync_run(runs, address, lambda job: handled.set(), watch=tube)
    eventually(lambda: handled.is_set() or not run.thread.is_alive(), "a handler or an end", SHORT)
    assert run.error is None, f"run() raised {run.error!r}"
    assert handled.is_set()
    eventually(lambda: state_of(address, good) == "gone", "the good job deleted", SHORT)
    eventually(lambda: state_of(address, bad) != "reserved", "the bad job settled", SHORT)


@pytest.mark.parametrize("aflavor", ASYNC)
def test_async_an_undecodable_job_does_not_stop_the_worker(
    aflavor: str, tcp_server: Server, runs: list[Any]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    bad, good = put_bad_then_good(address, tube)
    handled = threading.Event()

    async def handler(job: Any) -> None:
        handled.set()

    run = async_run(runs, aflavor, address, handler, watch=tube)
    eventually(lambda: handled.is_set() or not run.thread.is_alive(), "a handler or an end", SHORT)
    assert run.error is None, f"run() raised {run.error!r}"
    assert handled.is_set()
    eventually(lambda: state_of(address, good) == "gone", "the good job deleted", SHORT)
    eventually(lambda: state_of(address, bad) != "reserved", "the bad job settled", SHORT)


# -- an address the client refuses -----------------------------------------------------


def test_sync_an_exception_in_a_slot_ends_run_with_it(runs: list[Any]) -> None:
    run = sync_run(runs, 12345, lambda job: None)
    run.thread.join(SHORT)
    assert not run.thread.is_alive(), "run() still running with every slot dead"
    assert isinstance(run.error, TypeError)


@pytest.mark.parametrize("aflavor", ASYNC)
def test_async_an_exception_in_a_slot_ends_run_with_it(aflavor: str, runs: list[Any]) -> None:
    async def handler(job: Any) -> None:
        pass

    run = async_run(runs, aflavor, 12345, handler)
    run.thread.join(SHORT)
    assert not run.thread.is_alive()
    assert isinstance(run.error, TypeError)


# -- stops that take long --------------------------------------------------------------


def setting_up(silent: SilentServer) -> bool:
    """The slot sent its set-up (``watch``) and waits for the reply."""
    sent = [c for conn in silent.commands() for c in conn]
    return any(c.startswith(b"watch ") for c in sent) and not any(
        c.startswith(b"reserve") for c in sent
    )


def test_sync_stop_while_a_slot_sets_up_its_connection_is_prompt(runs: list[Any]) -> None:
    with SilentServer() as silent:
        run = sync_run(
            runs,
            silent.address,
            lambda job: None,
            watch=new_tube(),
            grace=2.0,
            connect_timeout=10,
            io_timeout=10,
        )
        eventually(lambda: setting_up(silent), "the set-up command sent", SHORT)
        took = run.stop()
        assert took < 1.0, f"stop took {took:.2f} s"


@pytest.mark.parametrize("aflavor", ASYNC)
def test_async_stop_while_a_slot_sets_up_its_connection_is_prompt(
    aflavor: str, runs: list[Any]
) -> None:
    async def handler(job: Any) -> None:
        pass

    with SilentServer() as silent:
        run = async_run(
            runs,
            aflavor,
            silent.address,
            handler,
            watch=new_tube(),
            grace=2.0,
            connect_timeout=10,
            io_timeout=10,
        )
        eventually(lambda: setting_up(silent), "the set-up command sent", SHORT)
        took = run.stop()
        assert took < 1.0, f"stop took {took:.2f} s"


def test_sync_stop_while_the_server_is_down_is_prompt(runs: list[Any]) -> None:
    address = ("127.0.0.1", free_port())
    run = sync_run(runs, address, lambda job: None, concurrency=3, reconnect_delay=30)
    took = run.stop()
    assert took < 0.5, f"stop took {took:.2f} s"


@pytest.mark.parametrize("aflavor", ASYNC)
def test_async_stop_while_the_server_is_down_is_prompt(aflavor: str, runs: list[Any]) -> None:
    async def handler(job: Any) -> None:
        pass

    address = ("127.0.0.1", free_port())
    run = async_run(runs, aflavor, address, handler, concurrency=3, reconnect_delay=30)
    took = run.stop()
    assert took < 0.5, f"stop took {took:.2f} s"


def test_sync_stop_before_run_and_run_twice(tcp_server: Server) -> None:
    address, tube = address_of(tcp_server), new_tube()
    worker = beanproto_sync.Worker(address, lambda job: None, watch=tube, concurrency=2)
    worker.stop()
    started = time.monotonic()
    worker.run()
    assert time.monotonic() - started < 0.5
    with pytest.raises(RuntimeError):
        worker.run()
    assert tube_stats(address, tube)["current-waiting"] == 0


@pytest.mark.parametrize("aflavor", ASYNC)
def test_async_stop_before_run(aflavor: str, tcp_server: Server) -> None:
    address, tube = address_of(tcp_server), new_tube()

    async def handler(job: Any) -> None:
        pass

    worker = MODULES[aflavor].Worker(address, handler, watch=tube, concurrency=2)
    worker.stop()
    started = time.monotonic()
    if aflavor in ("trio", "anyio"):
        trio.run(worker.run)
        with pytest.raises(RuntimeError):
            trio.run(worker.run)
    else:
        asyncio.run(worker.run())
        with pytest.raises(RuntimeError):
            asyncio.run(worker.run())
    assert time.monotonic() - started < 1.0


# -- BaseException from a handler -------------------------------------------------------


def test_sync_systemexit_releases_the_job(tcp_server: Server, runs: list[Any]) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("exit", priority=5)

    def handler(job: Any) -> None:
        raise SystemExit(3)

    run = sync_run(runs, address, handler, watch=tube, max_releases=0)
    run.thread.join(SHORT)
    assert not run.thread.is_alive()
    assert isinstance(run.error, SystemExit)
    stats = job_stats(address, job_id)
    assert (stats["state"], stats["pri"], stats["releases"]) == ("ready", 5, 1)


@pytest.mark.parametrize("aflavor", ASYNC)
def test_async_systemexit_releases_the_job(
    aflavor: str, tcp_server: Server, runs: list[Any]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("exit", priority=5)

    async def handler(job: Any) -> None:
        raise SystemExit(3)

    run = async_run(runs, aflavor, address, handler, watch=tube)
    run.thread.join(SHORT)
    assert not run.thread.is_alive()
    assert isinstance(run.error, SystemExit)
    eventually(lambda: state_of(address, job_id) == "ready", "the job back", SHORT)
    assert job_stats(address, job_id)["releases"] == 1


def test_asyncio_a_handler_raising_cancelled_error_keeps_its_slot(
    tcp_server: Server, runs: list[Any]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        first = client.put("raises CancelledError", priority=0)
        second = client.put("fine", priority=10)
    handled: list[int] = []

    async def handler(job: Any) -> None:
        handled.append(job.id)
        if job.id == first:
            raise asyncio.CancelledError()

    run = async_run(runs, "asyncio", address, handler, watch=tube)
    eventually(lambda: second in handled or not run.thread.is_alive(), "the second job", SHORT)
    assert second in handled
    assert state_of(address, first) != "reserved"


# -- touches ----------------------------------------------------------------------------


def test_a_touch_after_that_could_miss_the_shortest_ttr_is_refused() -> None:
    """(Was a defect: touch_after=2 with a 1 s TTR let the job expire. The
    first look must come before beanstalkd's shortest TTR, 1 s.)"""
    for module in (beanproto_sync, beanproto_trio, beanproto_asyncio):
        with pytest.raises(beanproto_sync.ArgumentError):
            module.Worker(("127.0.0.1", 1), lambda job: None, touch_after=1.0)
        module.Worker(("127.0.0.1", 1), lambda job: None, touch_after=0.99)


# -- a connection lost mid-job -----------------------------------------------------------


def test_sync_a_connection_cut_mid_handler_is_reported_lost_then_redone(
    tcp_server: Server, runs: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("cut")
    started, go_on, redone = threading.Event(), threading.Event(), threading.Event()
    calls: list[int] = []

    def handler(job: Any) -> None:
        calls.append(job.id)
        if len(calls) == 1:
            started.set()
            go_on.wait(BOUND)
        else:
            redone.set()

    caplog.set_level(logging.DEBUG, logger="beanproto")
    with CuttingProxy(tcp_server.address) as proxy:
        run = sync_run(runs, proxy.address, handler, watch=tube, reconnect_delay=0.05)
        assert started.wait(SHORT)
        assert proxy.cut() == 1
        eventually(lambda: state_of(address, job_id) == "ready", "the job back", SHORT)
        go_on.set()
        assert redone.wait(SHORT)
        eventually(lambda: state_of(address, job_id) == "gone", "the job deleted", SHORT)
        run.stop()
    logged = messages(caplog)
    assert calls == [job_id, job_id]
    assert logged.count(f"job {job_id}: deleted") == 1
    assert any(m.startswith(f"job {job_id}: reservation lost with the connection") for m in logged)


@pytest.mark.parametrize("aflavor", ASYNC)
def test_async_a_connection_cut_mid_handler_is_reported_lost_then_redone(
    aflavor: str, tcp_server: Server, runs: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("cut")
    started, go_on, redone = threading.Event(), threading.Event(), threading.Event()
    calls: list[int] = []
    sleep: Callable[[float], Any] = SLEEPS[aflavor]

    async def handler(job: Any) -> None:
        calls.append(job.id)
        if len(calls) == 1:
            started.set()
            while not go_on.is_set():
                await sleep(0.005)
        else:
            redone.set()

    caplog.set_level(logging.DEBUG, logger="beanproto")
    with CuttingProxy(tcp_server.address) as proxy:
        run = async_run(runs, aflavor, proxy.address, handler, watch=tube, reconnect_delay=0.05)
        assert started.wait(SHORT)
        assert proxy.cut() == 1
        eventually(lambda: state_of(address, job_id) == "ready", "the job back", SHORT)
        go_on.set()
        assert redone.wait(SHORT)
        eventually(lambda: state_of(address, job_id) == "gone", "the job deleted", SHORT)
        run.stop()
    logged = messages(caplog)
    assert calls == [job_id, job_id]
    assert logged.count(f"job {job_id}: deleted") == 1
    assert any(m.startswith(f"job {job_id}: reservation lost with the connection") for m in logged)


# -- a server down at start --------------------------------------------------------------


def test_sync_a_server_down_at_start_is_waited_for(
    binlog_server: RestartableServer, runs: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    address, tube = binlog_server.address, new_tube()
    binlog_server.kill()
    handled = threading.Event()
    caplog.set_level(logging.INFO, logger="beanproto")
    sync_run(runs, address, lambda job: handled.set(), watch=tube, reconnect_delay=0.05)
    eventually(lambda: any("cannot reach" in m for m in messages(caplog)), "a retry", SHORT)
    binlog_server.start()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("after the start")
    assert handled.wait(SHORT)
    eventually(lambda: state_of(address, job_id) == "gone", "the job deleted", SHORT)


# -- stop racing with jobs arriving ------------------------------------------------------


@pytest.mark.parametrize("round_", range(5))
def test_sync_stops_amid_a_stream_of_jobs_leave_nothing_reserved(
    tcp_server: Server, runs: list[Any], round_: int
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    total = 200
    with beanproto_sync.Client(address, use=tube) as client:
        ids = client.put_many([f"job {n}" for n in range(total)])
    lock = threading.Lock()
    handled: list[int] = []
    some = threading.Event()

    def handler(job: Any) -> None:
        with lock:
            handled.append(job.id)
            if len(handled) >= 10 * (round_ + 1):
                some.set()

    run = sync_run(runs, address, handler, watch=tube, concurrency=8)
    assert some.wait(SHORT)
    run.stop()
    stats = tube_stats(address, tube)
    assert stats["current-jobs-reserved"] == 0
    assert len(set(handled)) == len(handled)
    assert stats["current-jobs-ready"] == total - len(handled)
    for job_id in handled[:20]:
        assert state_of(address, job_id) == "gone"
    assert set(handled) <= set(ids)


@pytest.mark.parametrize("aflavor", ASYNC)
def test_async_stops_amid_a_stream_of_jobs_leave_nothing_reserved(
    aflavor: str, tcp_server: Server, runs: list[Any]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    total = 200
    with beanproto_sync.Client(address, use=tube) as client:
        client.put_many([f"job {n}" for n in range(total)])
    handled: list[int] = []
    some = threading.Event()

    async def handler(job: Any) -> None:
        handled.append(job.id)
        if len(handled) >= 30:
            some.set()

    run = async_run(runs, aflavor, address, handler, watch=tube, concurrency=8)
    assert some.wait(SHORT)
    run.stop()
    eventually(
        lambda: tube_stats(address, tube)["current-jobs-reserved"] == 0, "nothing reserved", 2.0
    )
    stats = tube_stats(address, tube)
    assert len(set(handled)) == len(handled)
    assert stats["current-jobs-ready"] == total - len(handled)


# -- an abandoned handler that returns later -----------------------------------------------


def test_sync_an_abandoned_handler_returning_later_settles_nothing(
    tcp_server: Server, runs: list[Any]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("slow", priority=4)
    started, finish = threading.Event(), threading.Event()

    def handler(job: Any) -> None:
        started.set()
        finish.wait(BOUND)

    run = sync_run(runs, address, handler, watch=tube, grace=0.1)
    assert started.wait(SHORT)
    run.stop()
    finish.set()
    slot_thread = run.worker._slots[0].thread
    assert slot_thread is not None
    slot_thread.join(SHORT)
    assert not slot_thread.is_alive()
    stats = job_stats(address, job_id)
    assert (stats["state"], stats["pri"], stats["releases"]) == ("ready", 4, 1)


# -- one stalled connection stalls every touch -------------------------------------------


class FreezingProxy:
    """A TCP proxy to a real server that can stall (not cut) the connection
    that reserved a given job: its bytes stop moving both ways, the server
    keeps the connection (and the reservation) open."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.address = self._listener.getsockname()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._gates: dict[int, threading.Event] = {}  # job id -> its connection's gate
        self._spawn(self._accept_loop)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return
            up = socket.create_connection(self.target, timeout=BOUND)
            up.settimeout(None)
            gate = threading.Event()
            gate.set()
            with self._lock:
                self._socks += [down, up]
            self._spawn(self._pump, down, up, gate, False)
            self._spawn(self._pump, up, down, gate, True)

    def _pump(
        self, src: socket.socket, dst: socket.socket, gate: threading.Event, replies: bool
    ) -> None:
        try:
            while chunk := src.recv(65536):
                if replies and chunk.startswith(b"RESERVED "):
                    with self._lock:
                        self._gates[int(chunk.split()[1])] = gate
                gate.wait(BOUND)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def freeze(self, job_id: int) -> None:
        with self._lock:
            self._gates[job_id].clear()

    def thaw(self) -> None:
        with self._lock:
            for gate in self._gates.values():
                gate.set()

    def close(self) -> None:
        self.thaw()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            socks, threads = list(self._socks), list(self._threads)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(BOUND)
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("kind", ["sync", *ASYNC])
def test_a_stalled_connection_does_not_hold_back_other_jobs_touches(
    kind: str, tcp_server: Server, runs: list[Any]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        stalled = client.put("stalled", ttr=1)
        healthy = client.put("healthy", ttr=1)
    started: set[int] = set()
    finish = threading.Event()
    proxy = FreezingProxy(address)
    try:
        options: dict[str, Any] = {"watch": tube, "concurrency": 2, "io_timeout": 4}
        if kind == "sync":

            def handler(job: Any) -> None:
                started.add(job.id)
                finish.wait(BOUND)

            sync_run(runs, proxy.address, handler, **options)
        else:
            nap: Callable[[float], Any] = SLEEPS[kind]

            async def ahandler(job: Any) -> None:
                started.add(job.id)
                while not finish.is_set():
                    await nap(0.005)

            async_run(runs, kind, proxy.address, ahandler, **options)
        eventually(lambda: started == {stalled, healthy}, "both handlers running", SHORT)
        proxy.freeze(stalled)
        # The healthy job must stay alive (touched before its deadline) for
        # three of its TTRs; the stalled one may be lost, that is fair.
        # (beanstalkd notices a passed deadline lazily: a time-left below
        # zero is a deadline missed by over a second.)
        until = time.monotonic() + 3.5
        while time.monotonic() < until:
            stats = job_stats(address, healthy)
            assert stats["state"] == "reserved" and stats["timeouts"] == 0, stats
            assert stats["time-left"] >= 0, "the healthy job's deadline passed"
    finally:
        finish.set()
        proxy.close()


# -- a failing handler whose reservation is gone ------------------------------------------


@pytest.mark.parametrize("kind", ["sync", *ASYNC])
def test_a_failing_handler_is_logged_even_when_its_reservation_is_gone(
    kind: str, tcp_server: Server, runs: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("fails after a cut")
    started, go_on = threading.Event(), threading.Event()
    calls: list[int] = []
    caplog.set_level(logging.DEBUG, logger="beanproto")
    with CuttingProxy(tcp_server.address) as proxy:
        if kind == "sync":

            def handler(job: Any) -> None:
                calls.append(job.id)
                if len(calls) == 1:
                    started.set()
                    go_on.wait(BOUND)
                    raise ValueError("boom in the handler")

            sync_run(runs, proxy.address, handler, watch=tube, reconnect_delay=0.05)
        else:
            nap: Callable[[float], Any] = SLEEPS[kind]

            async def ahandler(job: Any) -> None:
                calls.append(job.id)
                if len(calls) == 1:
                    started.set()
                    while not go_on.is_set():
                        await nap(0.005)
                    raise ValueError("boom in the handler")

            async_run(runs, kind, proxy.address, ahandler, watch=tube, reconnect_delay=0.05)
        assert started.wait(SHORT)
        proxy.cut()
        eventually(lambda: state_of(address, job_id) == "ready", "the job back", SHORT)
        go_on.set()
        eventually(lambda: len(calls) >= 2, "the job run again", SHORT)
    failures = [
        r
        for r in caplog.records
        if r.exc_info and isinstance(r.exc_info[1], ValueError) and str(job_id) in r.getMessage()
    ]
    assert failures, "the handler's ValueError was never logged"


# -- a worker on a Pool: a lost reservation settled on a new connection -----------------


@pytest.mark.parametrize("kind", ["sync", *ASYNC])
def test_a_pool_worker_does_not_settle_a_lost_reservation_on_a_new_connection(
    kind: str, tcp_server: Server, runs: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("cut while running")
    started, go_on = threading.Event(), threading.Event()
    calls: list[int] = []
    caplog.set_level(logging.DEBUG, logger="beanproto")
    with CuttingProxy(tcp_server.address) as proxy:
        if kind == "sync":

            def handler(job: Any) -> None:
                calls.append(job.id)
                if len(calls) == 1:
                    started.set()
                    go_on.wait(BOUND)

            pool: Any = beanproto_sync.Pool([proxy.address])
            sync_run(runs, pool, handler, watch=tube, reconnect_delay=0.05)
        else:
            nap = SLEEPS[kind]

            async def ahandler(job: Any) -> None:
                calls.append(job.id)
                if len(calls) == 1:
                    started.set()
                    while not go_on.is_set():
                        await nap(0.005)

            pool = MODULES[kind].Pool([proxy.address])
            async_run(runs, kind, pool, ahandler, watch=tube, reconnect_delay=0.05)
        assert started.wait(SHORT)
        proxy.cut()
        eventually(lambda: state_of(address, job_id) == "ready", "the job back", SHORT)
        eventually(
            lambda: any(m.startswith(f"job {job_id}: cannot touch") for m in messages(caplog)),
            "the keeper's touch failed",
            SHORT,
        )
        go_on.set()
        eventually(
            lambda: len(calls) >= 2 or state_of(address, job_id) == "gone",
            "a second run or a delete",
            SHORT,
        )
        assert calls == [job_id, job_id], "the job was deleted though its reservation was lost"


@pytest.mark.parametrize("kind", ["sync", *ASYNC])
@pytest.mark.parametrize("server_up", [True, False])
def test_a_pool_worker_stops_at_once(
    kind: str, server_up: bool, tcp_server: Server, runs: list[Any]
) -> None:
    address = tcp_server.address if server_up else ("127.0.0.1", free_port())
    tube = new_tube()
    module: Any = beanproto_sync if kind == "sync" else MODULES[kind]
    pool = module.Pool([address], retry_delay=30)
    if kind == "sync":
        run: Any = sync_run(runs, pool, lambda job: None, watch=tube, concurrency=2)
    else:

        async def handler(job: Any) -> None:
            pass

        run = async_run(runs, kind, pool, handler, watch=tube, concurrency=2)
    if server_up:
        eventually(lambda: tube_stats(address, tube)["current-waiting"] >= 1, "a reserve", SHORT)
    took = run.stop()
    assert took < 0.5, f"stop took {took:.2f} s"


# -- the grace period keeps touching ------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", *ASYNC])
def test_a_handler_finishing_within_the_grace_period_keeps_its_short_ttr_job(
    kind: str, tcp_server: Server, runs: list[Any]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("long", ttr=1)
    started, finish = threading.Event(), threading.Event()
    if kind == "sync":

        def handler(job: Any) -> None:
            started.set()
            finish.wait(BOUND)

        run: Any = sync_run(runs, address, handler, watch=tube, grace=10.0)
    else:
        nap = SLEEPS[kind]

        async def ahandler(job: Any) -> None:
            started.set()
            while not finish.is_set():
                await nap(0.005)

        run = async_run(runs, kind, address, ahandler, watch=tube, grace=10.0)
    assert started.wait(SHORT)
    stopper = threading.Thread(target=run.stop, daemon=True)
    stopper.start()
    until = time.monotonic() + 2.5  # two and a half TTRs into the grace period
    while time.monotonic() < until:
        stats = job_stats(address, job_id)
        assert stats["state"] == "reserved" and stats["timeouts"] == 0
        assert stats["time-left"] >= 0
    finish.set()
    stopper.join(SHORT)
    assert not stopper.is_alive()
    assert state_of(address, job_id) == "gone"


# -- a handler that stops its own worker ---------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", *ASYNC])
def test_a_handler_calling_stop_still_settles_its_job(
    kind: str, tcp_server: Server, runs: list[Any]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("stop after me", priority=0)
        other = client.put("never started", priority=10)
    if kind == "sync":
        holder: list[Any] = []
        known = threading.Event()

        def handler(job: Any) -> None:
            assert known.wait(SHORT)  # (the worker may start before it is known)
            holder[0].stop()

        run: Any = sync_run(runs, address, handler, watch=tube)
        holder.append(run.worker)
        known.set()
    else:
        aholder: list[Any] = []

        async def ahandler(job: Any) -> None:
            aholder[0].stop()

        worker = MODULES[kind].Worker(address, ahandler, watch=tube)
        aholder.append(worker)
        run = AsyncRunning(kind, worker)
        runs.append(run)
    run.thread.join(SHORT)
    assert not run.thread.is_alive() and run.error is None
    assert state_of(address, job_id) == "gone"
    assert state_of(address, other) == "ready"
