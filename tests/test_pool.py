"""Pool: several real beanstalkd servers behind one client API, for the
three clients. Fresh servers number their jobs from 1, so the same id is on
every server at once: a pool that forgot where a job lives would delete,
release or touch another server's job, and these tests would see it."""

from __future__ import annotations

import asyncio
import collections
import itertools
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
import trio

import beanproto
import beanproto_anyio
import beanproto_asyncio
import beanproto_sync
import beanproto_trio
from beanproto.client._pool import STREAK
from conftest import new_tube
from faults_support import RestartableServer
from test_worker import BOUND, eventually
from test_worker_async import Running

pytestmark = pytest.mark.integration


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[RestartableServer]]:
    started = []
    try:
        for n in range(3):
            binlog = tmp_path / f"binlog{n}"
            binlog.mkdir()
            server = RestartableServer(binlog_dir=binlog)
            server.start()
            started.append(server)
        yield started
    finally:
        for server in started:
            server.stop()


def jobs_on(server: RestartableServer, tube: str) -> list[tuple[int, str]]:
    """(id, body) of the ready jobs of ``tube`` on ``server``, left in place."""
    with beanproto_sync.Client(server.address, watch=tube) as client:
        found: list[tuple[int, str]] = []
        while True:
            try:
                job = client.reserve(timeout=0)
            except beanproto_sync.TimedOutError:
                return sorted(found)
            found.append((job.id, job.body))
        # (closing gives the reserved jobs back)


# -- the blocking pool ------------------------------------------------------------------


def test_puts_go_round_robin_and_every_command_goes_to_the_job_s_server(
    servers: list[RestartableServer],
) -> None:
    tube = new_tube()
    addresses = [s.address for s in servers]
    with beanproto_sync.Pool(addresses, use=tube, watch=tube) as pool:
        ids = [pool.put(f"job {n}") for n in range(6)]
        assert [i.server for i in ids] == addresses * 2
        assert [int(i) for i in ids] == [1, 1, 1, 2, 2, 2]  # the same ids everywhere
        assert repr(ids[0]) == f"PooledId(1, server={addresses[0]!r})"
        for server, mine in zip(servers, ([0, 3], [1, 4], [2, 5]), strict=True):
            assert jobs_on(server, tube) == [(1, f"job {mine[0]}"), (2, f"job {mine[1]}")]
        pool.delete(ids[1])  # job 1 of the second server, not of the others
        assert jobs_on(servers[0], tube) == [(1, "job 0"), (2, "job 3")]
        assert jobs_on(servers[1], tube) == [(2, "job 4")]
        assert jobs_on(servers[2], tube) == [(1, "job 2"), (2, "job 5")]
        assert pool.stats_job(ids[2])["tube"] == tube
        with pytest.raises(beanproto_sync.NotFoundError):
            pool.stats_job(ids[1])
        with pytest.raises(beanproto.ArgumentTypeError):
            pool.delete(1)  # which server's job 1?
        peeked = pool.peek(ids[5])
        assert (peeked.body, peeked.server) == ("job 5", addresses[2])


def test_weights_share_the_puts(servers: list[RestartableServer]) -> None:
    tube = new_tube()
    addresses = [s.address for s in servers]
    with beanproto_sync.Pool(addresses, use=tube, weights=[2, 1, 0]) as pool:
        ids = pool.put_many([f"job {n}" for n in range(9)])
    assert collections.Counter(i.server for i in ids) == {addresses[0]: 6, addresses[1]: 3}
    assert [len(jobs_on(s, tube)) for s in servers] == [6, 3, 0]


