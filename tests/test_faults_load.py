"""Load with faults: producers and consumers at full speed while the server
crashes and comes back.

Per client flavor: 4 producers and 4 consumers, each with a client of its
own (threads for the blocking client; tasks on one event loop, run directly
with ``trio.run`` / ``asyncio.run``, for the async ones), about 2,000 jobs
with unique bodies, and a beanstalkd with a binlog SIGKILLed and restarted
twice on the same port in the middle of it.

The clients reconnect by themselves; the application code here does what
the fault model asks of an application and nothing more:

* a producer retries a put that failed with a :class:`ConnectionError`; a
  :class:`~beanproto.ReplyLostError` (or :class:`TimeoutError`) means the put
  may have happened, so its body is recorded as *maybe* before the retry
  (at-least-once: the job may then exist twice);
* a consumer tolerates a :class:`ConnectionError` anywhere and a
  :class:`~beanproto.NotFoundError` on delete (its reservation died with its
  connection: the job is ready again and will be delivered again);
* a consumer that meets a :class:`~beanproto.BrokenJobError` deletes that
  job by id: beanstalkd, killed between writing a job's record and its body
  to the binlog, comes back with the job and a body of zero bytes
  (tests/test_broken_job.py). Its put was never answered.

What must hold whatever the timing (at-least-once delivery, nothing made up):
every put that returned an id is delivered; an id is only ever delivered
with the body its put had; every delivered body was put; no job is left
behind. Nothing may hang: each flavor's run is bounded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
import trio

import beanproto
import beanproto_anyio
import beanproto_asyncio
import beanproto_sync
import beanproto_trio
from conftest import FLAVORS, new_tube
from faults_support import BOUND, RestartableServer, stats_tube

pytestmark = pytest.mark.integration

PRODUCERS = 4
CONSUMERS = 4
JOBS_PER_PRODUCER = 500
JOBS = PRODUCERS * JOBS_PER_PRODUCER
#: The server is killed and restarted when this share of the puts is done.
RESTART_AT = (1 / 3, 2 / 3)
#: The most one flavor's run may take (pytest's own limit is 60 s a test).
BUDGET = 45.0
#: Client settings: short, so a fault shows up as an error rather than a wait.
OPTIONS: dict[str, Any] = {"connect_timeout": 2, "io_timeout": 5}
#: The pause before retrying when the server is down (refused): a backoff,
#: so that a restart is not met with a tight loop of connects.
BACKOFF = 0.01


class OverBudget(AssertionError):
    pass


@dataclass
class Ledger:
    """What every producer and consumer saw, shared by threads and tasks
    (a lock; never held across a call to a client)."""

    deadline: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    progress: threading.Condition = field(init=False)
    #: id -> body, from the reply of every put that returned one.
    returned: dict[int, str] = field(default_factory=dict)
    #: (id, first body, second body) when a put returned an id already seen.
    id_conflicts: list[tuple[int, str, str]] = field(default_factory=list)
    #: Bodies whose put may have happened (its reply was lost).
    maybe: set[str] = field(default_factory=set)
    #: Every delivery, in order: (id, body).
    delivered: list[tuple[int, str]] = field(default_factory=list)
    #: Ids of the broken jobs a crash left (BrokenJobError).
    broken: set[int] = field(default_factory=set)
    producers_done: int = 0
    events: collections.Counter[str] = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        self.progress = threading.Condition(self.lock)

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise OverBudget(f"the run took longer than {BUDGET} s")

    def count(self, what: str) -> None:
        with self.lock:
            self.events[what] += 1

    def put_returned(self, jid: int, body: str) -> None:
        with self.lock:
            seen = self.returned.setdefault(jid, body)
            if seen != body:
                self.id_conflicts.append((jid, seen, body))
            self.progress.notify_all()

    def put_maybe(self, body: str) -> None:
        with self.lock:
            self.maybe.add(body)

    def deliver(self, jid: int, body: str) -> None:
        with self.lock:
            self.delivered.append((jid, body))

    def found_broken(self, jid: int) -> None:
        with self.lock:
            self.broken.add(jid)
            self.events["reserve: BrokenJobError (torn binlog record)"] += 1

    def producer_finished(self) -> None:
        with self.lock:
            self.producers_done += 1
            self.progress.notify_all()

    def all_produced(self) -> bool:
        with self.lock:
            return self.producers_done == PRODUCERS


def bodies_of(producer: int) -> list[str]:
    return [f"p{producer}-j{n}" for n in range(JOBS_PER_PRODUCER)]


class Chaos:
    """The fault: a thread that SIGKILLs and restarts the server (same port,
    same binlog) each time the puts reach a share of :data:`RESTART_AT`.
    Waits on the ledger's condition; never sleeps."""

    def __init__(self, server: RestartableServer, ledger: Ledger) -> None:
        self.server = server
        self.ledger = ledger
        self.restarted_at: list[int] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        ledger = self.ledger
        try:
            for share in RESTART_AT:
                target = int(JOBS * share)

                def due(target: int = target) -> bool:
                    return len(ledger.returned) >= target or ledger.producers_done == PRODUCERS

                with ledger.progress:
                    reached = ledger.progress.wait_for(
                        due, timeout=max(0.0, ledger.deadline - time.monotonic())
                    )
                    count = len(ledger.returned)
                if not reached or count >= JOBS:
                    return  # the run ended (or ran out of time) first: reported below
                self.server.restart()
                self.restarted_at.append(count)
        except BaseException as exc:
            self.error = exc

    def join(self) -> None:
        self.thread.join(BOUND)
        assert not self.thread.is_alive(), "the chaos thread did not end"
        if self.error is not None:
            raise self.error


