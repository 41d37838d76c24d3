"""beanproto_anyio: a beanstalkd client for anyio programs (asyncio or trio).

::

    async with beanproto_anyio.Client(("127.0.0.1", 11300), use="emails") as client:
        job_id = await client.put("hello")

Every method of ``beanproto_sync.Client`` is here as a coroutine with the same
arguments, defaults, return values and exceptions, and ``Pool`` and
``Worker`` as in the other clients. It is built on the public adapter kit
(:mod:`beanproto.client`) alone: the guide ``docs/adapter.rst`` walks
through it.
"""

try:
    import anyio as _anyio  # noqa: F401
except ModuleNotFoundError as exc:  # anyio is an optional extra
    if exc.name != "anyio":
        raise  # anyio is there but something it needs is not: that error says what
    raise ModuleNotFoundError(
        "beanproto_anyio needs anyio, which is not installed: pip install 'beanproto[anyio]' "
        "(or pip install anyio)",
        name="anyio",
    ) from exc

from beanproto.client import Pipeline, PooledId, PooledJob
from beanproto.client.common import *  # noqa: F403 (the names every client exports)
from beanproto.client.common import __all__ as _common

from ._client import Client
from ._pool import Pool
from ._worker import Worker

__all__ = ["Client", "Pipeline", "Worker", "Pool", "PooledId", "PooledJob", *_common]
