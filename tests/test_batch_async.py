"""Batches on the trio and asyncio clients: tasks sharing a client, and
cancellation (``trio.move_on_after``, ``asyncio.wait_for``, ``task.cancel()``).

A batch cancelled part-way must leave the client usable: the replies still
owed are dropped as they come (the next call gets its own reply), commands
not yet sent are never sent, and a batch with a reserve sent costs the
connection, as a cancelled reserve does. Both clients, over TCP and a unix
socket, against a real beanstalkd; server-side conditions are polled, never
slept on.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from tools.beanstalkd import Server

from beanproto.errors import NotFoundError
from conftest import address_of, new_tube
from test_async_clients import (
    AsyncClient,
    Backend,
    backend,
    gather,
    until_waiting,
    wait_until,
)

__all__ = ["backend"]  # the fixture, imported to be used here

pytestmark = pytest.mark.integration

#: Long enough to be cancelled in the middle on any machine.
MANY = 50_000


async def _jobs(observer: AsyncClient, tube: str) -> int:
    """How many jobs the server has in ``tube``, ever (``total-jobs``)."""
    try:
        return (await observer.stats_tube(tube))["total-jobs"]
    except Exception:  # the tube does not exist yet
        return 0


#: Round trips of the observer with ``total-jobs`` unchanged that count as
#: settled. beanstalkd serves each readable connection a few commands per
#: turn of its loop, so commands a dropped connection had sent are all
#: served within a few hundred of another connection's round trips.
STABLE_ROUND_TRIPS = 300


async def _settled(client: AsyncClient, observer: AsyncClient, tube: str) -> int:
    """``total-jobs`` of ``tube`` once a cancelled batch can change it no
    more: the client's own next call is served after every command it sent
    on its connection (if it kept it), and then the count must hold still."""
    await client.using()
    now = await _jobs(observer, tube)
    stable = 0
    while stable < STABLE_ROUND_TRIPS:
        last, now = now, await _jobs(observer, tube)
        stable = stable + 1 if now == last else 0
    return now


async def _check_usable(client: AsyncClient, observer: AsyncClient, tube: str) -> None:
    """The client's next calls each get their own reply."""
    jid = await client.put("mine")
    assert (await client.peek(jid)).body == "mine"
    assert await client.using() == tube
    ids = await client.put_many(["after 1", "after 2"])
    assert [(await observer.peek(i)).body for i in ids] == ["after 1", "after 2"]


def test_put_many_cancelled_by_the_loops_timeout(
    backend: Backend, server: Server, tube: str
) -> None:
    address = address_of(server)

    async def body() -> None:
        async with (
            backend.client(address, use=tube, watch=tube) as client,
            backend.client(address, use=tube, watch=tube) as observer,
        ):
            # At once: not a byte went out, nothing is inserted.
            assert await backend.cancelled_after(0, lambda: client.put_many(["never"] * 10))
            assert await _jobs(observer, tube) == 0
            # In the middle: a prefix of the puts ran, no more ever will.
            cut = await backend.cancelled_after(0.05, lambda: client.put_many(["x"] * MANY))
            inserted = await _settled(client, observer, tube)
            assert cut  # (50,000 puts take far more than 50 ms)
            assert 0 <= inserted < MANY
            await _check_usable(client, observer, tube)
            assert await _jobs(observer, tube) == inserted + 3

    backend.run(body)


def test_put_many_task_cancelled_midway(backend: Backend, server: Server, tube: str) -> None:
    address = address_of(server)

    async def body() -> None:
        async with (
            backend.client(address, use=tube, watch=tube) as client,
            backend.client(address, use=tube, watch=tube) as observer,
        ):
            task = backend.start(lambda: client.put_many([f"job {n}" for n in range(MANY)]))

            async def some_in() -> bool:
                return await _jobs(observer, tube) >= 100

            await wait_until(some_in, "the batch to be under way")
            task.cancel()
            await task.join()
            assert task.error is None
            inserted = await _settled(client, observer, tube)
            assert task.cancelled
            assert 100 <= inserted < MANY
            # The jobs that went in are the first ones, in order.
            first = await observer.peek_ready()
            assert first.body == "job 0"
            await _check_usable(client, observer, tube)
            assert await _jobs(observer, tube) == inserted + 3

    backend.run(body)


