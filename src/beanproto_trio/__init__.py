"""beanproto_trio: a trio beanstalkd client with the blocking client's API.

::

    async with beanproto_trio.Client(("127.0.0.1", 11300), use="emails") as client:
        job_id = await client.put("hello")

Every method of ``beanproto_sync.Client`` is here as a coroutine with the same
arguments, defaults, return values and exceptions. Tasks may share one client:
their commands are pipelined on its connection and each gets its own reply.
A cancelled call never leaves a stale reply behind (see the module
``beanproto_trio._client`` for exactly what cancellation does).
"""

try:
    import trio as _trio  # noqa: F401
except ModuleNotFoundError as exc:  # trio is an optional extra
    if exc.name != "trio":
        raise  # trio is there but something it needs is not: that error says what
    raise ModuleNotFoundError(
        "beanproto_trio needs trio, which is not installed: pip install 'beanproto[trio]' "
        "(or pip install trio)",
        name="trio",
    ) from exc

from beanproto.client._api import Pipeline
from beanproto.client._pooled import PooledId, PooledJob
from beanproto.client.common import *  # noqa: F403
from beanproto.client.common import __all__ as _common

from ._client import Client
from ._pool import Pool
from ._worker import Worker

__all__ = ["Client", "Pipeline", "Worker", "Pool", "PooledId", "PooledJob", *_common]
