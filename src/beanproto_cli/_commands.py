"""The ``beanproto`` subcommands, each a short function over the blocking
client. They return the exit code (0 done, 1 nothing to do)."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import beanproto_sync

from . import _output as output

__all__ = ["COMMANDS", "Context", "STATES"]

STATES = ("ready", "delayed", "buried")

#: stats-tube fields of a ``tubes`` row, and their column names.
TUBE_COLUMNS = [
    ("current-jobs-ready", "ready"),
    ("current-jobs-urgent", "urgent"),
    ("current-jobs-reserved", "reserved"),
    ("current-jobs-delayed", "delayed"),
    ("current-jobs-buried", "buried"),
    ("current-waiting", "waiting"),
    ("current-watching", "watching"),
    ("pause-time-left", "paused"),
    ("total-jobs", "total"),
]


@dataclass
class Context:
    servers: list[Any]
    timeout: float
    out: TextIO

    @contextlib.contextmanager
    def client(self, server: Any = None, **options: Any) -> Iterator[beanproto_sync.Client[bytes]]:
        """A blocking client (bytes bodies) on ``server`` (the first one)."""
        address = self.servers[0] if server is None else server
        with beanproto_sync.Client(
            address,
            None,
            connect_timeout=self.timeout,
            io_timeout=self.timeout,
            reconnect=False,
            **options,
        ) as client:
            yield client


Command = Callable[[Context, argparse.Namespace], int]
COMMANDS: dict[str, Command] = {}


def command(name: str, one_server: bool = False) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        fn.one_server = one_server  # type: ignore[attr-defined]
        COMMANDS[name] = fn
        return fn

    return register


def _name(server: Any) -> str:
    if not isinstance(server, tuple):
        return str(server)
    host = f"[{server[0]}]" if ":" in server[0] else server[0]  # IPv6
    return f"{host}:{server[1]}"


# -- reading ----------------------------------------------------------------------------


@command("stats")
def stats(ctx: Context, args: argparse.Namespace) -> int:
    replies = {}
    for server in ctx.servers:
        with ctx.client(server) as client:
            replies[_name(server)] = dict(client.stats())
    if args.json:
        output.emit_json(replies, ctx.out)
        return 0
    names = list(replies)
    keys = list(next(iter(replies.values())))
    rows = [[key, *(replies[n].get(key) for n in names)] for key in keys]
    output.table(rows, ["stat", *names], ctx.out)
    return 0


def tube_rows(ctx: Context) -> list[dict[str, Any]]:
    rows = []
    for server in ctx.servers:
        with ctx.client(server) as client:
            for tube in client.tubes():
                try:
                    stats = client.stats_tube(tube)
                except beanproto_sync.NotFoundError:
                    continue  # gone since the list was made
                row: dict[str, Any] = {"server": _name(server), "tube": tube}
                row.update({column: stats[key] for key, column in TUBE_COLUMNS})  # type: ignore[literal-required]
                rows.append(row)
    return rows


@command("tubes")
def tubes(ctx: Context, args: argparse.Namespace) -> int:
    rows = tube_rows(ctx)
    if args.json:
        output.emit_json(rows, ctx.out)
        return 0
    columns = [column for _, column in TUBE_COLUMNS]
    header = (["server"] if len(ctx.servers) > 1 else []) + ["tube", *columns]
    table_rows = [
        ([row["server"]] if len(ctx.servers) > 1 else [])
        + [row["tube"], *(row[c] for c in columns)]
        for row in rows
    ]
    output.table(table_rows, header, ctx.out)
    return 0


@command("peek", one_server=True)
def peek(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.client() as client:
        if re.fullmatch(r"[0-9]+", args.what) and args.state is None:
            job = client.peek(int(args.what))
        elif args.state is None:
            raise beanproto_sync.ArgumentError(
                f"peek {args.what}: give a job id, or a tube and a state ({', '.join(STATES)})"
            )
        else:
            client.use(args.what)
            job = getattr(client, f"peek_{args.state}")()
        stats = dict(client.stats_job(job))
    if args.raw:
        output.write_raw(job.body)
    elif args.json:
        output.emit_json({"id": job.id, "stats": stats, **output.body_fields(job.body)}, ctx.out)
    else:
        output.lines(stats.items(), ctx.out)
        ctx.out.write("\n" + output.preview(job.body) + "\n")
    return 0


# -- changing ---------------------------------------------------------------------------


@command("put", one_server=True)
def put(ctx: Context, args: argparse.Namespace) -> int:
    # (os.fsencode: an argument that is not UTF-8 keeps its bytes)
    body = os.fsencode(args.body) if args.body is not None else sys.stdin.buffer.read()
    with ctx.client(use=args.tube) as client:
        job_id = client.put(body, priority=args.priority, delay=args.delay, ttr=args.ttr)
    if args.json:
        output.emit_json({"id": job_id, "tube": args.tube}, ctx.out)
    else:
        ctx.out.write(f"{job_id}\n")
    return 0


@command("kick")
def kick(ctx: Context, args: argparse.Namespace) -> int:
    total = 0
    for server in ctx.servers:
        with ctx.client(server, use=args.tube) as client:
            bound = args.count
            if args.all:
                stats = client.stats_tube(args.tube)
                bound = stats["current-jobs-buried"] or stats["current-jobs-delayed"]
            total += client.kick(bound) if bound else 0
    ctx.out.write(f"kicked {total}\n")
    return 0 if total else 1


@command("kick-job", one_server=True)
def kick_job(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.client() as client:
        client.kick_job(args.id)
    ctx.out.write(f"kicked {args.id}\n")
    return 0


@command("delete", one_server=True)
def delete(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.client() as client:
        client.delete(args.id)
    ctx.out.write(f"deleted {args.id}\n")
    return 0


@command("bury")
def bury(ctx: Context, args: argparse.Namespace) -> int:
    done = 0
    for server in ctx.servers:
        with ctx.client(server, watch=args.tube) as client:
            while done < args.count:
                try:
                    job = client.reserve(timeout=0)
                except beanproto_sync.TimedOutError:
                    break
                client.bury(job, priority=client.stats_job(job)["pri"])
                done += 1
    ctx.out.write(f"buried {done}\n")
    return 0 if done else 1


@command("pause")
def pause(ctx: Context, args: argparse.Namespace) -> int:
    paused = 0
    for server in ctx.servers:
        with ctx.client(server) as client:
            try:
                client.pause_tube(args.tube, args.seconds)
            except beanproto_sync.NotFoundError:
                continue  # not on this server
            paused += 1
    if not paused:
        ctx.out.write(f"no tube {args.tube}\n")
        return 1
    ctx.out.write(f"paused {args.tube} for {args.seconds} s on {paused} server(s)\n")
    return 0


@command("drain")
def drain(ctx: Context, args: argparse.Namespace) -> int:
    key = f"current-jobs-{args.state}"
    counts = {}
    for server in ctx.servers:
        with ctx.client(server) as client:
            try:
                counts[server] = client.stats_tube(args.tube)[key]  # type: ignore[literal-required]
            except beanproto_sync.NotFoundError:
                counts[server] = 0
    total = sum(counts.values())
    if not total:
        ctx.out.write(f"no {args.state} jobs in {args.tube}\n")
        return 1
    if not args.yes:
        try:
            answer = input(f"delete {total} {args.state} job(s) of {args.tube}? [y/N] ")
        except EOFError:
            answer = ""  # no one to answer (cron, </dev/null): no
        if answer.strip().lower() not in ("y", "yes"):
            ctx.out.write("nothing deleted\n")
            return 1
    deleted = 0
    for server in ctx.servers:
        with ctx.client(server, use=args.tube) as client:
            # At most what was counted (and confirmed): jobs put since stay.
            left = counts[server]
            while left > 0:
                try:
                    job = getattr(client, f"peek_{args.state}")()
                except beanproto_sync.NotFoundError:
                    break  # none left
                try:
                    client.delete(job)
                except beanproto_sync.NotFoundError:
                    continue  # a consumer took it meanwhile: peek again
                deleted += 1
                left -= 1
    ctx.out.write(f"deleted {deleted}\n")
    return 0


@command("move")
def move(ctx: Context, args: argparse.Namespace) -> int:
    """Reserve from the source, put into the destination with the job's
    priority and TTR, and only then delete it: a failure midway leaves the
    job in the source (released when the connection closes), never lost; at
    worst it is in both."""
    if args.source == args.destination:
        raise beanproto_sync.ArgumentError("move: the source and the destination are one tube")
    moved = 0
    for server in ctx.servers:
        with ctx.client(server, use=args.destination, watch=args.source) as client:
            try:
                left = client.stats_tube(args.source)["current-jobs-ready"]
            except beanproto_sync.NotFoundError:
                continue
            while left > 0:  # what was there: not jobs put since
                left -= 1
                try:
                    job = client.reserve(timeout=0)
                except beanproto_sync.TimedOutError:
                    break
                stats = client.stats_job(job)
                client.put(job.body, priority=stats["pri"], ttr=stats["ttr"])
                client.delete(job)
                moved += 1
    ctx.out.write(f"moved {moved}\n")
    return 0 if moved else 1


@command("tail", one_server=True)
def tail(ctx: Context, args: argparse.Namespace) -> int:
    """Reserve, print, then act. Jobs to release are held (a released job is
    ready again, and the next reserve would get it back) and released, with
    their priority, at the end: when the tube has no more ready jobs, after
    ``--count``, or as soon as one held job nears its TTR (the server's
    DEADLINE_SOON) or comes back because its TTR ran out."""
    seen: set[int] = set()
    held: list[tuple[Any, int]] = []
    with ctx.client(watch=args.tube) as client:
        try:
            while not args.count or len(seen) < args.count:
                try:
                    job = client.reserve(timeout=args.wait)
                except (beanproto_sync.TimedOutError, beanproto_sync.DeadlineSoonError):
                    break
                stats = client.stats_job(job)
                if job.id in seen:  # its TTR ran out while held: seen already
                    client.release(job, priority=stats["pri"])
                    break
                seen.add(job.id)
                if args.json:
                    record = {"id": job.id, "stats": dict(stats), **output.body_fields(job.body)}
                    output.emit_line(record, ctx.out)
                else:
                    ctx.out.write(f"--- job {job.id} (pri {stats['pri']}, ttr {stats['ttr']})\n")
                    ctx.out.write(output.preview(job.body) + "\n")
                ctx.out.flush()
                if args.then == "delete":
                    client.delete(job)
                elif args.then == "bury":
                    client.bury(job, priority=stats["pri"])
                else:
                    held.append((job, stats["pri"]))
        finally:
            for job, priority in held:
                with contextlib.suppress(beanproto_sync.NotFoundError):
                    client.release(job, priority=priority)
    return 0 if seen else 1


@command("top")
def top(ctx: Context, args: argparse.Namespace) -> int:
    from ._top import run_top  # curses only when asked for

    return run_top(ctx, args.interval)
