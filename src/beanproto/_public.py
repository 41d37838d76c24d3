"""The names every client package exports besides its ``Client``: greenstalk
2.1.1's module-level API (jobs, stats types, defaults, exceptions)."""

from ._clientlib import DEFAULT_TUBE, ERROR_RESPONSES
from ._commands import DEFAULT_DELAY, DEFAULT_PRIORITY, DEFAULT_TTR
from ._job import Job, JobOrID, TBody
from ._stats import Stats, StatsJob, StatsTube
from .errors import *  # noqa: F403
from .errors import __all__ as _errors

__all__ = [
    "Job",
    "JobOrID",
    "TBody",
    "Stats",
    "StatsJob",
    "StatsTube",
    "DEFAULT_TUBE",
    "DEFAULT_PRIORITY",
    "DEFAULT_DELAY",
    "DEFAULT_TTR",
    "ERROR_RESPONSES",
    *_errors,
]