# == the blocking client: threads ======================================================


def sync_producer(address: tuple[str, int], tube: str, n: int, ledger: Ledger) -> None:
    with beanproto_sync.Client(address, use=tube, watch=tube, **OPTIONS) as client:
        for body in bodies_of(n):
            while True:
                ledger.check_time()
                try:
                    jid = client.put(body)
                except (beanproto.ReplyLostError, TimeoutError) as exc:
                    ledger.put_maybe(body)  # may be in the queue: retry (at least once)
                    ledger.count(f"put: {type(exc).__name__} (maybe)")
                    continue
                except ConnectionError as exc:
                    ledger.count(f"put: {type(exc).__name__}")
                    time.sleep(BACKOFF)
                    continue
                ledger.put_returned(jid, body)
                break
    ledger.producer_finished()


def sync_consumer(address: tuple[str, int], tube: str, ledger: Ledger) -> None:
    with beanproto_sync.Client(address, use=tube, watch=tube, **OPTIONS) as client:
        while True:
            ledger.check_time()
            try:
                job = client.reserve(timeout=1)
            except beanproto_sync.TimedOutError:
                if ledger.all_produced():
                    return
                continue
            except beanproto.BrokenJobError as exc:
                ledger.found_broken(exc.id)
                try:
                    client.delete(exc.id)
                except (beanproto_sync.NotFoundError, ConnectionError, TimeoutError):
                    pass  # still reserved by the closed connection: it comes back
                continue
            except (ConnectionError, TimeoutError) as exc:
                ledger.count(f"reserve: {type(exc).__name__}")
                time.sleep(BACKOFF)
                continue
            ledger.deliver(job.id, job.body)
            try:
                client.delete(job)
            except beanproto_sync.NotFoundError:
                ledger.count("delete: NotFoundError (reservation lost)")
            except (ConnectionError, TimeoutError) as exc:
                ledger.count(f"delete: {type(exc).__name__}")


