"""docs/install.md's table of tested versions is what this run tests with: the Go modules the
envtest binaries are built from, the CRD versions, Prometheus's own answer and the Python packages
installed (pinned by hack/constraints.txt). A stale table fails here, in CI."""

from __future__ import annotations

import subprocess
import sys

from tests.support import Assets
from tests.support.controlplane import REPO_ROOT


def test_the_documented_tested_versions_are_the_ones_this_run_uses() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "hack" / "compat.py"), "--check",
         "--bin", str(Assets.provide().bin_dir)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
