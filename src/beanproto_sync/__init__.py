"""beanproto_sync: a blocking beanstalkd client, a drop-in for greenstalk 2.1.1.

Scripts written for greenstalk run unchanged after::

    import beanproto_sync as greenstalk

Every byte goes through the :mod:`beanproto` core, so replies are checked
for real (not with ``assert``) and a body that cannot be decoded still tells
you which job it belongs to (:class:`JobDecodeError`).
"""

from beanproto.client._pooled import PooledId, PooledJob
from beanproto.client.common import *  # noqa: F403 (greenstalk's names, shared by every client)
from beanproto.client.common import __all__ as _common

from ._api import Pipeline
from ._client import Address, Client, ConnectionTarget
from ._pool import Pool
from ._worker import Worker

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Address",
    "ConnectionTarget",
    "Pipeline",
    "Worker",
    "Pool",
    "PooledId",
    "PooledJob",
    *_common,
]