def test_reserve_takes_from_every_server_without_starving_any(
    servers: list[RestartableServer],
) -> None:
    tube = new_tube()
    per_server = 2 * STREAK
    for server in servers:
        with beanproto_sync.Client(server.address, use=tube) as client:
            client.put_many([f"{server.port}-{n}" for n in range(per_server)])
    with beanproto_sync.Pool([s.address for s in servers], watch=tube) as pool:
        got = [pool.reserve(timeout=0) for _ in range(3 * per_server)]
        sources = [j.server for j in got]
        # Never more than STREAK in a row from one server while others have jobs ...
        runs = [len(list(run)) for _, run in itertools.groupby(sources[: 2 * per_server])]
        assert max(runs) <= STREAK
        # ... so every server is served early, and all are emptied.
        assert set(sources[: 3 * STREAK]) == {s.address for s in servers}
        assert collections.Counter(sources) == {s.address: per_server for s in servers}
        for job in got:
            assert job.body.startswith(f"{job.server[1]}-")
            pool.delete(job)
        with pytest.raises(beanproto_sync.TimedOutError):
            pool.reserve(timeout=0)
    for server in servers:
        assert jobs_on(server, tube) == []


def test_a_pool_reserve_takes_its_timeout_as_a_client_does(
    servers: list[RestartableServer],
) -> None:
    """A float is rounded up (never a shorter wait than asked), a bad value is
    refused before anything is sent, as ``Client.reserve`` does."""
    tube = new_tube()
    with beanproto_sync.Pool([s.address for s in servers[:1]], watch=tube) as pool:
        with pytest.raises(beanproto.ArgumentError):
            pool.reserve(timeout=-1)
        with pytest.raises(beanproto.ArgumentTypeError):
            pool.reserve(timeout="1")  # type: ignore[arg-type]
        with pytest.raises(beanproto.ArgumentTypeError):
            pool.reserve(timeout=True)
        started = time.monotonic()
        with pytest.raises(beanproto_sync.TimedOutError):
            pool.reserve(timeout=0.2)  # type: ignore[arg-type]
        assert time.monotonic() - started >= 0.2  # rounded up to a second, not down to 0


def test_a_reserve_waits_for_a_job_on_any_server(servers: list[RestartableServer]) -> None:
    tube = new_tube()
    with beanproto_sync.Pool([s.address for s in servers], watch=tube) as pool:
        result: list[Any] = []
        thread = threading.Thread(target=lambda: result.append(pool.reserve(timeout=10)))
        thread.start()
        with beanproto_sync.Client(servers[2].address, use=tube) as client:
            job_id = client.put("late")
        thread.join(BOUND)
        (job,) = result
        assert (int(job.id), job.body, job.server) == (job_id, "late", servers[2].address)
        pool.release(job, priority=5, delay=0)
        assert pool.stats_job(job)["pri"] == 5


def test_puts_fail_over_from_a_dead_server_and_it_rejoins(
    servers: list[RestartableServer],
) -> None:
    tube = new_tube()
    addresses = [s.address for s in servers]
    with beanproto_sync.Pool(addresses, use=tube, watch=tube, retry_delay=0.05) as pool:
        assert pool.put("warm 0").server == addresses[0]
        servers[0].kill()
        placed = [pool.put(f"job {n}") for n in range(6)]
        assert all(p.server != addresses[0] for p in placed)
        assert pool.stats()["current-jobs-ready"] == 6  # the dead server is left out
        assert set(pool.stats_per_server()) == set(addresses[1:])
        servers[0].start()  # same port, same binlog: its job is back

        def rejoined() -> bool:
            return any(pool.put("probe").server == addresses[0] for _ in range(3))

        eventually(rejoined, "the first server back in the turns")
        assert "warm 0" in [body for _, body in jobs_on(servers[0], tube)]


def test_a_put_whose_reply_was_lost_is_raised_not_replayed(
    servers: list[RestartableServer],
) -> None:
    tube = new_tube()
    listener = socket.create_server(("127.0.0.1", 0))
    seen = bytearray()

    def peer() -> None:
        conn, _ = listener.accept()
        with conn:
            while b"put " not in seen:  # answer the set-up, read the put, vanish
                data = conn.recv(65536)
                if not data:
                    return
                seen.extend(data)
                if b"put " not in data:
                    conn.sendall(b"".join(_setup_replies(data)))

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    flaky = listener.getsockname()
    with beanproto_sync.Pool([flaky, servers[1].address], use=tube) as pool:
        with pytest.raises(beanproto.ReplyLostError):
            pool.put("maybe")
        assert pool.put("next").server == servers[1].address  # the flaky one is down now
    thread.join(BOUND)
    listener.close()
    assert b"maybe" in seen
    assert jobs_on(servers[1], tube) == [(1, "next")]  # "maybe" was not sent again


