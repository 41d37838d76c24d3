"""The blocking Worker against real beanstalkd processes.

Outcomes (delete, release with backoff, bury after ``max_releases``, the
handler's own ReleaseJob / BuryJob), auto-touch of a handler that runs 3x its
TTR, a stop while reserves wait, the grace period, SIGTERM to a worker
process, and a server restart mid-run. The rules themselves (backoff, touch
timing, settings) have unit tests at the end.
"""

from __future__ import annotations

import collections
import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tools.beanstalkd import Server

import beanproto
import beanproto_sync
from beanproto.client import _worker_rules as policy
from conftest import address_of, new_tube
from faults_support import RestartableServer

BOUND = 20.0  # the most any wait here may take


def eventually(condition: Callable[[], bool], what: str, bound: float = BOUND) -> None:
    """Wait until ``condition()`` holds (polling the server's state)."""
    deadline = time.monotonic() + bound
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        pause.wait(0.005)


class Running:
    """A worker run in a thread of its own."""

    def __init__(self, worker: beanproto_sync.Worker[Any]) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> float:
        """Stop the worker; the seconds run() took to return."""
        started = time.monotonic()
        self.worker.stop()
        self.thread.join(BOUND)
        assert not self.thread.is_alive(), "run() did not return"
        if self.error is not None:
            raise self.error
        return time.monotonic() - started


@pytest.fixture
def running() -> Iterator[Callable[[beanproto_sync.Worker[Any]], Running]]:
    started: list[Running] = []

    def start(worker: beanproto_sync.Worker[Any]) -> Running:
        run = Running(worker)
        started.append(run)
        return run

    yield start
    for run in started:
        run.worker.stop()
        run.thread.join(BOUND)


def tube_stats(address: Any, tube: str) -> dict[str, Any]:
    with beanproto_sync.Client(address) as client:
        try:
            return dict(client.stats_tube(tube))
        except beanproto_sync.NotFoundError:
            return collections.defaultdict(int)


def job_stats(address: Any, job_id: int) -> dict[str, Any]:
    with beanproto_sync.Client(address) as client:
        return dict(client.stats_job(job_id))


pytestmark = pytest.mark.integration


# -- outcomes ---------------------------------------------------------------------------


