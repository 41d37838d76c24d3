"""Count the instructions each client spends per operation, with callgrind.

Usage::

    .venv/bin/python bench/callgrind.py                      # every client, put and cycle
    .venv/bin/python bench/callgrind.py --impl bp_sync --impl greenstalk --workload stats
    .venv/bin/python bench/callgrind.py --src /tmp/base/src  # beanproto from another checkout

Wall-clock figures on a shared two-core VM drift by tens of percent between
runs; the count of user-space instructions a client executes does not (the
same figure on every run, whatever else the machine does). So this script
runs each client under ``valgrind --tool=callgrind`` twice, for ``N`` and
``3N`` operations against a private beanstalkd, and reports the difference
divided by ``2N``: the cost of one operation, without the start-up of the
interpreter and the imports. Kernel time (the system calls themselves) is not
counted: it is the same for every client making the same calls, and a client
that makes fewer is not credited here (``bench_sync.py`` shows that).

Workloads: ``put`` (100-byte body), ``cycle`` (put + reserve + delete),
``stats``. Implementations: ``bp_sync``, ``greenstalk``, ``bp_trio``,
``bp_asyncio``, ``aiostalk``. A report, not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tools.beanstalkd import running_beanstalkd  # noqa: E402

IMPLEMENTATIONS = ("bp_sync", "greenstalk", "bp_trio", "bp_asyncio", "aiostalk")
WORKLOADS = ("put", "cycle", "stats")
PEERS = {"bp_sync": "greenstalk", "bp_asyncio": "aiostalk"}

#: The client side, run under valgrind: ``driver IMPL WORKLOAD N HOST PORT``.
DRIVER = r"""
import sys
impl, workload, n, host, port = sys.argv[1:6]
n, port = int(n), int(port)
tube = f"cg-{impl}-{workload}-{n}"
body = "x" * 100

def run_sync(client):
    if workload == "put":
        for _ in range(n):
            client.put(body)
    elif workload == "cycle":
        for _ in range(n):
            client.put(body)
            client.delete(client.reserve())
    else:
        for _ in range(n):
            client.stats()

async def run_async(client):
    if workload == "put":
        for _ in range(n):
            await client.put(body)
    elif workload == "cycle":
        for _ in range(n):
            await client.put(body)
            await client.delete(await client.reserve())
    else:
        for _ in range(n):
            await client.stats()

if impl in ("bp_sync", "greenstalk"):
    mod = __import__("beanproto_sync" if impl == "bp_sync" else "greenstalk")
    client = mod.Client((host, port), use=tube, watch=tube)
    run_sync(client)
    client.close()
elif impl == "bp_trio":
    import trio, beanproto_trio
    async def main():
        async with beanproto_trio.Client((host, port), use=tube, watch=tube) as client:
            await run_async(client)
    trio.run(main)
else:
    import asyncio
    async def main():
        if impl == "bp_asyncio":
            import beanproto_asyncio
            async with beanproto_asyncio.Client((host, port), use=tube, watch=tube) as client:
                await run_async(client)
        else:
            import aiostalk
            client = aiostalk.Client((host, port), use=tube, watch=tube)
            await client.connect()
            await run_async(client)
            await client.close()
    asyncio.run(main())
"""


def collected(impl: str, workload: str, n: int, address: tuple[str, int], src: Path) -> int:
    """Instructions callgrind counted for one whole run of the driver."""
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{ROOT}", PYTHONHASHSEED="0")
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            DRIVER,
            impl,
            workload,
            str(n),
            address[0],
            str(address[1]),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"{impl} {workload}: valgrind failed:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def per_op(impl: str, workload: str, n: int, address: tuple[str, int], src: Path) -> float:
    """Instructions for one operation: (run of 3N - run of N) / 2N."""
    small = collected(impl, workload, n, address, src)
    large = collected(impl, workload, 3 * n, address, src)
    return (large - small) / (2 * n)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", action="append", choices=IMPLEMENTATIONS)
    parser.add_argument("--workload", action="append", choices=WORKLOADS)
    parser.add_argument("--n", type=int, default=1000, help="operations in the short run")
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="beanproto's src folder")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian package valgrind)")
    impls = args.impl or list(IMPLEMENTATIONS)
    workloads = args.workload or ["put", "cycle"]
    print(f"instructions per operation (callgrind, N={args.n} vs 3N), beanproto from {args.src}")
    with running_beanstalkd() as server:
        figures = {
            (impl, workload): per_op(impl, workload, args.n, server.address, args.src)
            for workload in workloads
            for impl in impls
        }
    print(f"{'':20}" + "".join(f"{w:>12}" for w in workloads))
    for impl in impls:
        print(f"{impl:20}" + "".join(f"{figures[impl, w] / 1000:>11.1f}k" for w in workloads))
    for mine, peer in PEERS.items():
        if mine in impls and peer in impls:
            ratios = "".join(f"{figures[mine, w] / figures[peer, w]:>11.2f}x" for w in workloads)
            print(f"{mine + '/' + peer:20}{ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
