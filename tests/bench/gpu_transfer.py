"""Carry a benchmark bundle to the lent GPU machine in parts, and put it back together there.

One device call carries at most 64 MiB, and the ``onnxruntime-gpu`` wheel alone is 244 MiB. So
the bundle (the wheel, the staged artifacts, the eager weights) is one tar file, split here
into parts of at most ``--part-mib``; each device call carries one part and appends it under
``/tmp`` there, while the machine stays warm between back-to-back calls. The last call joins
the parts, checks every digest, unpacks, installs the wheel into a folder of its own, and runs
the benchmark. ``calls`` prints those device calls, one per line, ready to paste.

Only the standard library is used: this runs on the device machine, where nothing of ours is
installed.

    python -m tests.bench.gpu_transfer split BUNDLE.tar .gpu      # here
    python -m tests.bench.gpu_transfer calls .gpu                  # here: the device calls
    python -m tests.bench.gpu_transfer receive .gpu/part-000 /tmp/gpu   # there, one per part
    python -m tests.bench.gpu_transfer join .gpu/parts.json /tmp/gpu    # there, last
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

INDEX = "parts.json"
MIB = 1 << 20
CALL_LIMIT_MIB = 64  # what one device call may carry, working tree included


class TransferError(RuntimeError):
    """A part is missing or not what the index says: the message says which and what to redo."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def split(bundle: Path, into: Path, part_bytes: int) -> dict[str, object]:
    """Cut ``bundle`` into ``part-NNN`` files under ``into`` and write the index beside them."""
    if part_bytes <= 0 or part_bytes > (CALL_LIMIT_MIB - 2) * MIB:
        raise TransferError(f"part size {part_bytes} B: must be 1 B to {CALL_LIMIT_MIB - 2} MiB")
    into.mkdir(parents=True, exist_ok=True)
    for old in into.glob("part-*"):
        old.unlink()
    parts = []
    with bundle.open("rb") as src:
        while chunk := src.read(part_bytes):
            name = f"part-{len(parts):03d}"
            (into / name).write_bytes(chunk)
            parts.append(
                {"name": name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()}
            )
    index: dict[str, object] = {
        "bundle": bundle.name,
        "bytes": bundle.stat().st_size,
        "sha256": sha256(bundle),
        "parts": parts,
    }
    (into / INDEX).write_text(json.dumps(index, indent=1) + "\n")
    return index


def receive(part: Path, remote: Path) -> Path:
    """Copy one carried part under ``remote`` (``/tmp`` there lasts while the machine is warm)."""
    remote.mkdir(parents=True, exist_ok=True)
    target = remote / part.name
    shutil.copyfile(part, target)
    return target


def _check_parts(index: dict[str, object], remote: Path) -> list[Path]:
    parts = index["parts"]
    assert isinstance(parts, list)
    missing = [p["name"] for p in parts if not (remote / p["name"]).exists()]
    if missing:
        raise TransferError(
            f"{len(missing)} of {len(parts)} parts missing under {remote} ({', '.join(missing)}): "
            "the device machine was given back between calls (it stays warm 30 s); "
            "make every part call again, back to back"
        )
    for p in parts:
        got = sha256(remote / p["name"])
        if got != p["sha256"]:
            raise TransferError(
                f"{p['name']}: sha256 {got[:12]}…, the index says {p['sha256'][:12]}…: "
                "carry that part again"
            )
    return [remote / p["name"] for p in parts]


