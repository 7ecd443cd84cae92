"""Which source an image was built from: a digest of every file `make images` copies in.

`make images` records it per image in ``.cache/images/built.json``; the test cluster's executor
runs a container from an image only when the image's recorded digest is this checkout's (else a
local process), so a test never passes on an image built from older code. Standard library
only: the build script runs it as ``python3 tests/support/image_source.py``,
before any virtual environment exists.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("operator", "images", "runtimes", "pyproject.toml", ".dockerignore")
BUILT = ROOT / ".cache" / "images" / "built.json"


def source_digest(root: Path = ROOT) -> str:
    """sha256 over the tracked and untracked-but-not-ignored files the images are built from."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", *SOURCES],
        cwd=root, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    digest = hashlib.sha256()
    for name in sorted(n for n in listed if n):
        path = root / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def built_from_here(tag: str, built: Path = BUILT) -> bool:
    """Whether this checkout's `make images` built ``tag`` from the source as it is now."""
    try:
        records = json.loads(built.read_text())
    except (OSError, ValueError):
        return False
    recorded = {r.get("tag"): r.get("source") for r in records.values() if isinstance(r, dict)}
    return tag in recorded and recorded[tag] == source_digest()


if __name__ == "__main__":
    print(source_digest(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT))
