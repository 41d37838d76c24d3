"""beanproto_asyncio: an asyncio beanstalkd client with the blocking client's API.

::

    async with beanproto_asyncio.Client(("127.0.0.1", 11300), use="emails") as client:
        job_id = await client.put("hello")

Every method of ``beanproto_sync.Client`` is here as a coroutine with the same
arguments, defaults, return values and exceptions. Tasks may share one client:
their commands are pipelined on its connection and each gets its own reply.
A cancelled call never leaves a stale reply behind (see the module
``beanproto_asyncio._client`` for exactly what cancellation does).
"""

from beanproto.client._api import Pipeline
from beanproto.client._pooled import PooledId, PooledJob
from beanproto.client.common import *  # noqa: F403
from beanproto.client.common import __all__ as _common

from ._client import Client
from ._pool import Pool
from ._worker import Worker

__all__ = ["Client", "Pipeline", "Worker", "Pool", "PooledId", "PooledJob", *_common]
