"""Jobs per second through Workers, on one server and on a pool of three.

    python bench/bench_pool.py              # 3,000 jobs, 4 slots, 3 rounds
    python bench/bench_pool.py --jobs 10000 --concurrency 8
    python bench/bench_pool.py --quick      # a tiny run that shows it works

For each client (blocking, trio, asyncio) and each layout (one private
beanstalkd; a Pool of three), the jobs are put first (``put_many``), then a
Worker with ``--concurrency`` slots and a handler that does nothing takes
them all; the figure is jobs handled per second of wall clock, from the
worker's start until the last job is deleted, the median of the rounds
(rounds interleaved, so a change in the machine's load hits every case
alike). The handler does nothing, so this is the worker's own cost per job:
reserve, delete and the bookkeeping, for the client and the servers
together. Ratios, not absolute figures, are what to read: the machine here
has two shared cores for the client, every server and every slot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

import trio  # noqa: E402
from tools.beanstalkd import running_beanstalkd  # noqa: E402

import beanproto_asyncio  # noqa: E402
import beanproto_sync  # noqa: E402
import beanproto_trio  # noqa: E402

CLIENTS = ["sync", "trio", "asyncio"]
LAYOUTS = ["1 server", "pool of 3"]


def load(addresses: list[Any], tube: str, jobs: int) -> None:
    with beanproto_sync.Pool(addresses, use=tube) as pool:
        for start in range(0, jobs, 1000):
            pool.put_many([f"job {n}" for n in range(start, min(jobs, start + 1000))])


def run_sync(addresses: list[Any], tube: str, jobs: int, concurrency: int) -> float:
    done = [0]
    lock = threading.Lock()

    def handler(job: Any) -> None:
        with lock:
            done[0] += 1
            if done[0] == jobs:
                worker.stop()

    where: Any = addresses[0] if len(addresses) == 1 else beanproto_sync.Pool(addresses)
    worker = beanproto_sync.Worker(where, handler, watch=tube, concurrency=concurrency)
    started = time.perf_counter()
    worker.run()
    return time.perf_counter() - started


def run_async(
    module: Any,
    runner: Callable[..., Any],
    addresses: list[Any],
    tube: str,
    jobs: int,
    concurrency: int,
) -> float:
    done = [0]

    async def handler(job: Any) -> None:
        done[0] += 1
        if done[0] == jobs:
            worker.stop()

    where: Any = addresses[0] if len(addresses) == 1 else module.Pool(addresses)
    worker = module.Worker(where, handler, watch=tube, concurrency=concurrency)
    started = time.perf_counter()
    runner(worker)
    return time.perf_counter() - started


RUNNERS: dict[str, Callable[[list[Any], str, int, int], float]] = {
    "sync": run_sync,
    "trio": lambda a, t, j, c: run_async(beanproto_trio, lambda w: trio.run(w.run), a, t, j, c),
    "asyncio": lambda a, t, j, c: run_async(
        beanproto_asyncio, lambda w: asyncio.run(w.run()), a, t, j, c
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="60 jobs, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.rounds = 60, 1
    rates: dict[tuple[str, str], list[float]] = {}
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(running_beanstalkd()) for _ in range(3)]
        layouts = {"1 server": [servers[0].address], "pool of 3": [s.address for s in servers]}
        for round_number in range(args.rounds):
            for client in CLIENTS:
                for layout, addresses in layouts.items():
                    tube = f"bench-{client}-{round_number}-{len(addresses)}"
                    load(addresses, tube, args.jobs)
                    seconds = RUNNERS[client](addresses, tube, args.jobs, args.concurrency)
                    rates.setdefault((client, layout), []).append(args.jobs / seconds)
    print(
        f"jobs/s through a Worker ({args.concurrency} slots, a handler that does nothing, "
        f"{args.jobs} jobs, median of {args.rounds} round(s))"
    )
    print(f"{'client':<10}{'1 server':>12}{'pool of 3':>12}{'pool / one':>12}")
    for client in CLIENTS:
        one = statistics.median(rates[(client, "1 server")])
        pool = statistics.median(rates[(client, "pool of 3")])
        print(f"{client:<10}{one:>12,.0f}{pool:>12,.0f}{pool / one:>11.2f}x")
    sync_one = statistics.median(rates[("sync", "1 server")])
    for client in CLIENTS[1:]:
        ratio = statistics.median(rates[(client, "1 server")]) / sync_one
        print(f"{client} / sync on one server: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
