"""Fetch the source model with kserve-storage, so a URI means exactly what it means to KServe.

Archives (.tar, .tar.gz, .tgz, .zip) are checked entry by entry before anything is unpacked: an
entry whose path would land outside the destination (``../``, an absolute path, or a link that
points out) fails staging instead of being written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from modeldeploy.staging.errors import SourceUnavailableError, UnsafeArchiveError

MODEL_SUFFIXES = (".pt", ".pth", ".pt2", ".ts", ".torchscript", ".bin", ".onnx")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
PVC_ROOT_ENV = "MODELDEPLOY_PVC_ROOT"
"""Where the staging Job mounts ``pvc://<claim>/`` volumes: ``$MODELDEPLOY_PVC_ROOT/<claim>``."""


@dataclass(frozen=True)
class Source:
    """A fetched model file and the sha256 of its bytes."""

    path: Path
    digest: str  # "sha256:<hex>"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _escapes(member: str) -> bool:
    path = PurePosixPath(member.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts


def check_archive(path: Path) -> None:
    """Refuse an archive with any entry that would be written outside its destination."""
    if path.name.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            bad = [n for n in archive.namelist() if _escapes(n)]
    else:
        with tarfile.open(path) as archive:
            bad = [
                m.name
                for m in archive.getmembers()
                if _escapes(m.name)
                or (
                    (m.issym() or m.islnk())
                    and _escapes(os.path.join(os.path.dirname(m.name), m.linkname))
                )
                or m.isdev()
            ]
    if bad:
        raise UnsafeArchiveError(
            f"archive {path.name} has entries that would land outside the destination: "
            + ", ".join(repr(b) for b in bad[:5])
        )


def _unpack(path: Path, into: Path) -> None:
    check_archive(path)
    if path.name.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            archive.extractall(into)
    else:
        with tarfile.open(path) as archive:
            archive.extractall(into, filter="data")


def local_path(uri: str) -> Path | None:
    """Where a ``file://`` or ``pvc://`` URI is on this machine; None for remote URIs."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "pvc":
        root = Path(os.environ.get(PVC_ROOT_ENV, "/mnt/pvc"))
        return root / parsed.netloc / parsed.path.lstrip("/")
    return None


def _download(uri: str, into: Path) -> Path:
    """Remote URIs through kserve-storage.

    kserve-storage unpacks a downloaded archive itself: tar with the ``data`` filter, which
    refuses escaping entries, and zip with ``extractall``, which strips ``..`` and leading ``/``.
    A refusal surfaces here as an UnsafeArchiveError rather than its generic "not valid" message.
    """
    from kserve_storage import Storage

    if not PurePosixPath(urlparse(uri).path).name:
        raise SourceUnavailableError(f"{uri}: the URI names no file")
    raw = into / "download"
    try:
        return Path(Storage.download(uri, str(raw)))
    except Exception as err:  # kserve-storage raises bare Exceptions of many kinds
        cause: BaseException | None = err
        while cause is not None:
            if isinstance(cause, tarfile.FilterError):
                raise UnsafeArchiveError(f"archive at {uri} is unsafe: {cause}") from err
            cause = cause.__cause__
        raise SourceUnavailableError(f"cannot fetch {uri}: {err}") from err


def _find_model(folder: Path, uri: str) -> Path:
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(MODEL_SUFFIXES)
    )
    if len(files) != 1:
        names = ", ".join(str(p.relative_to(folder)) for p in files) or "none"
        raise SourceUnavailableError(
            f"{uri}: expected exactly one model file ({', '.join(MODEL_SUFFIXES)}), found {names}"
        )
    return files[0]


def fetch(uri: str, workdir: Path) -> Source:
    """Bring the model at ``uri`` into ``workdir``; returns the model file and its digest."""
    workdir.mkdir(parents=True, exist_ok=True)
    local = local_path(uri)
    if local is not None:
        if not local.exists():
            raise SourceUnavailableError(f"{uri}: {local} does not exist")
        fetched = local
    else:
        fetched = _download(uri, workdir)
    if fetched.is_dir():
        path = _find_model(fetched, uri)
    elif _is_archive(fetched.name):
        unpacked = workdir / "unpacked"
        shutil.rmtree(unpacked, ignore_errors=True)
        _unpack(fetched, unpacked)
        path = _find_model(unpacked, uri)
    else:
        path = fetched
    return Source(path=path, digest=sha256_file(path))
