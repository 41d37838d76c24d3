"""``Pool``: several servers behind the asyncio client's API (what it does:
``beanproto.client._pool``)."""

from __future__ import annotations

import asyncio

from beanproto.client._job import TBody
from beanproto.client._pool import AsyncPool

from ._client import Client

__all__ = ["Pool"]


class Pool(AsyncPool[TBody]):
    __doc__ = AsyncPool.__doc__

    _client_type = Client

    async def _pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
