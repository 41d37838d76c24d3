"""Count the instructions each client spends per operation, with callgrind.

Usage::

    .venv/bin/python bench/callgrind.py                      # every client, put, cycle, stats
    .venv/bin/python bench/callgrind.py --workload put_many  # batches of 1,000 puts
    .venv/bin/python bench/callgrind.py --impl bp_sync --impl greenstalk --workload stats
    .venv/bin/python bench/callgrind.py --src /tmp/base/src  # beanproto from another checkout
    .venv/bin/python bench/callgrind.py --smoke              # proves the script works, ~15 s

Wall-clock figures on a shared two-core VM drift by tens of percent between
runs; the count of user-space instructions a client executes does not (the
same figure on every run, whatever else the machine does). So this script
runs each client under ``valgrind --tool=callgrind`` twice, for ``N`` and
``3N`` operations against a private beanstalkd, and reports the difference
divided by ``2N``: the cost of one operation, without the start-up of the
interpreter and the imports. Kernel time (the system calls themselves) is not
counted: it is the same for every client making the same calls, and a client
that makes fewer is not credited here (``bench_sync.py`` shows that).

Because the counts do not depend on the load, valgrind runs ``--jobs`` at a
time (default 2, one per core of the development VM).

Workloads: ``put`` (100-byte body), ``cycle`` (put + reserve + delete),
``stats``, and ``put_many``: the beanproto clients put batches of 1,000 bodies
with ``put_many``, the others (greenstalk, aiostalk, the raw loops) the same
puts one by one; per op is per put either way.

Implementations: the clients ``bp_sync``, ``greenstalk``, ``bp_asyncio``,
``aiostalk``, ``bp_trio``, and three raw loops (``_callgrind_driver.py``):
``raw_sync`` (a blocking socket), ``raw_asyncio`` (an asyncio buffered
protocol) and ``raw_trio`` (``trio.socket``), with commands built before the
loop, replies received into a preallocated buffer and parsed no more than a
client must. Each beanproto client is compared with a peer, the raw loops
being references: bp_sync with greenstalk (and raw_sync), bp_asyncio with
aiostalk (and raw_asyncio), bp_trio with raw_trio. A report, not a test: the
exit status is 0 whether or not the targets are met.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from _callgrind_driver import BATCH, START_COUNTING, UNSUPPORTED  # noqa: E402
from _common import source_state  # noqa: E402
from tools.beanstalkd import running_beanstalkd  # noqa: E402

DRIVER = Path(__file__).resolve().parent / "_callgrind_driver.py"

IMPLEMENTATIONS = (
    "bp_sync",
    "greenstalk",
    "raw_sync",
    "bp_asyncio",
    "aiostalk",
    "raw_asyncio",
    "bp_trio",
    "raw_trio",
)
WORKLOADS = ("put", "cycle", "stats", "put_many")
DEFAULT_WORKLOADS = ("put", "cycle", "stats")

LABELS = {
    "put": "put (100 B)",
    "cycle": "put+reserve+delete",
    "stats": "stats()",
    "put_many": "put_many*",
}

#: Each beanproto client, the peer it is judged against, and a raw reference.
PEERS: tuple[tuple[str, str, str | None], ...] = (
    ("bp_sync", "greenstalk", "raw_sync"),
    ("bp_asyncio", "aiostalk", "raw_asyncio"),
    ("bp_trio", "raw_trio", None),
)

#: The most beanproto's instructions per op may be, as a multiple of its peer's.
TARGETS = {
    ("bp_sync", "put"): 1.00,
    ("bp_sync", "cycle"): 1.00,
    ("bp_sync", "stats"): 0.67,
    ("bp_asyncio", "put"): 1.00,
    ("bp_asyncio", "cycle"): 1.00,
    ("bp_trio", "put"): 1.15,
    ("bp_trio", "cycle"): 1.15,
}

#: ``--smoke``: enough to show that valgrind, the server and the drivers work.
SMOKE_IMPLEMENTATIONS = ("bp_sync", "greenstalk")
SMOKE_N = 50


@dataclass
class Figure:
    """One implementation on one workload: the two runs' counts (``None``:
    the implementation has no such operation)."""

    n: int
    small: int | None
    large: int | None

    @property
    def per_op(self) -> float | None:
        if self.small is None or self.large is None:
            return None
        return (self.large - self.small) / (2 * self.n)


def snapshot(src: Path, into: Path) -> Path:
    """A compiled copy of ``src``, which every run then imports beanproto from.

    Others may edit ``src/`` while the runs go on: with a copy, the runs of N
    and 3N measure the same code. Compiling it once here keeps valgrind from
    compiling beanproto in every run (under ``PYTHONDONTWRITEBYTECODE``, which
    the test command sets, nothing would be cached), most of a short run's time.
    """
    copy = into / "src"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(copy)], check=True)
    return copy


#: On x86-64 the driver turns instrumentation on just before its loop, so
#: valgrind starts without it (the start-up then runs several times faster).
COUNT_FROM_LOOP = platform.machine() in ("x86_64", "AMD64")


def driver_env(src: Path) -> dict[str, str]:
    """The driver's environment: beanproto from ``src``, a fixed hash seed."""
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONHASHSEED="0")
    if COUNT_FROM_LOOP:
        env[START_COUNTING] = "1"
    return env


