"""The trio and asyncio Workers against real beanstalkd processes: the same
cases as tests/test_worker.py (the blocking one), each worker run on an
event loop in a thread of its own and stopped from the test's thread."""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
from tools.beanstalkd import Server

import beanproto_anyio
import beanproto_asyncio
import beanproto_sync
import beanproto_trio
from conftest import address_of, new_tube
from faults_support import RestartableServer
from test_worker import BOUND, eventually, job_stats, tube_stats

pytestmark = pytest.mark.integration

#: The anyio worker runs in a trio program here (its tests in an asyncio one
#: are the SIGTERM script's: ``anyio.run`` defaults to asyncio).
FLAVORS = ["trio", "asyncio", "anyio"]
MODULES: dict[str, Any] = {
    "trio": beanproto_trio,
    "asyncio": beanproto_asyncio,
    "anyio": beanproto_anyio,
}
SLEEPS: dict[str, Callable[[float], Awaitable[None]]] = {
    "trio": trio.sleep,
    "asyncio": asyncio.sleep,
    "anyio": anyio.sleep,
}


class Running:
    """An async worker run on its own event loop in a thread."""

    def __init__(self, flavor: str, worker: Any) -> None:
        self.flavor = flavor
        self.worker = worker
        self.error: BaseException | None = None
        self.stopper: Callable[[], object] | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(BOUND)

    def _run(self) -> None:
        try:
            if self.flavor in ("trio", "anyio"):
                trio.run(self._trio)
            else:
                asyncio.run(self._asyncio())
        except BaseException as exc:
            self.error = exc
        finally:
            self.ready.set()

    async def _trio(self) -> None:
        token = trio.lowlevel.current_trio_token()
        self.stopper = lambda: token.run_sync_soon(self.worker.stop)
        self.ready.set()
        await self.worker.run()

    async def _asyncio(self) -> None:
        loop = asyncio.get_running_loop()
        self.stopper = lambda: loop.call_soon_threadsafe(self.worker.stop)
        self.ready.set()
        await self.worker.run()

    def stop(self) -> float:
        started = time.monotonic()
        if self.thread.is_alive():
            assert self.stopper is not None
            try:
                self.stopper()
            except RuntimeError:
                pass  # the loop already ended
        self.thread.join(BOUND)
        assert not self.thread.is_alive(), "run() did not return"
        if self.error is not None:
            raise self.error
        return time.monotonic() - started


@pytest.fixture(params=FLAVORS)
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def running(flavor: str) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(*args: Any, **kwargs: Any) -> Running:
        worker = MODULES[flavor].Worker(*args, **kwargs)
        run = Running(flavor, worker)
        started.append(run)
        return run

    yield start
    for run in started:
        if run.thread.is_alive() and run.stopper is not None:
            run.stopper()
        run.thread.join(BOUND)


async def until(flag: threading.Event, sleep: Callable[[float], Awaitable[None]]) -> None:
    """The handler's work: go on until the test says so (cancellable)."""
    while not flag.is_set():
        await sleep(0.005)