def _setup_replies(data: bytes) -> list[bytes]:
    replies = []
    for line in data.split(b"\r\n"):
        if line.startswith(b"use "):
            replies.append(b"USING " + line[4:] + b"\r\n")
        elif line.startswith(b"watch "):
            replies.append(b"WATCHING 2\r\n")
        elif line.startswith(b"ignore "):
            replies.append(b"WATCHING 1\r\n")
    return replies


def test_put_many_keeps_every_id_when_some_puts_fail(
    servers: list[RestartableServer],
) -> None:
    tube = new_tube()
    small = RestartableServer(extra_args=("-z", "20"))  # max-job-size 20 bytes
    small.start()
    try:
        addresses = [servers[0].address, small.address]
        with beanproto_sync.Pool(addresses, use=tube) as pool:
            with pytest.raises(beanproto.BatchError) as info:
                pool.put_many(["a", "b", "c", "d" * 100])  # turns: first, small, first, small
        error = info.value
        assert not isinstance(error, beanproto.BatchLostError)
        first, second, third, fourth = cast(list[Any], error.results)
        assert (first.server, second.server, third.server) == (
            addresses[0],
            addresses[1],
            addresses[0],
        )
        assert isinstance(fourth, beanproto_sync.JobTooBigError)
        assert error.ids == [first, second, third] and list(error.failures) == [3]
        assert [body for _, body in jobs_on(servers[0], tube)] == ["a", "c"]
        assert [body for _, body in jobs_on(small, tube)] == ["b"]
    finally:
        small.stop()


def test_bad_pool_settings_are_refused_before_connecting() -> None:
    nowhere = ("127.0.0.1", 1)
    with pytest.raises(beanproto.ArgumentError):
        beanproto_sync.Pool([])
    with pytest.raises(beanproto.ArgumentError):
        beanproto_sync.Pool([nowhere, nowhere])
    with pytest.raises(beanproto.ArgumentError):
        beanproto_sync.Pool([nowhere], weights=[0])
    with pytest.raises(beanproto.ArgumentError):
        beanproto_sync.Pool([nowhere], use="bad name")
    with pytest.raises(beanproto.ArgumentError):
        beanproto_sync.Pool([nowhere], io_timeout=-1)
    with pytest.raises(beanproto.ArgumentError):
        beanproto_sync.Pool([nowhere], retry_delay=0)


RUN: dict[str, Callable[[Callable[[], Coroutine[Any, Any, None]]], None]] = {
    "trio": lambda main: trio.run(main),
    "asyncio": lambda main: asyncio.run(main()),
    "anyio": lambda main: anyio.run(main),
}
MODULES: dict[str, Any] = {
    "trio": beanproto_trio,
    "asyncio": beanproto_asyncio,
    "anyio": beanproto_anyio,
}


def produce(flavor: str, addresses: list[Any], tube: str, bodies: list[str]) -> list[Any]:
    """Put ``bodies`` through a pool of the ``flavor``'s client."""
    if flavor == "sync":
        with beanproto_sync.Pool(addresses, use=tube, retry_delay=0.05) as pool:
            return pool.put_many(bodies)
    placed: list[Any] = []

    async def main() -> None:
        async with MODULES[flavor].Pool(addresses, use=tube, retry_delay=0.05) as pool:
            placed.extend(await pool.put_many(bodies))

    RUN[flavor](main)
    return placed


