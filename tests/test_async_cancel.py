"""Cancellation on a client shared by several tasks (issue 7, items 1.2 and 1.4).

A call cancelled before a byte of its command went out must leave everything
as it was: the connection (and so every job it holds reserved) is kept, and
no slot waits for a reply that will never come. Only a command already on the
wire whose reply cannot be dropped (a waiting reserve) may cost the
connection. And whatever the timing of cancellations in other tasks, a call
raises nothing but :class:`ConnectionError` or a :class:`beanproto.Error`.

Both clients, over TCP and a unix socket, against a real beanstalkd.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tools.beanstalkd import Server

import beanproto
from beanproto.errors import TimedOutError
from conftest import address_of
from test_async_clients import Backend, backend

__all__ = ["backend"]  # the fixture, imported to be used here

pytestmark = pytest.mark.integration

#: Rounds of the cancellation stress: on f0f0331 the trio client raised a
#: bare IndexError within the first few hundred (every run of 20 tried).
STRESS_ROUNDS = 1500


def test_call_cancelled_before_sending_leaves_the_connection(
    backend: Backend, server: Server, tube: str
) -> None:
    address = address_of(server)

    async def body() -> None:
        async with (
            backend.client(address, use=tube, watch=tube) as client,
            backend.client(address, use=tube, watch=tube) as other,
        ):
            jid = await client.put("held")
            job = await client.reserve(timeout=0)
            connections = (await other.stats())["total-connections"]

            # Cancelled at once: not a byte of this put goes out.
            assert await backend.cancelled_after(0, lambda: client.put("never"))

            # The job the client holds stays reserved for it (no other
            # consumer gets it), nothing was inserted, no connection was
            # opened, and the client's next calls get their own replies.
            assert (await other.stats_job(jid))["state"] == "reserved"
            with pytest.raises(TimedOutError):
                await other.reserve(timeout=0)
            assert (await client.stats_tube(tube))["total-jobs"] == 1
            await client.delete(job)
            assert await client.put("after") == jid + 1
            assert (await other.stats())["total-connections"] == connections

    backend.run(body)


def test_many_calls_cancelled_before_sending(backend: Backend, server: Server, tube: str) -> None:
    """Cancelled at once, over and over, interleaved with calls that finish:
    every finished call gets its own reply and the connection never changes."""
    address = address_of(server)

    async def body() -> None:
        async with backend.client(address, use=tube, watch=tube) as client:
            held = await client.reserve(timeout=0) if await client.put("held") else None
            assert held is not None
            connections = (await client.stats())["total-connections"]
            for n in range(50):
                assert await backend.cancelled_after(0, lambda: client.put("never"))
                assert await backend.cancelled_after(0, lambda: client.stats_job(held.id))
                assert (await client.stats_job(held.id))["reserves"] == 1
                assert await client.put(f"job {n}") > held.id
            assert (await client.stats())["total-connections"] == connections
            await client.delete(held)

    backend.run(body)


async def _tolerated(fn: Callable[[], Awaitable[Any]]) -> int:
    """Run ``fn()``; 1 if it failed the way a call on a shared client may
    (its connection was given up under it), 0 if it succeeded. Anything else
    propagates."""
    try:
        await fn()
    except (ConnectionError, beanproto.Error):
        return 1
    return 0


def test_puts_against_reserves_cancelled_at_any_time(
    backend: Backend, server: Server, tube: str
) -> None:
    """One task puts, another reserves with a timeout of 0 to 0.3 ms (each
    cancelled reserve gives the connection up, under the putter's feet, at
    whatever point of its call it is). On f0f0331 the trio client let a bare
    ``IndexError`` out of a put."""
    address = address_of(server)
    chance = random.Random(7)

    async def body() -> None:
        async with backend.client(address, use=tube, watch=tube) as client:

            async def put_many() -> int:
                failed = 0
                for n in range(STRESS_ROUNDS):
                    failed += await _tolerated(functools.partial(client.put, f"job {n}"))
                return failed

            async def reserve_many() -> int:
                failed = 0
                for _ in range(STRESS_ROUNDS):
                    delay = chance.uniform(0, 0.0003)
                    reserve = functools.partial(backend.cancelled_after, delay, client.reserve)
                    failed += await _tolerated(reserve)
                return failed

            putter = backend.start(put_many)
            reserver = backend.start(reserve_many)
            await putter.join()
            await reserver.join()
            assert putter.error is None, repr(putter.error)
            assert reserver.error is None, repr(reserver.error)
            # The client still works, on a new connection if need be.
            jid = await client.put("last")
            assert (await client.stats_job(jid))["tube"] == tube

    backend.run(body)