def collected(
    impl: str, workload: str, n: int, address: tuple[str, int], env: dict[str, str]
) -> int | None:
    """Instructions callgrind counted for one whole run of the driver, or
    ``None`` if the implementation cannot run the workload."""
    driver = [sys.executable, str(DRIVER), impl, workload, str(n), address[0], str(address[1])]
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    if COUNT_FROM_LOOP:
        valgrind.append("--instr-atstart=no")
    result = subprocess.run(
        [*valgrind, *driver],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == UNSUPPORTED:
        return None
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or found is None or found.group(1) == "0":
        raise RuntimeError(f"{impl} {workload}: valgrind failed:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def warm_up(impl: str, workload: str, address: tuple[str, int], env: dict[str, str]) -> None:
    """One operation without valgrind: shows that the driver works before
    minutes go into valgrind runs."""
    driver = [sys.executable, str(DRIVER), impl, workload, "1", address[0], str(address[1])]
    native = {k: v for k, v in env.items() if k != START_COUNTING}
    result = subprocess.run(driver, env=native, capture_output=True, text=True, check=False)
    if result.returncode not in (0, UNSUPPORTED):
        raise RuntimeError(f"{impl} {workload}: the driver failed:\n{result.stderr[-2000:]}")


def measure(
    impls: Sequence[str],
    workloads: Sequence[str],
    n: int,
    jobs: int,
    address: tuple[str, int],
    src: Path,
) -> dict[tuple[str, str], Figure]:
    """Every (impl, workload) at N and 3N operations, ``jobs`` valgrind runs at a time."""
    figures = {(i, w): Figure(n, None, None) for w in workloads for i in impls}
    # The long runs first, so the last ones to finish are short. A rough
    # guess of a run's length: operations x their relative cost.
    weight = {"put": 1, "put_many": 1, "cycle": 3, "stats": 2}
    loop = {"trio": 4, "asyncio": 2, "aiostalk": 2}
    runs = sorted(
        ((impl, workload, count) for impl, workload in figures for count in (3 * n, n)),
        key=lambda run: -run[2] * weight[run[1]] * loop.get(run[0].rpartition("_")[2], 1),
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="beanproto-callgrind-") as tmp:
        env = driver_env(snapshot(src, Path(tmp)))
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            for warming in [pool.submit(warm_up, i, workloads[0], address, env) for i in impls]:
                warming.result()
            pending = {
                pool.submit(collected, i, w, count, address, env): (i, w, count)
                for i, w, count in runs
            }
            for done, future in enumerate(as_completed(pending), 1):
                impl, workload, count = pending[future]
                value = future.result()
                if count == n:
                    figures[impl, workload].small = value
                else:
                    figures[impl, workload].large = value
                print(
                    f"  ... {done}/{len(runs)}: {impl} {workload} x{count} "
                    f"({time.perf_counter() - started:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            # After a failure or an interrupt, start no more runs.
            pool.shutdown(cancel_futures=True)
    return figures


# -- reporting ---------------------------------------------------------------------


def thousands(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 1000:.1f}k"


def quotient(mine: float | None, theirs: float | None) -> float | None:
    return None if mine is None or theirs is None else mine / theirs


@dataclass
class Row:
    """One line of the comparison: beanproto's client against its peer."""

    workload: str
    client: str
    peer: str
    peer_per_op: float | None
    per_op: float | None
    target: float | None
    reference: str | None
    reference_per_op: float | None

    @property
    def ratio(self) -> float | None:
        return quotient(self.per_op, self.peer_per_op)

    @property
    def met(self) -> bool | None:
        ratio = self.ratio
        return None if self.target is None or ratio is None else ratio <= self.target

    @property
    def to_reference(self) -> float | None:
        return quotient(self.per_op, self.reference_per_op)


def rows(figures: dict[tuple[str, str], Figure], workloads: Sequence[str]) -> list[Row]:
    """A row per (workload, beanproto client) whose peer was measured too."""
    out = []
    for workload in workloads:
        for client, peer, reference in PEERS:
            if (client, workload) not in figures or (peer, workload) not in figures:
                continue
            ref = reference if (reference, workload) in figures else None
            out.append(
                Row(
                    workload=workload,
                    client=client,
                    peer=peer,
                    peer_per_op=figures[peer, workload].per_op,
                    per_op=figures[client, workload].per_op,
                    target=TARGETS.get((client, workload)),
                    reference=ref,
                    reference_per_op=None if ref is None else figures[ref, workload].per_op,
                )
            )
    return out


def times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def report(
    figures: dict[tuple[str, str], Figure], impls: Sequence[str], workloads: Sequence[str]
) -> Iterator[str]:
    yield "instructions per operation (thousands; lower is better)"
    yield f"{'':14}" + "".join(f"{LABELS[w]:>20}" for w in workloads)
    for impl in impls:
        yield f"{impl:14}" + "".join(f"{thousands(figures[impl, w].per_op):>20}" for w in workloads)
    table = rows(figures, workloads)
    if not table:
        return
    yield ""
    yield "beanproto against its peer (ratio = beanproto / peer; the target is an upper bound)"
    yield (
        f"{'operation':20} {'client':11} {'peer':11} {'peer/op':>8} {'client/op':>10} "
        f"{'ratio':>7} {'target':>8} {'result':7} | {'reference':11} {'ref/op':>8} {'bp/ref':>7}"
    )
    met = total = 0
    for row in table:
        target = "-" if row.target is None else f"<={row.target:.2f}x"
        result = {None: "", True: "met", False: "missed"}[row.met]
        if row.met is not None:
            total += 1
            met += row.met
        reference = (
            f"{row.reference:11} {thousands(row.reference_per_op):>8} {times(row.to_reference):>7}"
            if row.reference is not None
            else f"{'-':11} {'':>8} {'':>7}"
        )
        yield (
            f"{LABELS[row.workload]:20} {row.client:11} {row.peer:11} "
            f"{thousands(row.peer_per_op):>8} {thousands(row.per_op):>10} "
            f"{times(row.ratio):>7} {target:>8} {result:7} | {reference}"
        )
    if total:
        yield f"targets met: {met} of {total}"
    if "put_many" in workloads:
        yield (
            f"* put_many: the beanproto clients call put_many() with {BATCH:,} bodies; "
            "greenstalk, aiostalk and the raw loops make the same puts one by one. "
            "Per op = per put."
        )


def to_json(
    figures: dict[tuple[str, str], Figure], workloads: Sequence[str], config: dict[str, object]
) -> dict[str, object]:
    by_impl: dict[str, dict[str, object]] = {}
    for (impl, workload), figure in figures.items():
        by_impl.setdefault(impl, {})[workload] = {
            "instructions_n": figure.small,
            "instructions_3n": figure.large,
            "per_op": figure.per_op,
        }
    return {
        "config": config,
        "per_op": by_impl,
        "rows": [
            {
                "workload": row.workload,
                "client": row.client,
                "peer": row.peer,
                "peer_per_op": row.peer_per_op,
                "per_op": row.per_op,
                "ratio": row.ratio,
                "target_at_most": row.target,
                "met": row.met,
                "reference": row.reference,
                "reference_per_op": row.reference_per_op,
                "ratio_to_reference": row.to_reference,
            }
            for row in rows(figures, workloads)
        ],
    }


# -- main ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", action="append", choices=IMPLEMENTATIONS)
    parser.add_argument(
        "--workload",
        action="append",
        choices=WORKLOADS,
        help="repeatable (default: put, cycle, stats)",
    )
    parser.add_argument("--n", type=int, default=None, help="operations in the short run (1000)")
    parser.add_argument("--jobs", type=int, default=2, help="valgrind runs at a time (2)")
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="beanproto's src folder")
    parser.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="also write the figures as JSON"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"a tiny run ({' and '.join(SMOKE_IMPLEMENTATIONS)}, put, N={SMOKE_N}) "
        "that shows the script works",
    )
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        if args.smoke:  # the test command runs this; say so, but do not fail it
            print("callgrind.py --smoke: skipped, valgrind is not installed", file=sys.stderr)
            return 0
        parser.error("valgrind is not installed (Debian package valgrind)")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    impls = args.impl or list(SMOKE_IMPLEMENTATIONS if args.smoke else IMPLEMENTATIONS)
    workloads = args.workload or (["put"] if args.smoke else list(DEFAULT_WORKLOADS))
    n = args.n if args.n is not None else SMOKE_N if args.smoke else 1000
    if n < 1:
        parser.error("--n must be positive")
    if "put_many" in workloads and n % BATCH:
        parser.error(f"put_many needs --n to be a multiple of {BATCH}")
    impls = [i for i in IMPLEMENTATIONS if i in impls]
    workloads = [w for w in WORKLOADS if w in workloads]

    started = time.perf_counter()
    source = source_state() if args.src.resolve() == (ROOT / "src").resolve() else str(args.src)
    valgrind = subprocess.run(
        ["valgrind", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    print(
        f"callgrind, N={n} vs 3N operations, {args.jobs} at a time; beanproto: {source}; "
        f"Python {platform.python_version()}; {valgrind}"
    )
    with running_beanstalkd() as server:
        figures = measure(impls, workloads, n, args.jobs, server.address, args.src)
    for line in report(figures, impls, workloads):
        print(line)
    elapsed = time.perf_counter() - started
    print(f"\ntotal time {elapsed:.0f} s")
    if args.json is not None:
        config: dict[str, object] = {
            "n": n,
            "jobs": args.jobs,
            "beanproto_source": source,
            "python": platform.python_version(),
            "valgrind": valgrind,
            "put_many_batch": BATCH,
            "elapsed_s": elapsed,
        }
        args.json.write_text(json.dumps(to_json(figures, workloads, config), indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
