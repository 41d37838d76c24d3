"""beanproto demo: a producer and a consumer exchanging jobs through beanstalkd.

    python demo.py                 # starts a private beanstalkd on a free port
    python demo.py 127.0.0.1:11300 # uses a running server
    python demo.py /run/beanstalkd.sock

The producer queues "send a welcome e-mail" jobs as JSON, one of them broken.
The consumer works through them: it deletes the jobs it completes, buries the
one it cannot understand, and at the end kicks the buried job back to show
the whole job life cycle. Both sides use ``beanproto_sync``, the blocking
client. Then the same exchange runs on ``beanproto_trio`` and on
``beanproto_asyncio`` (a consumer task, a producer, a cancelled reserve that
leaves the client working), and on ``beanproto_anyio`` (built on the public
adapter kit alone) in a trio program and in an asyncio one. Then a
``Worker`` does the same kind of work the way a service would (handlers in
threads, a failing job released with backoff and then buried, a job the
handler chooses to bury), and a ``Pool`` spreads jobs over three servers (two
more private ones) and a worker takes them from all three. Last, the
``beanproto`` core underneath, pipelining three commands in one write.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

from tools.beanstalkd import running_beanstalkd

import beanproto
import beanproto_asyncio
import beanproto_sync

TUBE = "demo-emails"
USERS = ["ada", "grace", "edsger", "barbara", "donald"]


def log(who: str, message: str) -> None:
    print(f"[{who:>8}] {message}", flush=True)


def producer(address: Any) -> None:
    with beanproto_sync.Client(address, use=TUBE) as client:
        for user in USERS:
            job_id = client.put(json.dumps({"user": user, "template": "welcome"}))
            log("producer", f"queued welcome mail for {user!r} as job {job_id}")
        job_id = client.put("this is not JSON", priority=10)
        log("producer", f"queued a broken job {job_id} (urgent priority 10)")
        client.put(json.dumps({"stop": True}), priority=2**32 - 1)
        log("producer", "queued the stop job at the lowest priority")


def consumer(address: Any, done: list[int]) -> None:
    with beanproto_sync.Client(address, watch=TUBE) as client:
        while True:
            job = client.reserve(timeout=10)
            try:
                payload = json.loads(job.body)
            except ValueError:
                client.bury(job)
                log("consumer", f"job {job.id} is not JSON: buried it for a human")
                continue
            if payload.get("stop"):
                client.delete(job)
                log("consumer", f"job {job.id} says stop")
                return
            log("consumer", f"sent welcome mail to {payload['user']!r} (job {job.id}), deleting")
            client.delete(job)
            done.append(job.id)


def inspect(address: Any) -> None:
    with beanproto_sync.Client(address, use=TUBE, watch=TUBE) as client:
        buried = client.peek_buried()
        log("operator", f"buried job {buried.id}: {buried.body!r}")
        log("operator", f"kicked {client.kick(10)} job(s) back to ready")
        stats = client.stats_job(buried.id)
        log("operator", f"job {buried.id} is {stats['state']}, kicked {stats['kicks']} time(s)")
        client.delete(buried.id)
        tube = client.stats_tube(TUBE)
        log(
            "operator",
            f"tube {TUBE!r}: {tube['total-jobs']} jobs in total, "
            f"{tube['current-jobs-ready']} ready now",
        )


def trio_clients(address: Any) -> int:
    """Producer and consumer tasks on beanproto_trio."""
    import trio  # optional dependency: only this part of the demo needs it

    import beanproto_trio

    tube, done = "demo-trio", []

    async def consume(client: beanproto_trio.Client[str]) -> None:
        for _ in range(3):
            job = await client.reserve(timeout=10)
            log("trio", f"consumer task got job {job.id}: {job.body!r}")
            await client.delete(job)
            done.append(job.id)

    async def main() -> None:
        async with (
            beanproto_trio.Client(address, use=tube) as producer,
            beanproto_trio.Client(address, watch=tube) as consumer,
        ):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume, consumer)
                for n in range(3):
                    await producer.put(f"trio job {n}")
            with trio.move_on_after(0.1):
                await consumer.reserve()  # nothing to reserve: cancelled
            log("trio", f"cancelled a waiting reserve; still watching {await consumer.watching()}")

    trio.run(main)
    return len(done)


def asyncio_clients(address: Any) -> int:
    """Producer and consumer tasks on beanproto_asyncio."""
    tube, done = "demo-asyncio", []

    async def consume(client: beanproto_asyncio.Client[str]) -> None:
        for _ in range(3):
            job = await client.reserve(timeout=10)
            log("asyncio", f"consumer task got job {job.id}: {job.body!r}")
            await client.delete(job)
            done.append(job.id)

    async def main() -> None:
        async with (
            beanproto_asyncio.Client(address, use=tube) as producer,
            beanproto_asyncio.Client(address, watch=tube) as consumer,
        ):
            task = asyncio.create_task(consume(consumer))
            for n in range(3):
                await producer.put(f"asyncio job {n}")
            await task
            try:
                await asyncio.wait_for(consumer.reserve(), 0.1)
            except asyncio.TimeoutError:
                log(
                    "asyncio",
                    f"cancelled a waiting reserve; still watching {await consumer.watching()}",
                )

    asyncio.run(main())
    return len(done)


def anyio_clients(address: Any) -> int:
    """The same on beanproto_anyio, once on each of anyio's backends."""
    import anyio  # optional dependency (the anyio extra), as trio above

    import beanproto_anyio

    done: list[int] = []

    async def main(backend: str) -> None:
        tube = f"demo-anyio-{backend}"
        async with (
            beanproto_anyio.Client(address, use=tube) as producer,
            beanproto_anyio.Client(address, watch=tube) as consumer,
        ):
            await producer.put_many([f"anyio job {n}" for n in range(3)])
            for _ in range(3):
                job = await consumer.reserve(timeout=10)
                log(f"anyio/{backend}", f"got job {job.id}: {job.body!r}")
                await consumer.delete(job)
                done.append(job.id)
            with anyio.move_on_after(0.1):
                await consumer.reserve()
            log(
                f"anyio/{backend}",
                f"cancelled a waiting reserve; still watching {await consumer.watching()}",
            )

    for backend in ("trio", "asyncio"):
        anyio.run(main, backend, backend=backend)
    return len(done)