def test_a_handler_that_returns_deletes_its_job(
    tcp_server: Server, running: Callable[..., Running]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        ids = [client.put(f"job {n}") for n in range(20)]
    seen: list[tuple[int, str]] = []

    async def handler(job: Any) -> None:
        seen.append((job.id, job.body))

    run = running(address, handler, watch=tube, concurrency=3)
    eventually(
        lambda: (
            len(seen) == 20
            and tube_stats(address, tube)["current-jobs-reserved"] == 0
            and tube_stats(address, tube)["current-jobs-ready"] == 0
        ),
        "the jobs deleted",
    )
    run.stop()
    assert sorted(seen) == [(i, f"job {n}") for n, i in enumerate(ids)]
    with beanproto_sync.Client(address) as client:
        for job_id in ids:
            with pytest.raises(beanproto_sync.NotFoundError):
                client.stats_job(job_id)


def test_a_failing_job_is_released_then_buried(
    tcp_server: Server, running: Callable[..., Running]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("fails", priority=7)
    calls = []

    async def handler(job: Any) -> None:
        calls.append(job.id)
        raise ValueError("no luck")

    run = running(address, handler, watch=tube, max_releases=2, backoff=0)
    eventually(lambda: job_stats(address, job_id)["state"] == "buried", "the job buried")
    run.stop()
    stats = job_stats(address, job_id)
    assert calls == [job_id] * 3
    assert (stats["releases"], stats["buries"], stats["pri"]) == (2, 1, 7)


def test_backoff_and_the_handler_s_own_outcomes(
    flavor: str, tcp_server: Server, running: Callable[..., Running]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    module = MODULES[flavor]
    with beanproto_sync.Client(address, use=tube) as client:
        fails = client.put("fails", priority=1)
        to_release = client.put("release me", priority=3)
        to_bury = client.put("bury me", priority=4)

    async def handler(job: Any) -> None:
        if job.body == "release me":
            raise module.ReleaseJob(delay=100)
        if job.body == "bury me":
            raise module.BuryJob(priority=9)
        raise RuntimeError("fails")

    run = running(address, handler, watch=tube, backoff=7)
    eventually(
        lambda: (
            [job_stats(address, i)["state"] for i in (fails, to_release, to_bury)]
            == ["delayed", "delayed", "buried"]
        ),
        "the three outcomes",
    )
    run.stop()
    failed, released, buried = (job_stats(address, i) for i in (fails, to_release, to_bury))
    assert (failed["delay"], failed["pri"], failed["releases"]) == (7, 1, 1)
    assert (released["delay"], released["pri"]) == (100, 3)
    assert (buried["pri"], buried["buries"]) == (9, 1)


def test_a_handler_running_three_times_its_ttr_keeps_its_job(
    flavor: str, tcp_server: Server, running: Callable[..., Running]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("long", ttr=1)
    started, finish = threading.Event(), threading.Event()

    async def handler(job: Any) -> None:
        started.set()
        await until(finish, SLEEPS[flavor])

    run = running(address, handler, watch=tube)
    assert started.wait(BOUND)
    with beanproto_sync.Client(address, watch=tube) as other:
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            with pytest.raises(beanproto_sync.TimedOutError):
                other.reserve(timeout=0)
            stats = job_stats(address, job_id)
            assert stats["state"] == "reserved" and stats["timeouts"] == 0
    finish.set()
    eventually(lambda: tube_stats(address, tube)["current-jobs-reserved"] == 0, "the delete")
    run.stop()
    with beanproto_sync.Client(address) as client, pytest.raises(beanproto_sync.NotFoundError):
        client.stats_job(job_id)


def test_stop_while_reserves_wait_returns_at_once(
    tcp_server: Server, running: Callable[..., Running]
) -> None:
    address, tube = address_of(tcp_server), new_tube()

    async def handler(job: Any) -> None:
        pass

    run = running(address, handler, watch=tube, concurrency=4)
    eventually(lambda: tube_stats(address, tube)["current-waiting"] == 4, "4 reserves waiting")
    took = run.stop()
    assert took < 0.5, f"stop took {took:.3f} s"
    eventually(lambda: tube_stats(address, tube)["current-waiting"] == 0, "no reserve left")


def test_after_the_grace_period_a_running_handler_is_cancelled_and_its_job_released(
    flavor: str, tcp_server: Server, running: Callable[..., Running]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("stuck", priority=11)
    started, never = threading.Event(), threading.Event()
    cancelled = threading.Event()

    async def handler(job: Any) -> None:
        started.set()
        try:
            await until(never, SLEEPS[flavor])
        except BaseException:
            cancelled.set()
            raise

    run = running(address, handler, watch=tube, grace=0.2)
    assert started.wait(BOUND)
    took = run.stop()
    assert 0.2 <= took < 2.0
    assert cancelled.is_set()
    stats = job_stats(address, job_id)
    assert (stats["state"], stats["pri"], stats["releases"]) == ("ready", 11, 1)


WORKER_SCRIPT = textwrap.dedent(
    r"""
    import sys
    sys.path[:0] = sys.argv[4:]
    flavor = sys.argv[3]
    if flavor == "trio":
        import trio as lib, beanproto_trio as module
    elif flavor == "anyio":
        import anyio as lib, beanproto_anyio as module
    else:
        import asyncio as lib, beanproto_asyncio as module

    async def handler(job):
        sys.stdout.write(f"start {job.id}\n"); sys.stdout.flush()
        await lib.sleep(1.0)  # the work
        sys.stdout.write(f"end {job.id}\n"); sys.stdout.flush()

    worker = module.Worker(("127.0.0.1", int(sys.argv[1])), handler, watch=sys.argv[2],
                           concurrency=3)
    lib.run(worker.run())  if flavor == "asyncio" else lib.run(worker.run)
    print("exited", flush=True)
    """
)


def test_sigterm_lets_running_handlers_finish_and_exits_0(
    flavor: str, tcp_server: Server, tmp_path: Path
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        ids = [client.put(f"job {n}") for n in range(3)]
        extra = client.put("not started", priority=2**31 + 1)
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    src = str(Path(__file__).resolve().parents[1] / "src")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(address[1]), tube, flavor, src],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        starts = [proc.stdout.readline().split() for _ in range(3)]
        assert sorted(int(w[1]) for w in starts) == sorted(ids)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=BOUND)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert sorted(line for line in out.splitlines() if line.startswith("end")) == sorted(
        f"end {i}" for i in ids
    )
    assert out.splitlines()[-1] == "exited"
    stats = tube_stats(address, tube)
    assert (stats["current-jobs-reserved"], stats["current-jobs-ready"]) == (0, 1)
    assert job_stats(address, extra)["state"] == "ready"


def test_a_server_restart_mid_run_loses_no_job(
    binlog_server: RestartableServer, running: Callable[..., Running]
) -> None:
    address, tube = binlog_server.address, new_tube()
    total = 300
    with beanproto_sync.Client(address, use=tube) as client:
        ids = set(client.put_many([f"job {n}" for n in range(total)]))
    handled: collections.Counter[int] = collections.Counter()
    halfway = threading.Event()

    async def handler(job: Any) -> None:
        handled[job.id] += 1
        if len(handled) >= total // 3:
            halfway.set()

    run = running(
        address, handler, watch=tube, concurrency=4, reconnect_delay=0.05, connect_timeout=2
    )
    assert halfway.wait(BOUND)
    binlog_server.restart()

    def drained() -> bool:
        try:
            stats = tube_stats(address, tube)
        except ConnectionError:
            return False
        return bool(stats["current-jobs-ready"] == 0 and stats["current-jobs-reserved"] == 0)

    eventually(drained, "every job handled after the restart", bound=40)
    run.stop()
    assert set(handled) == ids
