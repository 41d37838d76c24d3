"""``Pool``: several servers behind the anyio client's API (what it does:
:class:`beanproto.client.AsyncPool`)."""

from __future__ import annotations

import anyio

from beanproto.client import AsyncPool, TBody

from ._client import Client

__all__ = ["Pool"]


class Pool(AsyncPool[TBody]):
    __doc__ = AsyncPool.__doc__

    _client_type = Client

    async def _pause(self, seconds: float) -> None:
        await anyio.sleep(seconds)
