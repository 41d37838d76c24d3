"""What the benchmark scripts share: samples, interleaved rounds, the command
line, and the report tables that do not depend on which clients are compared.

``bench_sync.py`` and ``bench_async.py`` import this (the ``bench/`` folder is
on ``sys.path`` when either runs as a script).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Result",
    "Sample",
    "build_parser",
    "check_args",
    "cpu_lines",
    "jobs_left",
    "result_json",
    "rotated",
    "run_rounds",
    "source_state",
    "spread_lines",
    "warmup_count",
]

Results = Mapping[str, Mapping[str, "Result"]]


@dataclass
class Sample:
    ops_per_s: float
    cpu_us_per_op: float
    #: Minor page faults of the client process per operation (``ru_minflt``).
    faults_per_op: float = 0.0


@dataclass
class Result:
    samples: list[Sample] = field(default_factory=list)

    def ops(self, stat: str) -> float:
        values = [s.ops_per_s for s in self.samples]
        return max(values) if stat == "best" else statistics.median(values)

    def cpu(self, stat: str) -> float:
        values = [s.cpu_us_per_op for s in self.samples]
        return min(values) if stat == "best" else statistics.median(values)

    def faults(self, stat: str) -> float:
        values = [s.faults_per_op for s in self.samples]
        return min(values) if stat == "best" else statistics.median(values)


# -- measuring ---------------------------------------------------------------------


def rotated(items: Sequence[str], by: int) -> list[str]:
    k = by % len(items)
    return [*items[k:], *items[:k]]


def warmup_count(workload: str, n: int, warmup_ops: int) -> int:
    """Untimed operations before a measurement of ``n``: fewer for 1 MiB bodies."""
    return max(1, min(warmup_ops, n // 10)) if workload == "big" else warmup_ops


def run_rounds(
    measure: Callable[[str, str, int], Sample],
    ns: Mapping[str, int],
    workloads: Sequence[str],
    implementations: Sequence[str],
    rounds: int,
    progress: Callable[[str], None],
    warmup_round: bool = True,
) -> dict[str, dict[str, Result]]:
    """``measure(impl, workload, n)`` for every pair, ``rounds`` times.

    A warm-up round (a tenth of the operations, nothing recorded) comes
    first unless ``warmup_round`` is false (smoke runs); within a round the
    implementations run in an order that rotates from round to round, so slow
    phases of the machine hit all of them alike.
    """
    results = {w: {i: Result() for i in implementations} for w in workloads}
    # Warm-up round: every code path, every implementation, nothing recorded.
    for workload in workloads if warmup_round else ():
        for impl in implementations:
            measure(impl, workload, max(1, ns[workload] // 10))
    for r in range(rounds):
        for workload in workloads:
            for impl in rotated(implementations, r):
                results[workload][impl].samples.append(measure(impl, workload, ns[workload]))
        progress(f"round {r + 1}/{rounds} done")
    return results


# -- reporting ---------------------------------------------------------------------


def _column(name: str) -> int:
    return max(10, len(name))


def cpu_lines(
    results: Results,
    labels: Mapping[str, str],
    implementations: Sequence[str],
    stat: str,
    width: int,
) -> Iterator[str]:
    """The table of client CPU microseconds per operation."""
    yield f"client CPU time per operation, microseconds ({stat}; time.process_time)"
    header = " ".join(f"{impl:>{_column(impl)}}" for impl in implementations)
    yield f"{'workload':<{width}}  {header}"
    for workload, label in labels.items():
        cpu = " ".join(
            f"{results[workload][impl].cpu(stat):>{_column(impl)}.1f}" for impl in implementations
        )
        yield f"{label:<{width}}  {cpu}"


def spread_lines(
    results: Results, labels: Mapping[str, str], implementations: Sequence[str], width: int
) -> Iterator[str]:
    """The lowest and highest ops/s of each implementation over the rounds."""
    yield "spread of ops/s over rounds (min..max)"
    for workload, label in labels.items():
        spreads = []
        for impl in implementations:
            values = [s.ops_per_s for s in results[workload][impl].samples]
            spreads.append(f"{impl} {min(values):,.0f}..{max(values):,.0f}")
        yield f"{label:<{width}}  " + "; ".join(spreads)


def result_json(result: Result) -> dict[str, object]:
    """One implementation's samples and summaries, for ``--json``."""
    return {
        "ops_per_s": [s.ops_per_s for s in result.samples],
        "cpu_us_per_op": [s.cpu_us_per_op for s in result.samples],
        "ops_per_s_median": result.ops("median"),
        "ops_per_s_best": result.ops("best"),
        "cpu_us_per_op_median": result.cpu("median"),
        "cpu_us_per_op_min": result.cpu("best"),
        "faults_per_op": [s.faults_per_op for s in result.samples],
    }


def jobs_left(stats: Mapping[str, str]) -> int:
    """Jobs still on the server, from its ``stats`` (as ``Helper.stats`` reads them)."""
    return sum(
        int(stats.get(f"current-jobs-{kind}", "0"))
        for kind in ("ready", "reserved", "delayed", "buried")
    )


def source_state() -> str:
    """The commit measured, and whether ``src/`` had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return f"{head} + uncommitted changes in src/" if dirty else head


# -- command line ------------------------------------------------------------------


def build_parser(
    description: str, profile_help: str, workloads: Sequence[str]
) -> argparse.ArgumentParser:
    """The options every benchmark script takes; add more, then :func:`check_args`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="few iterations (smoke test)")
    parser.add_argument("--rounds", type=int, default=None, help="measured rounds (default 5)")
    parser.add_argument("--n", type=float, default=1.0, help="scale the operations per measurement")
    parser.add_argument(
        "--stat",
        choices=("median", "best"),
        default="median",
        help="how rounds are summarised (default: median)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON"
    )
    parser.add_argument(
        "--profile",
        action="append",
        choices=workloads,
        default=None,
        metavar="WORKLOAD",
        help=profile_help,
    )
    parser.add_argument(
        "--pin",
        choices=("same", "split", "none"),
        default="same",
        help="CPU placement of client and server: one CPU (default; stable), "
        "two CPUs, or left to the scheduler",
    )
    parser.add_argument("--top", type=int, default=25, help="rows of --profile output")
    return parser


def check_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.n <= 0:
        parser.error("--n must be positive")
    return args


def finish(
    lines: Iterator[str] | Sequence[str],
    leftover: Mapping[str, str],
    started: float,
    args: argparse.Namespace,
    config: dict[str, object],
    make_json: Callable[[dict[str, object]], dict[str, object]],
) -> None:
    """Print the report, warn about jobs left behind, and write ``--json``.

    ``config`` holds what is particular to the script; the settings every run
    has are added here.
    """
    for line in lines:
        print(line)
    left = jobs_left(leftover)
    if left:
        print(f"\nwarning: {left} job(s) left on the server after draining")
    elapsed = time.perf_counter() - started
    print(f"\ntotal time {elapsed:.1f} s")
    if args.json is not None:
        full: dict[str, object] = {
            "rounds": config.pop("rounds"),
            "stat": args.stat,
            "ops_per_measurement": config.pop("ops_per_measurement"),
            "quick": args.quick,
            "python": platform.python_version(),
            "beanstalkd_version": leftover.get("version", "?"),
            "pin": args.pin,
            **config,
            "raw_stats_parses_yaml": False,
            "elapsed_s": elapsed,
        }
        args.json.write_text(json.dumps(make_json(full), indent=2) + "\n")
        print(f"results written to {args.json}")
