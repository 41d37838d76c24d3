"""The job object the clients return."""

from __future__ import annotations

from typing import Generic, TypeVar, Union, cast

__all__ = ["Job", "JobOrID", "TBody", "to_id"]

TBody = TypeVar("TBody", str, bytes)


class Job(Generic[TBody]):
    """A job returned from the server.

    Attributes:
        id: the server's identifier for the job.
        body: the job's content: ``str`` when the client has an encoding,
            ``bytes`` when it was created with ``encoding=None``.
    """

    def __init__(self, id: int, body: TBody) -> None:
        self.id: int = id
        self.body: TBody = body

    def __repr__(self) -> str:
        # One class serves the three client packages (a job reserved with one
        # client may be deleted with another, and isinstance holds across
        # them), so its repr names no package: it is the constructor call. A
        # subclass names its own package, as the clients' reprs do (so a
        # ``greenstalk`` module built on beanproto reprs as greenstalk does).
        cls = type(self)
        name = "Job" if cls is Job else f"{cls.__module__.split('.')[0]}.{cls.__qualname__}"
        return f"{name}(id={self.id!r}, body={self.body!r})"


JobOrID = Union[Job[TBody], int]  # noqa: UP007 (runtime alias, as greenstalk)


def to_id(job: object) -> int:
    """The id of a :class:`Job`, or the id itself."""
    if type(job) is int:
        return job
    return job.id if isinstance(job, Job) else cast(int, job)