def run_sync(address: tuple[str, int], tube: str, ledger: Ledger) -> None:
    errors: list[BaseException] = []

    def guarded(fn: Callable[..., None], *args: Any) -> Callable[[], None]:
        def run() -> None:
            try:
                fn(*args)
            except BaseException as exc:
                errors.append(exc)

        return run

    workers = [
        threading.Thread(target=guarded(sync_producer, address, tube, n, ledger))
        for n in range(PRODUCERS)
    ] + [
        threading.Thread(target=guarded(sync_consumer, address, tube, ledger))
        for _ in range(CONSUMERS)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(max(0.0, ledger.deadline - time.monotonic()) + BOUND)
    assert not any(w.is_alive() for w in workers), "a worker thread hung"
    if errors:
        raise errors[0]


# == the async clients: tasks on one loop ==============================================


async def async_producer(
    module: Any,
    sleep: Callable[[float], Awaitable[None]],
    address: tuple[str, int],
    tube: str,
    n: int,
    ledger: Ledger,
) -> None:
    async with module.Client(address, use=tube, watch=tube, **OPTIONS) as client:
        for body in bodies_of(n):
            while True:
                ledger.check_time()
                try:
                    jid = await client.put(body)
                except (beanproto.ReplyLostError, TimeoutError) as exc:
                    ledger.put_maybe(body)
                    ledger.count(f"put: {type(exc).__name__} (maybe)")
                    continue
                except ConnectionError as exc:
                    ledger.count(f"put: {type(exc).__name__}")
                    await sleep(BACKOFF)
                    continue
                ledger.put_returned(jid, body)
                break
    ledger.producer_finished()


async def async_consumer(
    module: Any,
    sleep: Callable[[float], Awaitable[None]],
    address: tuple[str, int],
    tube: str,
    ledger: Ledger,
) -> None:
    async with module.Client(address, use=tube, watch=tube, **OPTIONS) as client:
        while True:
            ledger.check_time()
            try:
                job = await client.reserve(timeout=1)
            except module.TimedOutError:
                if ledger.all_produced():
                    return
                continue
            except beanproto.BrokenJobError as exc:
                ledger.found_broken(exc.id)
                try:
                    await client.delete(exc.id)
                except (module.NotFoundError, ConnectionError, TimeoutError):
                    pass  # still reserved by the closed connection: it comes back
                continue
            except (ConnectionError, TimeoutError) as exc:
                ledger.count(f"reserve: {type(exc).__name__}")
                await sleep(BACKOFF)
                continue
            ledger.deliver(job.id, job.body)
            try:
                await client.delete(job)
            except module.NotFoundError:
                ledger.count("delete: NotFoundError (reservation lost)")
            except (ConnectionError, TimeoutError) as exc:
                ledger.count(f"delete: {type(exc).__name__}")


def _workers(
    module: Any,
    sleep: Callable[[float], Awaitable[None]],
    address: tuple[str, int],
    tube: str,
    ledger: Ledger,
) -> list[Callable[[], Awaitable[None]]]:
    producers = [
        lambda n=n: async_producer(module, sleep, address, tube, n, ledger)
        for n in range(PRODUCERS)
    ]
    consumers = [
        lambda: async_consumer(module, sleep, address, tube, ledger) for _ in range(CONSUMERS)
    ]
    return [*producers, *consumers]


def run_trio(address: tuple[str, int], tube: str, ledger: Ledger) -> None:
    async def main() -> None:
        with trio.fail_after(max(0.0, ledger.deadline - time.monotonic()) + BOUND):
            async with trio.open_nursery() as nursery:
                for worker in _workers(beanproto_trio, trio.sleep, address, tube, ledger):
                    nursery.start_soon(worker)

    trio.run(main)


def run_asyncio(address: tuple[str, int], tube: str, ledger: Ledger) -> None:
    async def main() -> None:
        workers = _workers(beanproto_asyncio, asyncio.sleep, address, tube, ledger)
        await asyncio.wait_for(
            asyncio.gather(*(worker() for worker in workers)),
            max(0.0, ledger.deadline - time.monotonic()) + BOUND,
        )

    asyncio.run(main())


async def _awaited(fn: Callable[[], Awaitable[None]]) -> None:
    await fn()


def run_anyio(address: tuple[str, int], tube: str, ledger: Ledger) -> None:
    """The anyio client under load on anyio's trio backend (the rest of the
    suite runs it on asyncio)."""

    async def main() -> None:
        with anyio.fail_after(max(0.0, ledger.deadline - time.monotonic()) + BOUND):
            async with anyio.create_task_group() as tasks:
                for worker in _workers(beanproto_anyio, anyio.sleep, address, tube, ledger):
                    tasks.start_soon(_awaited, worker)

    anyio.run(main, backend="trio")


RUNNERS: dict[str, Callable[[tuple[str, int], str, Ledger], None]] = {
    "sync": run_sync,
    "trio": run_trio,
    "asyncio": run_asyncio,
    "anyio": run_anyio,
}


# == the test ==========================================================================


def drain(address: tuple[str, int], tube: str, ledger: Ledger) -> int:
    """Deliver what is still ready (a job released back after its consumer
    had already finished); return how many."""
    left = 0
    with beanproto_sync.Client(address, use=tube, watch=tube, **OPTIONS) as client:
        while True:
            try:
                job = client.reserve(timeout=0)
            except beanproto_sync.TimedOutError:
                return left
            except beanproto.BrokenJobError as exc:
                ledger.found_broken(exc.id)
                with contextlib.suppress(beanproto_sync.NotFoundError):
                    client.delete(exc.id)  # (NotFound: reserved by the closed connection)
                continue
            ledger.deliver(job.id, job.body)
            client.delete(job)
            left += 1


@pytest.mark.parametrize("flavor", FLAVORS)
def test_no_job_lost_or_garbled_across_two_crashes(
    flavor: str, binlog_server: RestartableServer
) -> None:
    tube = new_tube()
    address = binlog_server.address
    started = time.monotonic()
    ledger = Ledger(deadline=started + BUDGET)
    chaos = Chaos(binlog_server, ledger)
    try:
        RUNNERS[flavor](address, tube, ledger)
    finally:
        chaos.join()
    elapsed = time.monotonic() - started
    leftovers = drain(address, tube, ledger)

    delivered_ids = {jid for jid, _ in ledger.delivered}
    bodies_by_id: dict[int, set[str]] = collections.defaultdict(set)
    for jid, body in ledger.delivered:
        bodies_by_id[jid].add(body)
    all_bodies = {body for n in range(PRODUCERS) for body in bodies_of(n)}
    delivered_bodies = {body for _, body in ledger.delivered}
    duplicates = len(ledger.delivered) - len(delivered_ids)
    unreturned = delivered_ids - set(ledger.returned)  # jobs of puts whose reply was lost
    print(
        f"\n[fault load] {flavor}: {JOBS} jobs in {elapsed:.2f} s, "
        f"restarts after {chaos.restarted_at} puts, {len(ledger.delivered)} deliveries "
        f"({duplicates} delivered again, {len(unreturned)} jobs of lost-reply puts "
        f"that had happened), {len(ledger.maybe)} maybe-puts, "
        f"{leftovers} drained after the run; errors seen: {dict(sorted(ledger.events.items()))}"
    )

    assert len(chaos.restarted_at) == len(RESTART_AT), "the faults did not all happen mid-run"
    assert binlog_server.restarts == len(RESTART_AT)
    assert not ledger.id_conflicts, f"one id returned for two bodies: {ledger.id_conflicts[:5]}"
    # A broken job (a crash tore its binlog record) is one whose put was
    # never answered, and it was never handed back as a job.
    assert not ledger.broken & set(ledger.returned), "a put that returned an id came back broken"
    assert not ledger.broken & delivered_ids
    # Every put that returned an id was delivered, with that very body.
    missing = set(ledger.returned) - delivered_ids
    assert not missing, f"{len(missing)} jobs put and never delivered: {sorted(missing)[:10]}"
    wrong = {jid: bodies for jid, bodies in bodies_by_id.items() if len(bodies) != 1} | {
        jid: bodies_by_id[jid]
        for jid, body in ledger.returned.items()
        if bodies_by_id[jid] != {body}
    }
    assert not wrong, f"ids delivered with other bodies: {dict(list(wrong.items())[:5])}"
    # Nothing made up: every delivered body was put (returned, or maybe).
    made_up = delivered_bodies - set(ledger.returned.values()) - ledger.maybe
    assert not made_up, f"delivered but never put: {sorted(made_up)[:10]}"
    # A put that happened without returning an id said so: its reply was
    # lost (ReplyLostError or TimeoutError), never a plain ConnectionError,
    # which means the command never left (and so was retried without a mark).
    unmarked = {
        jid: bodies_by_id[jid] for jid in unreturned if not bodies_by_id[jid] <= ledger.maybe
    }
    assert not unmarked, f"puts that happened behind a plain ConnectionError: {unmarked}"
    # Producers retried until every put returned: every body was delivered.
    assert set(ledger.returned.values()) == all_bodies
    assert delivered_bodies == all_bodies
    # And the queue is empty: nothing stuck reserved or buried.
    tube_stats = stats_tube(address, tube)
    if tube_stats is not None:
        for state in ("ready", "reserved", "delayed", "buried"):
            assert tube_stats[f"current-jobs-{state}"] == "0", tube_stats
    assert elapsed < BUDGET
