"""The trio client against two findings of the issue-9 review.

* A KeyboardInterrupt between queueing a command and writing it (trio may
  deliver it at any line of unprotected code) must not leave the connection
  out of step: the next call gets its own reply.
* Every async call is a checkpoint, even one with nothing to send
  (``put_many([])``, an empty pipeline's ``execute()``).
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from tools.beanstalkd import Server

import beanproto_trio
from conftest import address_of, new_tube

pytestmark = pytest.mark.integration


class _InterruptedSocket:
    """The client's socket, but its next ``send`` raises KeyboardInterrupt
    before writing anything (as a signal landing just before the call)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.armed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def send(self, data: bytes, *args: Any) -> int:
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt
        return int(self._raw.send(data, *args))


def test_an_interrupt_before_the_write_leaves_the_next_call_its_own_reply(
    server: Server,
) -> None:
    tube = new_tube()

    async def main() -> None:
        async with beanproto_trio.Client(address_of(server), use=tube, watch=tube) as client:
            await client.put("first")
            link = client._link
            assert link is not None
            link.raw = _InterruptedSocket(link.raw)  # type: ignore[assignment]
            with pytest.raises(KeyboardInterrupt):
                await client.put("interrupted")
            with trio.fail_after(5):
                job_id = await client.put("next")
                assert (await client.peek(job_id)).body == "next"
                stats = await client.stats_tube(tube)
            # The interrupted put never left: two jobs, not three.
            assert stats["current-jobs-ready"] == 2

    trio.run(main)


def test_calls_with_nothing_to_send_are_checkpoints(server: Server) -> None:
    async def main() -> None:
        async with beanproto_trio.Client(address_of(server)) as client:
            with trio.testing.assert_checkpoints():
                assert await client.put_many([]) == []
            with trio.testing.assert_checkpoints():
                assert await client.pipeline().execute() == []
            with trio.CancelScope() as scope:
                scope.cancel()
                await client.put_many([])
            assert scope.cancelled_caught

    trio.run(main)