@pytest.mark.parametrize("flavor", ["sync", "trio", "asyncio", "anyio"])
def test_a_worker_on_a_pool_loses_no_job_when_a_server_dies_and_comes_back(
    flavor: str, servers: list[RestartableServer]
) -> None:
    tube = new_tube()
    addresses = [s.address for s in servers]
    total = 300
    placed = produce(flavor, addresses, tube, [f"job {n}" for n in range(total)])
    lock = threading.Lock()
    handled: collections.Counter[tuple[Any, int]] = collections.Counter()
    bodies: dict[tuple[Any, int], str] = {}
    third = threading.Event()

    def record(job: Any) -> None:
        with lock:
            key = (job.server, int(job.id))
            handled[key] += 1
            bodies[key] = job.body
            if len(handled) >= total // 3:
                third.set()

    async def async_record(job: Any) -> None:
        record(job)

    options: dict[str, Any] = {"watch": tube, "concurrency": 4, "connect_timeout": 2}
    if flavor == "sync":
        pool = beanproto_sync.Pool(addresses, retry_delay=0.05)
        worker = beanproto_sync.Worker(pool, record, **options)
        runner = threading.Thread(target=worker.run, daemon=True)
        runner.start()

        def stop() -> object:
            worker.stop()
            runner.join(BOUND)
            assert not runner.is_alive(), "run() did not return"
            return None

    else:
        module = MODULES[flavor]
        pool = module.Pool(addresses, retry_delay=0.05)
        run = Running(flavor, module.Worker(pool, async_record, **options))
        stop = run.stop
    try:
        assert third.wait(BOUND)
        servers[1].kill()
        more = produce(flavor, addresses, tube, [f"more {n}" for n in range(30)])
        assert all(m.server != addresses[1] for m in more)  # work goes on meanwhile

        def handled_all_but_the_dead() -> bool:
            with lock:
                return {k for k in handled if k[0] != addresses[1]} >= {
                    (p.server, int(p)) for p in placed + more if p.server != addresses[1]
                }

        eventually(handled_all_but_the_dead, "the live servers' jobs handled")
        servers[1].start()  # its binlog brings its jobs back

        def drained() -> bool:
            for server in servers:
                try:
                    with beanproto_sync.Client(server.address) as client:
                        stats = client.stats_tube(tube)
                except beanproto_sync.NotFoundError:
                    continue
                except ConnectionError:
                    return False
                if stats["current-jobs-ready"] or stats["current-jobs-reserved"]:
                    return False
            return True

        eventually(drained, "every job handled", bound=40)
    finally:
        stop()
    expected = {(p.server, int(p)) for p in placed + more}
    assert set(handled) == expected  # nothing lost, nothing from the wrong server
    for p, body in zip(placed, [f"job {n}" for n in range(total)], strict=True):
        assert bodies[(p.server, int(p))] == body


# -- the async pools --------------------------------------------------------------------


@pytest.mark.parametrize("flavor", ["trio", "asyncio", "anyio"])
def test_async_pools_spread_route_and_fail_over(
    flavor: str, servers: list[RestartableServer]
) -> None:
    tube = new_tube()
    addresses = [s.address for s in servers]
    module = MODULES[flavor]

    async def main() -> None:
        async with module.Pool(addresses, use=tube, watch=tube, retry_delay=0.05) as pool:
            ids = await pool.put_many(["a", "b", "c"])
            assert [i.server for i in ids] == addresses and [int(i) for i in ids] == [1, 1, 1]
            await pool.delete(ids[0])
            got = [await pool.reserve(timeout=0) for _ in range(2)]
            assert {(j.server, j.body) for j in got} == {(addresses[1], "b"), (addresses[2], "c")}
            for job in got:
                await pool.bury(job, priority=3)
                assert (await pool.stats_job(job))["state"] == "buried"
            servers[2].kill()
            placed = [await pool.put(f"job {n}") for n in range(4)]
            assert all(p.server != addresses[2] for p in placed)
            assert (await pool.stats_tube(tube))["current-jobs-ready"] == 4

    RUN[flavor](main)
