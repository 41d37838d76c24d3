"""Print the test command's summary: counts per Python and per run.

Usage: ``python scripts/summary.py RESULTS_DIR``. Each pytest run of
scripts/test.sh writes ``RESULTS_DIR/<python>__<run>.xml`` (JUnit XML,
``<run>`` is ``unit`` or ``beanstalkd-<version>``); a run that wrote no
report (it crashed or was killed) is listed as missing.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def counts(report: Path) -> tuple[int, int, int, float]:
    """(passed, failed + errors, skipped, seconds) of one JUnit XML report."""
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = failed = skipped = 0
    seconds = 0.0
    for suite in suites:
        tests += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
        seconds += float(suite.get("time", 0))
    return tests - failed - skipped, failed, skipped, seconds


def main(argv: list[str]) -> int:
    results = Path(argv[1])
    expected = argv[2:]
    print(f"{'python':<8}{'run':<18}{'passed':>8}{'failed':>8}{'skipped':>9}{'seconds':>9}")
    total = [0, 0, 0]
    for name in expected:
        python, _, run = name.partition("__")
        report = results / f"{name}.xml"
        if not report.exists():
            print(f"{python:<8}{run:<18}  no report (the run crashed or was killed)")
            total[1] += 1
            continue
        passed, failed, skipped, seconds = counts(report)
        total = [total[0] + passed, total[1] + failed, total[2] + skipped]
        print(f"{python:<8}{run:<18}{passed:>8}{failed:>8}{skipped:>9}{seconds:>9.1f}")
    print(f"{'all':<26}{total[0]:>8}{total[1]:>8}{total[2]:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