def test_a_handler_that_returns_deletes_its_job(
    tcp_server: Server, running: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    seen: list[tuple[int, str]] = []
    all_seen = threading.Event()
    with beanproto_sync.Client(address, use=tube) as client:
        ids = [client.put(f"job {n}") for n in range(20)]

    def handler(job: beanproto_sync.Job[str]) -> None:
        seen.append((job.id, job.body))
        if len(seen) == len(ids):
            all_seen.set()

    caplog.set_level(logging.INFO, logger="beanproto")
    run = running(beanproto_sync.Worker(address, handler, watch=tube, concurrency=3))
    assert all_seen.wait(BOUND)
    eventually(
        lambda: (
            tube_stats(address, tube)["total-jobs"] == 20
            and tube_stats(address, tube)["current-jobs-ready"] == 0
            and tube_stats(address, tube)["current-jobs-reserved"] == 0
        ),
        "the jobs deleted",
    )
    run.stop()
    assert sorted(seen) == [(i, f"job {n}") for n, i in enumerate(ids)]
    with beanproto_sync.Client(address) as client:
        for job_id in ids:
            with pytest.raises(beanproto_sync.NotFoundError):
                client.stats_job(job_id)
    deleted = [r.getMessage() for r in caplog.records if r.getMessage().endswith(": deleted")]
    assert sorted(deleted) == sorted(f"job {i}: deleted" for i in ids)


def test_a_failing_job_is_released_with_backoff_then_buried(
    tcp_server: Server, running: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("fails", priority=7)
    calls = []

    def handler(job: beanproto_sync.Job[str]) -> None:
        calls.append(job.id)
        raise ValueError("no luck")

    caplog.set_level(logging.INFO, logger="beanproto")
    run = running(beanproto_sync.Worker(address, handler, watch=tube, max_releases=3, backoff=0))
    eventually(lambda: job_stats(address, job_id)["state"] == "buried", "the job buried")
    run.stop()
    stats = job_stats(address, job_id)
    assert calls == [job_id] * 4  # the first run and three releases
    assert (stats["releases"], stats["buries"], stats["pri"]) == (3, 1, 7)
    failures = [r for r in caplog.records if "handler failed (ValueError)" in r.getMessage()]
    assert len(failures) == 4 and all(r.exc_info for r in failures)
    outcomes = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith(f"job {job_id}: ")
    ]
    assert [m for m in outcomes if "handler failed" not in m] == [
        f"job {job_id}: released (delay 0 s)"
    ] * 3 + [f"job {job_id}: buried"]


def test_the_backoff_grows_with_the_server_s_count_of_releases(
    tcp_server: Server, running: Callable[..., Running]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("fails")
        # As if it had failed twice before (the server counts releases).
        for _ in range(2):
            job = client.reserve_job(job_id)
            client.release(job)
    failed = threading.Event()

    def handler(job: beanproto_sync.Job[str]) -> None:
        failed.set()
        raise RuntimeError("again")

    run = running(beanproto_sync.Worker(address, handler, watch=tube, backoff=5))
    assert failed.wait(BOUND)
    eventually(lambda: job_stats(address, job_id)["state"] == "delayed", "the job released")
    run.stop()
    stats = job_stats(address, job_id)
    assert (stats["releases"], stats["delay"]) == (3, 5 * 2**2)


def test_the_handler_chooses_release_or_bury(
    tcp_server: Server, running: Callable[..., Running]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        to_release = client.put("release me", priority=3)
        to_bury = client.put("bury me", priority=4)
    done = threading.Event()
    handled: list[int] = []

    def handler(job: beanproto_sync.Job[str]) -> None:
        handled.append(job.id)
        if len(handled) == 2:
            done.set()
        if job.body == "release me":
            raise beanproto_sync.ReleaseJob(delay=100)
        raise beanproto_sync.BuryJob(priority=9)

    run = running(beanproto_sync.Worker(address, handler, watch=tube))
    assert done.wait(BOUND)
    eventually(lambda: job_stats(address, to_bury)["state"] == "buried", "the bury")
    eventually(lambda: job_stats(address, to_release)["state"] == "delayed", "the release")
    run.stop()
    released, buried = job_stats(address, to_release), job_stats(address, to_bury)
    assert (released["delay"], released["pri"], released["releases"]) == (100, 3, 1)
    assert (buried["pri"], buried["buries"]) == (9, 1)
    assert sorted(handled) == sorted([to_release, to_bury])


# -- touches ----------------------------------------------------------------------------


def test_a_handler_running_three_times_its_ttr_keeps_its_job(
    tcp_server: Server, running: Callable[..., Running]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("long", ttr=1)
    started, finish = threading.Event(), threading.Event()

    def handler(job: beanproto_sync.Job[str]) -> None:
        started.set()
        finish.wait(BOUND)

    run = running(beanproto_sync.Worker(address, handler, watch=tube))
    assert started.wait(BOUND)
    # For 3 s (three TTRs) another consumer must never get the job.
    with beanproto_sync.Client(address, watch=tube) as other:
        until = time.monotonic() + 3.0
        while time.monotonic() < until:
            with pytest.raises(beanproto_sync.TimedOutError):
                other.reserve(timeout=0)
            stats = job_stats(address, job_id)
            assert stats["state"] == "reserved" and stats["timeouts"] == 0
    finish.set()
    eventually(
        lambda: (
            tube_stats(address, tube)["total-jobs"] == 1
            and tube_stats(address, tube)["current-jobs-reserved"] == 0
        ),
        "the job deleted",
    )
    run.stop()
    with beanproto_sync.Client(address) as client, pytest.raises(beanproto_sync.NotFoundError):
        client.stats_job(job_id)


def test_a_short_handler_costs_no_stats_job(
    tcp_server: Server, running: Callable[..., Running]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address) as client:
        before = client.stats()["cmd-stats-job"]
    with beanproto_sync.Client(address, use=tube) as client:
        for n in range(10):
            client.put(f"quick {n}")
    done = threading.Event()
    count = []

    def handler(job: beanproto_sync.Job[str]) -> None:
        count.append(job.id)
        if len(count) == 10:
            done.set()

    run = running(beanproto_sync.Worker(address, handler, watch=tube, touch_after=0.9))
    assert done.wait(BOUND)
    eventually(lambda: tube_stats(address, tube)["current-jobs-reserved"] == 0, "deletes")
    run.stop()
    with beanproto_sync.Client(address) as client:
        assert client.stats()["cmd-stats-job"] == before


# -- stopping ---------------------------------------------------------------------------


def test_stop_while_reserves_wait_returns_at_once(
    tcp_server: Server, running: Callable[..., Running]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    run = running(beanproto_sync.Worker(address, lambda job: None, watch=tube, concurrency=4))
    eventually(lambda: tube_stats(address, tube)["current-waiting"] == 4, "4 reserves waiting")
    took = run.stop()
    assert took < 0.5, f"stop took {took:.3f} s"
    assert tube_stats(address, tube)["current-waiting"] == 0


def test_after_the_grace_period_a_running_handler_s_job_is_released(
    tcp_server: Server, running: Callable[..., Running]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("stuck", priority=11)
    started, release = threading.Event(), threading.Event()

    def handler(job: beanproto_sync.Job[str]) -> None:
        started.set()
        release.wait(BOUND)

    run = running(beanproto_sync.Worker(address, handler, watch=tube, grace=0.2))
    assert started.wait(BOUND)
    took = run.stop()
    try:
        assert 0.2 <= took < 2.0
        stats = job_stats(address, job_id)
        assert (stats["state"], stats["pri"], stats["releases"]) == ("ready", 11, 1)
    finally:
        release.set()


def test_a_handler_that_ends_within_the_grace_period_settles_its_job(
    tcp_server: Server, running: Callable[..., Running]
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        job_id = client.put("finishing")
    started, finish = threading.Event(), threading.Event()

    def handler(job: beanproto_sync.Job[str]) -> None:
        started.set()
        finish.wait(BOUND)

    worker = beanproto_sync.Worker(address, handler, watch=tube, grace=10.0)
    run = running(worker)
    assert started.wait(BOUND)
    worker.stop()
    finish.set()
    run.stop()
    with beanproto_sync.Client(address) as client, pytest.raises(beanproto_sync.NotFoundError):
        client.stats_job(job_id)


WORKER_SCRIPT = textwrap.dedent(
    r"""
    import sys, time
    sys.path[:0] = sys.argv[3:]
    import beanproto_sync

    def handler(job):
        sys.stdout.write(f"start {job.id}\n")  # one write: threads print at once
        sys.stdout.flush()
        time.sleep(1.0)  # the work
        sys.stdout.write(f"end {job.id}\n")
        sys.stdout.flush()

    address = ("127.0.0.1", int(sys.argv[1]))
    beanproto_sync.Worker(address, handler, watch=sys.argv[2], concurrency=3).run()
    print("exited", flush=True)
    """
)


def test_sigterm_lets_running_handlers_finish_and_exits_0(
    tcp_server: Server, tmp_path: Path
) -> None:
    address, tube = address_of(tcp_server), new_tube()
    with beanproto_sync.Client(address, use=tube) as client:
        ids = [client.put(f"job {n}") for n in range(3)]
        extra = client.put("not started", priority=2**31 + 1)
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    src = str(Path(__file__).resolve().parents[1] / "src")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(address[1]), tube, src],
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
    assert proc.returncode == 0
    assert sorted(line for line in out.splitlines() if line.startswith("end")) == sorted(
        f"end {i}" for i in ids
    )
    assert out.splitlines()[-1] == "exited"
    stats = tube_stats(address, tube)
    assert (stats["current-jobs-reserved"], stats["current-jobs-ready"]) == (0, 1)
    assert job_stats(address, extra)["state"] == "ready"


# -- faults -----------------------------------------------------------------------------


def test_a_server_restart_mid_run_loses_no_job(
    binlog_server: RestartableServer, running: Callable[..., Running]
) -> None:
    address, tube = binlog_server.address, new_tube()
    total = 300
    with beanproto_sync.Client(address, use=tube) as client:
        ids = set(client.put_many([f"job {n}" for n in range(total)]))
    lock = threading.Lock()
    handled: collections.Counter[int] = collections.Counter()
    halfway = threading.Event()

    def handler(job: beanproto_sync.Job[str]) -> None:
        with lock:
            handled[job.id] += 1
            if len(handled) >= total // 3:
                halfway.set()

    run = running(
        beanproto_sync.Worker(
            address, handler, watch=tube, concurrency=4, reconnect_delay=0.05, connect_timeout=2
        )
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
    assert set(handled) == ids  # nothing lost (a job may have run twice: at least once)
    assert sum(handled.values()) >= total


# -- the rules --------------------------------------------------------------------------


def settings(**overrides: Any) -> policy.Settings:
    values: dict[str, Any] = {
        "watch": "default",
        "concurrency": 1,
        "grace": 30.0,
        "max_releases": 5,
        "backoff": 1,
        "backoff_cap": 3600,
        "touch_after": 0.5,
        "reconnect_delay": 1.0,
    }
    values.update(overrides)
    return policy.Settings.checked(**values)


def test_failure_outcomes_double_the_delay_up_to_the_cap_then_bury() -> None:
    rules = settings(backoff=2, backoff_cap=30, max_releases=6)
    delays = []
    for releases in range(6):
        outcome = policy.failure_outcome(rules, releases, 5)
        assert isinstance(outcome, policy.ReleaseJob) and outcome.priority == 5
        delays.append(outcome.delay)
    assert delays == [2, 4, 8, 16, 30, 30]
    buried = policy.failure_outcome(rules, 6, 5)
    assert isinstance(buried, policy.BuryJob) and buried.priority == 5
    huge = policy.failure_outcome(settings(max_releases=10**6, backoff_cap=2**32 - 1), 10**5, 0)
    assert isinstance(huge, policy.ReleaseJob) and huge.delay == 2**32 - 1


@pytest.mark.parametrize(
    ("time_left", "ttr", "expected"),
    [(1, 1, 0.5), (0, 1, 0.0), (119, 120, 114.0), (3, 8, 1.0), (60, 60, 55.0)],
)
def test_touches_go_a_margin_ahead_of_the_deadline(
    time_left: float, ttr: float, expected: float
) -> None:
    assert policy.touch_delay(time_left, ttr) == expected


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"concurrency": 0}, beanproto.ArgumentError),
        ({"concurrency": 1.5}, beanproto.ArgumentTypeError),
        ({"watch": []}, beanproto.ArgumentError),
        ({"watch": "bad name"}, beanproto.ArgumentError),
        ({"watch": 5}, beanproto.ArgumentTypeError),
        ({"grace": -1}, beanproto.ArgumentError),
        ({"grace": float("nan")}, beanproto.ArgumentError),
        ({"touch_after": 0}, beanproto.ArgumentError),
        ({"touch_after": 1.0}, beanproto.ArgumentError),
        ({"backoff": 2**32}, beanproto.ArgumentError),
        ({"max_releases": -1}, beanproto.ArgumentError),
    ],
)
def test_bad_settings_are_refused_before_anything_connects(
    overrides: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        settings(**overrides)
    # The Worker refuses them too, with an address nothing listens on.
    with pytest.raises(error):
        beanproto_sync.Worker(("127.0.0.1", 1), lambda job: None, **overrides)


def test_a_handler_must_be_callable_and_release_arguments_are_checked() -> None:
    with pytest.raises(beanproto.ArgumentTypeError):
        beanproto_sync.Worker(("127.0.0.1", 1), "not callable")  # type: ignore[arg-type]
    with pytest.raises(beanproto.ArgumentError):
        beanproto_sync.ReleaseJob(delay=-1)
    with pytest.raises(beanproto.ArgumentTypeError):
        beanproto_sync.BuryJob(priority="high")  # type: ignore[arg-type]