class _Echo(logging.Handler):
    """The worker's own log lines (logger ``beanproto``), shown as the demo's."""

    def __init__(self, who: str) -> None:
        super().__init__(logging.INFO)
        self.who = who

    def emit(self, record: logging.LogRecord) -> None:
        log(self.who, record.getMessage())


@contextlib.contextmanager
def echo_worker_log(who: str) -> Iterator[None]:
    logger = logging.getLogger("beanproto")
    handler, level = _Echo(who), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def worker_service(address: Any) -> bool:
    """A Worker: two handler threads; outcomes by what the handler does."""
    tube = "demo-worker"
    with beanproto_sync.Client(address, use=tube) as client:
        for body in ["resize photo 1", "resize photo 2", "flaky upload", "unknown task"]:
            client.put(body)
    attempts: dict[str, int] = {}
    finished: list[str] = []

    def handler(job: beanproto_sync.Job[str]) -> None:
        attempts[job.body] = attempts.get(job.body, 0) + 1
        if job.body == "unknown task":
            raise beanproto_sync.BuryJob()  # the handler's own choice
        if job.body == "flaky upload" and attempts[job.body] < 3:
            raise OSError("upload failed")  # released, retried after a backoff
        finished.append(job.body)
        if len(finished) == 3:
            worker.stop()

    worker = beanproto_sync.Worker(
        address, handler, watch=tube, concurrency=2, backoff=0, max_releases=5
    )
    logging.getLogger("beanproto").propagate = False  # (no tracebacks in the demo)
    with echo_worker_log("worker"):
        worker.run()  # returns after stop(): SIGTERM or Ctrl-C would do the same
    logging.getLogger("beanproto").propagate = True
    with beanproto_sync.Client(address) as client:
        buried = client.stats_tube(tube)["current-jobs-buried"]
        client.use(tube)
        client.delete(client.peek_buried())
    log(
        "worker",
        f"{len(finished)} done, flaky upload took {attempts['flaky upload']} tries, "
        f"{buried} buried",
    )
    return len(finished) == 3 and buried == 1