def join(index_file: Path, remote: Path, install: bool = True) -> Path:
    """Join the parts, check the whole, unpack into ``remote/bundle`` and install the wheels
    found there into ``remote/site``. Returns the bundle folder."""
    index = json.loads(index_file.read_text())
    paths = _check_parts(index, remote)
    whole = remote / str(index["bundle"])
    with whole.open("wb") as out:
        for path in paths:
            with path.open("rb") as src:
                shutil.copyfileobj(src, out, 4 * MIB)
    if (got := sha256(whole)) != index["sha256"]:
        raise TransferError(f"{whole.name}: sha256 {got[:12]}… after joining, index differs")
    bundle = remote / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    with tarfile.open(whole) as tar:
        tar.extractall(remote, filter="data")  # no links out, no absolute paths, no devices
    whole.unlink()  # the parts stay, so a rerun needs no transfer
    wheels = sorted((bundle / "wheels").glob("*.whl"))
    if wheels and install:
        site = remote / "site"
        shutil.rmtree(site, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
            + ["--no-compile", "--no-cache-dir", "--target", str(site)]
            + [str(w) for w in wheels],
            check=True,
        )
    return bundle


@dataclass(frozen=True)
class DeviceCall:
    """One call of the device tool: a command and the ignored paths it carries."""

    command: str
    carry: tuple[str, ...]
    timeout_s: int

    def to_json(self) -> dict[str, object]:
        return {"command": self.command, "carry": list(self.carry), "timeout_s": self.timeout_s}


def calls(
    local: Path,
    remote: str = "/tmp/gpu",
    python: str = "python3",
    bench_args: str = "",
    bench_timeout_s: int = 420,
    carried_as: str | None = None,
) -> list[DeviceCall]:
    """The device calls that carry every part, then the one that joins and benchmarks.

    ``local`` is relative to the repository root (it must be git-ignored, so that only the
    carried part of it travels), or ``carried_as`` names it so. The bench call carries only the
    index, so a rerun after a failure costs no transfer while the machine is still warm."""
    index = json.loads((local / INDEX).read_text())
    local = Path(carried_as or local)
    q = shlex.quote
    result = []
    for p in index["parts"]:
        part = f"{local}/{p['name']}"
        result.append(
            DeviceCall(
                f"{python} -m tests.bench.gpu_transfer receive {q(part)} {q(remote)} && ls -l {q(remote)}",
                (part,),
                120,
            )
        )
    bench = (
        f"set -o pipefail; {python} -m tests.bench.gpu_transfer join {q(f'{local}/{INDEX}')} {q(remote)} && "
        f"PYTHONPATH={q(remote + '/site')}:operator${{PYTHONPATH:+:$PYTHONPATH}} PYTHONUNBUFFERED=1 "
        f'{python} -m tests.bench.bench_gpu --bundle {q(remote + "/bundle")} --out "$OUT" {bench_args}'
        ' 2>&1 | tee "$OUT/bench-gpu.log"'
    )
    result.append(DeviceCall(bench, (f"{local}/{INDEX}",), bench_timeout_s))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.gpu_transfer")
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("split", help="cut a bundle into parts plus an index")
    p.add_argument("bundle", type=Path)
    p.add_argument("into", type=Path)
    p.add_argument("--part-mib", type=float, default=60)
    p = sub.add_parser("calls", help="print the device calls as JSON lines")
    p.add_argument("local", type=Path)
    p.add_argument("--remote", default="/tmp/gpu")
    p.add_argument("--bench-args", default="")
    p = sub.add_parser("receive", help="(on the device) keep one carried part")
    p.add_argument("part", type=Path)
    p.add_argument("remote", type=Path)
    p = sub.add_parser("join", help="(on the device) check, join, unpack, install the wheel")
    p.add_argument("index", type=Path)
    p.add_argument("remote", type=Path)
    p.add_argument("--no-install", action="store_true", help="leave the wheels uninstalled")
    args = parser.parse_args(argv)
    try:
        if args.verb == "split":
            index = split(args.bundle, args.into, int(args.part_mib * MIB))
            print(f"{len(index['parts'])} parts of at most {args.part_mib} MiB in {args.into}")  # type: ignore[arg-type]
        elif args.verb == "calls":
            for call in calls(args.local, args.remote, bench_args=args.bench_args):
                print(json.dumps(call.to_json()))
        elif args.verb == "receive":
            print(f"kept {receive(args.part, args.remote)}")
        else:
            print(f"unpacked {join(args.index, args.remote, not args.no_install)}")
    except TransferError as err:
        print(f"gpu_transfer: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
