"""Where ``make test``'s CPU goes: the suite runs as ``make test`` runs it, while a poller reads
every process's CPU time from ``/proc`` twice a second; at the end the CPU seconds are summed by
what each process runs (``modeldeploy serve``, ``kube-apiserver``, a pytest worker, ...).

    .venv/bin/python -m tests.bench.profile_suite [pytest arguments]

A process is counted up to its last sample, so each one's final half second is missed: the
figures are a little low, most for the many short processes. The poller's own CPU is one line of
the table. docs/benchmarks.md quotes a run. Figures only; nothing here asserts anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from tests.support.processes import cpu_time

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHONS = ("python", "python3", "python3.11", "pytest", "modeldeploy")
TEMPLATE = (
    "python -m tests.support.prefork"  # what kind() calls the template (tests/support/prefork.py)
)


def kind(words: list[str]) -> str:
    """What a process runs, from its command line: the program, or for Python the module or
    script, or ``modeldeploy``'s subcommand."""
    if not words:
        return "[kernel threads]"
    program = os.path.basename(words[0])
    if not program.startswith(PYTHONS):
        return program[:40]
    args = [w for w in words[1:] if not w.startswith("-")]
    if program == "modeldeploy" or (args and os.path.basename(args[0]) == "modeldeploy"):
        rest = args if program == "modeldeploy" else args[1:]
        return "modeldeploy " + (rest[0] if rest else "")
    if "execnet" in " ".join(words) or "exec(eval(" in " ".join(words):
        return "pytest worker"
    if program == "pytest" or (args and os.path.basename(args[0]) == "pytest"):
        return "pytest"
    if "-m" in words:
        return "python -m " + words[words.index("-m") + 1]
    return "python " + (os.path.basename(args[0]) if args else "")


class Poller:
    """CPU seconds per (pid, start time), read from ``/proc`` until ``stop``."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.seen: dict[tuple[int, str], tuple[float, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                seconds, started = cpu_time(int(entry))
                key = (int(entry), started)  # pid and start time: pids are reused
                label = self.seen[key][1] if key in self.seen else None
                # A child of the executor's template names its program only once it runs it.
                if label is None or label == TEMPLATE:
                    raw = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                    words = [w.decode(errors="replace") for w in raw if w]
                    if len(words) == 1:  # a title set by setproctitle: one string
                        words = words[0].split()
                    label = kind(words)
            except (OSError, ValueError, IndexError):
                continue  # gone between the listing and the read
            self.seen[key] = (seconds, label)

    def table(self) -> list[tuple[str, float, int]]:
        seconds: Counter[str] = Counter()
        count: Counter[str] = Counter()
        for used, label in self.seen.values():
            seconds[label] += used
            count[label] += 1
        return [(label, total, count[label]) for label, total in seconds.most_common()]


def main(args: list[str]) -> None:
    poller = Poller()
    poller.start()
    started = time.monotonic()
    workers = os.environ.get("TEST_WORKERS", "2")
    command = [str(REPO_ROOT / ".venv" / "bin" / "pytest"), "-n", workers, "--dist", "loadgroup",
               "-p", "no:cacheprovider", *args]  # fmt: skip
    done = subprocess.run(command, cwd=REPO_ROOT, check=False)
    wall = time.monotonic() - started
    poller.stop()
    rows = poller.table()
    total = sum(seconds for _, seconds, _ in rows)
    print(f"\npytest exit {done.returncode}; wall {wall:.0f} s; CPU {total:.0f} s "
          f"({total / wall:.2f} cores of {os.cpu_count()})")  # fmt: skip
    print(f"{'CPU s':>8} {'share':>6} {'processes':>9}  what")
    for label, seconds, processes in rows[:30]:
        print(f"{seconds:8.1f} {seconds / total:6.1%} {processes:9d}  {label}")


if __name__ == "__main__":
    main(sys.argv[1:])