def test_pipeline_with_large_bodies_cancelled_midway(
    backend: Backend, server: Server, tube: str
) -> None:
    """Cut off inside a body, the connection is given up; the client still
    works afterwards, on a new one."""
    address = address_of(server)

    async def body() -> None:
        raw: Any = backend.client(address, use=tube, watch=tube, encoding=None)
        async with (
            raw as client,
            backend.client(address, use=tube, watch=tube) as observer,
        ):

            async def run() -> list[Any]:
                async with client.pipeline() as pipe:
                    for n in range(40):
                        pipe.put(bytes([n]) * (1024 * 1024 + 17)).stats_tube(tube)
                    results: list[Any] = await pipe.execute()
                    return results

            task = backend.start(run)

            async def some_in() -> bool:
                return await _jobs(observer, tube) >= 2

            await wait_until(some_in, "the batch to be under way")
            task.cancel()
            await task.join()
            assert task.cancelled
            inserted = await _settled(client, observer, tube)
            assert 2 <= inserted < 40
            jid = await client.put(b"mine")
            assert (await client.peek(jid)).body == b"mine"
            assert await _jobs(observer, tube) == inserted + 1

    backend.run(body)


def test_cancelled_pipeline_with_a_waiting_reserve_costs_the_connection(
    backend: Backend, server: Server, tube: str
) -> None:
    address = address_of(server)
    empty = new_tube()

    async def body() -> None:
        async with (
            backend.client(address, use=tube, watch=empty) as client,
            backend.client(address, use=tube, watch=tube) as observer,
        ):
            connections = (await observer.stats())["total-connections"]

            async def run() -> list[Any]:
                async with client.pipeline() as pipe:
                    pipe.put("before the reserve").reserve(timeout=30).put("after it")
                    return await pipe.execute()

            task = backend.start(run)
            await until_waiting(observer, empty, 1)
            task.cancel()
            await task.join()
            assert task.cancelled

            # The connection is closed: the server's reserve ends at once (and
            # the tube, watched by nobody now, is gone).
            async def no_reserve() -> bool:
                try:
                    return (await observer.stats_tube(empty))["current-waiting"] == 0
                except NotFoundError:
                    return True

            await wait_until(no_reserve, "the reserve to end")
            # The put sent before the reserve ran; the one after it never will.
            assert await _settled(client, observer, tube) == 1
            await _check_usable(client, observer, tube)
            assert await client.watching() == [empty]
            assert (await observer.stats())["total-connections"] > connections

    backend.run(body)


def test_tasks_sharing_a_client_each_get_their_own_results(
    backend: Backend, server: Server, tube: str
) -> None:
    """Other tasks' commands go out between a batch's writes; every reply
    still reaches its owner."""
    address = address_of(server)

    async def body() -> None:
        async with backend.client(address, use=tube, watch=tube) as client:

            async def batch(n: int) -> None:
                bodies = [f"task {n} job {k}" for k in range(700)]
                ids = await client.put_many(bodies)
                async with client.pipeline() as pipe:
                    for jid in ids[::100]:
                        pipe.peek(jid)
                    pipe.using()
                    results = await pipe.execute()
                assert [job.body for job in results[:-1]] == bodies[::100]
                assert results[-1] == tube

            async def singles(n: int) -> None:
                for k in range(30):
                    jid = await client.put(f"single {n} {k}")
                    assert (await client.peek(jid)).body == f"single {n} {k}"

            fns = [functools.partial(batch, n) for n in range(4)]
            fns += [functools.partial(singles, n) for n in range(4)]
            await gather(backend, fns)
            assert (await client.stats_tube(tube))["current-jobs-ready"] == 4 * 700 + 4 * 30

    backend.run(body)
