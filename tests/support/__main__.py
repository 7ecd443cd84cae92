"""``python -m tests.support up|down``: a control plane for people, behind make envtest-up."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from tests.support.controlplane import (
    REPO_ROOT,
    Assets,
    ControlPlane,
    ControlPlaneError,
    stop_detached,
)

DEFAULT_DIR = REPO_ROOT / ".cache" / "envtest" / "cluster"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support")
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state folder")
    args = parser.parse_args(argv)
    if args.action == "down":
        stopped = stop_detached(args.dir)
        shutil.rmtree(args.dir, ignore_errors=True)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    if (args.dir / "kube-apiserver.pid").exists():
        print(f"already up; run `make envtest-down` first. KUBECONFIG={args.dir / 'kubeconfig'}")
        return 1
    shutil.rmtree(args.dir, ignore_errors=True)
    plane = ControlPlane(args.dir, Assets.provide(), detached=True)
    try:
        plane.start()
    except ControlPlaneError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"control plane up at {plane.url}")
    print(f"export KUBECONFIG={plane.kubeconfig}")
    print(f"export PATH={plane.assets.bin_dir}:$PATH   # the pinned kubectl and helm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