def pool_of_three(address: Any) -> bool:
    """A Pool over this server and two more: puts spread, ids that know
    their server, and a worker taking jobs from all three."""
    tube = "demo-pool"
    with contextlib.ExitStack() as stack:
        others = [stack.enter_context(running_beanstalkd()) for _ in range(2)]
        addresses = [address, *(srv.address for srv in others)]
        with beanproto_sync.Pool(addresses, use=tube, watch=tube) as pool:
            ids = pool.put_many([f"thumbnail {n}" for n in range(6)])
            for job_id in ids[:3]:
                log("pool", f"put job {int(job_id)} on {job_id.server}")
            log("pool", "ids are per server: the pool sends later commands where each job is")
        seen: list[str] = []

        def handler(job: Any) -> None:
            seen.append(job.body)
            if len(seen) == len(ids):
                worker.stop()

        worker = beanproto_sync.Worker(
            beanproto_sync.Pool(addresses), handler, watch=tube, concurrency=2
        )
        worker.run()
        log("pool", f"a worker on the pool handled {len(seen)} jobs from 3 servers")
    return sorted(seen) == sorted(f"thumbnail {n}" for n in range(6))


def pipelined_core(address: Any) -> None:
    """The sans-I/O core on a plain socket: three commands, one write."""
    conn = beanproto.Connection()
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(address)
    else:
        sock = socket.create_connection(address)
    with sock:
        commands = [beanproto.Use(tube=TUBE), beanproto.Put(body=b"raw"), beanproto.Stats()]
        sock.sendall(b"".join(conn.send(command) for command in commands))
        for command in commands:
            event = conn.next_event()
            while event is beanproto.NEED_DATA:
                conn.receive_data(sock.recv(65536))
                event = conn.next_event()
            shown = event if not isinstance(event, beanproto.Ok) else "Ok(<stats>)"
            log("core", f"{type(command).__name__:>5} -> {shown}")
            if isinstance(event, beanproto.Ok):
                stats = event.data
                assert isinstance(stats, dict)
                log(
                    "core",
                    f"server {stats['version']}, {stats['total-jobs']} jobs so far, "
                    f"draining={stats['draining']}",
                )
            if isinstance(event, beanproto.Inserted):
                cleanup = event.id
        sock.sendall(conn.send(beanproto.Delete(id=cleanup)))
        event = conn.next_event()
        while event is beanproto.NEED_DATA:
            conn.receive_data(sock.recv(65536))
            event = conn.next_event()
        log("core", f"Delete -> {event}")


def parse_address(text: str) -> Any:
    if ":" in text and not text.startswith("/"):
        host, _, port = text.rpartition(":")
        return (host, int(port))
    return text


@contextlib.contextmanager
def server(address: str | None) -> Iterator[Any]:
    if address:
        yield parse_address(address)
        return
    with running_beanstalkd() as srv:
        log("demo", f"started beanstalkd pid {srv.pid} on {srv.host}:{srv.port}")
        yield srv.address
    log("demo", f"stopped beanstalkd pid {srv.pid}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address", nargs="?", help="HOST:PORT or unix socket path")
    args = parser.parse_args(argv)
    with server(args.address) as address:
        done: list[int] = []
        worker = threading.Thread(target=consumer, args=(address, done))
        worker.start()
        producer(address)
        worker.join()
        log("demo", f"consumer completed {len(done)} of {len(USERS)} mails")
        inspect(address)
        async_done = trio_clients(address) + asyncio_clients(address)
        anyio_done = anyio_clients(address)
        served = worker_service(address)
        pooled = pool_of_three(address)
        pipelined_core(address)
        ok = len(done) == len(USERS) and async_done == 6 and anyio_done == 6
        ok = ok and served and pooled
    log("demo", "done" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
