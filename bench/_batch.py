"""The ``--pipeline`` scenario of ``bench_sync.py`` and ``bench_async.py``: what a
batch is, the ratios, and the report.

The batch API (``put_many`` and ``pipeline()``) saves round trips: its gain is
wall-clock throughput, so the scenario times batches with ``perf_counter``,
rounds interleaved, against the same work done one call at a time:

``puts``      1,000 puts of a 100-byte body: one ``put_many`` of all of them
              (the ``*_batch`` implementations), or 1,000 ``put`` calls.
``commands``  1,010 mixed commands: 500 times a ``put`` and a ``delete`` of a
              job the previous batch put, with a ``stats_tube`` after every
              50th pair; in one ``pipeline()``, or one call at a time.

It runs on one core (client and beanstalkd pinned to the same CPU: a round
trip is a context switch) and on split cores (beanstalkd on one CPU, the
client on the other: a round trip also pays a cross-CPU wake-up, as a server
on another host makes it pay a network round trip). The issue's target:
``put_many`` of 1,000 at least 2x greenstalk's puts one by one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from _common import Result, Sample, cpu_lines, result_json, run_rounds, spread_lines

PUT_BATCH = 1000
PAIRS = 500
STATS_EVERY = 50
COMMANDS = 2 * PAIRS + PAIRS // STATS_EVERY

WORKLOADS = ("puts", "commands")
LABELS = {
    "puts": f"{PUT_BATCH:,} puts",
    "commands": f"{COMMANDS:,} mixed commands",
}
#: Operations in one batch: a put, or one command.
OPS = {"puts": PUT_BATCH, "commands": COMMANDS}
#: Batches per measurement at ``--n 1``, and with ``--quick``.
DEFAULT_BATCHES = {"puts": 20, "commands": 20}
QUICK_BATCHES = {"puts": 1, "commands": 1}

#: The CPU placements the scenario runs on (``pin()`` modes), and their names.
PLACEMENTS = {"same": "one core", "split": "split cores"}

#: The put_many / one-by-one ratio the issue asks for, against greenstalk.
PUT_MANY_TARGET = 2.0


def put_positions() -> list[int]:
    """Where the puts' job ids are in a mixed batch's results."""
    positions = []
    at = 0
    for pair in range(PAIRS):
        positions.append(at)
        at += 2
        if pair % STATS_EVERY == STATS_EVERY - 1:
            at += 1
    assert at == COMMANDS
    return positions


@dataclass(frozen=True)
class Ratio:
    """``numerator / denominator`` in ops/s on ``workload``; at least ``target``
    if the issue sets one."""

    workload: str
    numerator: str
    denominator: str
    target: float | None = None

    @property
    def name(self) -> str:
        return f"{self.numerator} / {self.denominator}"

    def value(self, results: Mapping[str, Mapping[str, Result]], stat: str) -> float | None:
        by_impl = results[self.workload]
        if self.numerator not in by_impl or self.denominator not in by_impl:
            return None
        return by_impl[self.numerator].ops(stat) / by_impl[self.denominator].ops(stat)

    def cell(self, value: float | None) -> str:
        if value is None:
            return "n/a"
        if self.target is None:
            return f"{value:.2f}x"
        return f"{value:.2f}x (>={self.target:.2f}x {'met' if value >= self.target else 'missed'})"


def batch_ratios(pairs: Sequence[tuple[str, str]], peer: str, target: float | None) -> list[Ratio]:
    """For each (batch implementation, the same client one by one): the batch
    against ``peer`` and against itself one by one, on both workloads;
    ``target`` is for ``put_many`` against ``peer``."""
    out = []
    for workload in WORKLOADS:
        for batched, plain in pairs:
            out.append(Ratio(workload, batched, peer, target if workload == "puts" else None))
            out.append(Ratio(workload, batched, plain))
    return out


def ops_lines(
    results: Mapping[str, Mapping[str, Result]],
    implementations: Sequence[str],
    stat: str,
    width: int,
) -> Iterator[str]:
    """Ops/s per implementation; ``n/a`` for one that was not measured."""
    columns = [max(12, len(impl)) for impl in implementations]
    header = " ".join(f"{impl:>{w}}" for impl, w in zip(implementations, columns, strict=True))
    yield f"{'workload':<{width}}  {header}"
    for workload in WORKLOADS:
        by_impl = results[workload]
        cells = " ".join(
            f"{by_impl[impl].ops(stat):>{w},.0f}" if impl in by_impl else f"{'n/a':>{w}}"
            for impl, w in zip(implementations, columns, strict=True)
        )
        yield f"{LABELS[workload]:<{width}}  {cells}"


def ratio_lines(
    results: Mapping[str, Mapping[str, Result]], ratios: Sequence[Ratio], stat: str
) -> Iterator[str]:
    width = max(len(r.name) for r in ratios)
    for ratio in ratios:
        cell = ratio.cell(ratio.value(results, stat))
        yield f"  {LABELS[ratio.workload]:<20} {ratio.name:<{width}}  {cell}"


def summary_lines(
    by_placement: Mapping[str, Mapping[str, Mapping[str, Result]]],
    ratios: Sequence[Ratio],
    stat: str,
) -> Iterator[str]:
    """Every ratio on every placement, side by side."""
    width = max(len(LABELS[r.workload]) + 2 + len(r.name) for r in ratios)
    names = [PLACEMENTS[p] for p in by_placement]
    yield f"{'':<{width}}  " + "  ".join(f"{name:>12}" for name in names) + "  target"
    for ratio in ratios:
        cells = []
        verdicts = []
        for results in by_placement.values():
            value = ratio.value(results, stat)
            cells.append(f"{'n/a' if value is None else format(value, '.2f') + 'x':>12}")
            if ratio.target is not None and value is not None:
                verdicts.append("met" if value >= ratio.target else "missed")
        target = "" if ratio.target is None else f">={ratio.target:.2f}x " + "/".join(verdicts)
        label = f"{LABELS[ratio.workload]}: {ratio.name}"
        yield f"{label:<{width}}  " + "  ".join(cells) + f"  {target}".rstrip()


def ratios_json(
    results: Mapping[str, Mapping[str, Result]], ratios: Sequence[Ratio], stat: str
) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for ratio in ratios:
        value = ratio.value(results, stat)
        out.append(
            {
                "workload": ratio.workload,
                "ratio": ratio.name,
                "value": value,
                "target_at_least": ratio.target,
                "met": None if ratio.target is None or value is None else value >= ratio.target,
            }
        )
    return out


def run_placements(
    measure: Callable[[str, str, int], Sample],
    ns: Mapping[str, int],
    implementations: Sequence[str],
    measured: Sequence[str],
    ratios: Sequence[Ratio],
    rounds: int,
    stat: str,
    pin: Callable[[str, int], str],
    server_pid: int,
    affinity: set[int] | None,
    progress: Callable[[str], None],
    quick: bool,
) -> tuple[list[str], dict[str, object]]:
    """The batch workloads on each of ``PLACEMENTS``; the report and its JSON
    (``quick``: no warm-up round).

    ``measured`` are the ``implementations`` that can run (without the batch
    API, the others are shown as n/a). ``pin(mode, server_pid)`` places the
    processes from ``affinity``, the CPUs this process had at the start.
    """
    width = max(len(label) for label in LABELS.values())
    lines: list[str] = []
    by_placement: dict[str, dict[str, dict[str, Result]]] = {}
    out: dict[str, object] = {}
    for mode, name in PLACEMENTS.items():
        if affinity is not None:
            os.sched_setaffinity(0, affinity)
        placement = pin(mode, server_pid)
        progress(f"--pipeline, {name}")
        results = run_rounds(measure, ns, WORKLOADS, measured, rounds, progress, not quick)
        by_placement[mode] = results
        lines += ["", f"-- {name}: {placement}", f"ops/s, {stat} of {rounds} round(s)"]
        lines += ops_lines(results, implementations, stat, width)
        lines += ["ratios of ops/s", *ratio_lines(results, ratios, stat)]
        lines += cpu_lines(results, LABELS, measured, stat, width)
        lines += spread_lines(results, LABELS, measured, width)
        out[mode] = {
            "placement": placement,
            "workloads": {
                w: {impl: result_json(results[w][impl]) for impl in measured} for w in WORKLOADS
            },
            "ratios": ratios_json(results, ratios, stat),
        }
    lines += ["", "-- summary: ratios of ops/s", *summary_lines(by_placement, ratios, stat)]
    return lines, {"batches_per_measurement": dict(ns), "placements": out}


def header(ns: Mapping[str, int], batched: str, plain: str) -> list[str]:
    """What the scenario measures, in words."""
    return [
        "== --pipeline: put_many and pipeline() against the same calls one by one ("
        + ", ".join(f"{LABELS[w]}: {ns[w]} per measurement" for w in WORKLOADS)
        + ") ==",
        f"{batched}: one put_many() of {PUT_BATCH:,} bodies; one pipeline() of {COMMANDS:,} "
        f"commands ({PAIRS} x put + delete of a job the previous batch put, a stats_tube "
        f"after every {STATS_EVERY}th pair). {plain}: the same calls one at a time. "
        "An op is one put or one command.",
    ]
