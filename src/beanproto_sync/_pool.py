"""``Pool``: several servers behind the blocking client's API.

What a pool does is ``beanproto.client._pool``'s docstring; its methods are
generated into ``_pool_api.py``. Here: the client it uses, and a wait (while
every server is down) that :meth:`Pool.close` cuts short from any thread.
"""

from __future__ import annotations

import threading
from typing import Any

from beanproto.client._job import TBody

from ._client import Client
from ._pool_api import SyncPool

__all__ = ["Pool"]


class Pool(SyncPool[TBody]):
    __doc__ = SyncPool.__doc__

    _client_type = Client

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._woken = threading.Event()
        super().__init__(*args, **kwargs)

    def _pause(self, seconds: float) -> None:
        self._woken.wait(seconds)

    def close(self) -> None:
        self._woken.set()
        super().close()
