"""Which worker ran which test phase when: a pytest plugin for reading a suite's critical path.

``PYTHONPATH=. .venv/bin/pytest -n 2 --dist loadgroup -p tests.bench.timeline`` writes one JSON
line per setup, call and teardown to ``$TIMELINE`` (default ``timeline.jsonl``), and prints per
worker its busy time, its last finish and its longest groups. Two workers on 2 cores: the suite ends
when the later worker does, so a worker idle at the end is time no CPU work can take back.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

_PATH = Path(os.environ.get("TIMELINE", "timeline.jsonl"))
_rows: list[dict[str, Any]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    node = getattr(report, "node", None)  # the controller's view of an xdist worker
    worker = node.gateway.id if node is not None else os.environ.get("PYTEST_XDIST_WORKER", "-")
    _rows.append({"worker": worker, "test": report.nodeid, "when": report.when,
                  "start": report.start, "stop": report.stop})  # fmt: skip


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _rows or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    _PATH.write_text("".join(json.dumps(row) + "\n" for row in _rows))
    begin = min(row["start"] for row in _rows)
    busy: dict[str, float] = defaultdict(float)
    end: dict[str, float] = defaultdict(float)
    groups: dict[tuple[str, str], float] = defaultdict(float)
    for row in _rows:
        spent = row["stop"] - row["start"]
        busy[row["worker"]] += spent
        end[row["worker"]] = max(end[row["worker"]], row["stop"] - begin)
        group = row["test"].split("@")[-1] if "@" in row["test"] else row["test"].split("::")[0]
        groups[(row["worker"], group)] += spent
    write = terminalreporter.write_line
    write(f"timeline ({_PATH}):")
    for worker in sorted(busy):
        write(f"  {worker}: busy {busy[worker]:.0f} s, last finish at {end[worker]:.0f} s")
        top = sorted(((s, g) for (w, g), s in groups.items() if w == worker), reverse=True)[:6]
        for spent, group in top:
            write(f"      {spent:6.0f} s  {group}")
