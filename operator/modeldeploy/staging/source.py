"""Fetch the source model with kserve-storage, so a URI means exactly what it means to KServe.

Archives (.tar, .tar.gz, .tgz, .zip) are checked entry by entry before anything is unpacked: an
entry whose path would land outside the destination (``../``, an absolute path, or a link that
points out) fails staging instead of being written.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from modeldeploy.artifacts.locations import local_path, pvc_root
from modeldeploy.artifacts.manifest import sha256_file
from modeldeploy.staging.errors import (
    SourceUnavailableError,
    SourceUnreachableError,
    UnsafeArchiveError,
)

MODEL_SUFFIXES = (".pt", ".pth", ".pt2", ".ts", ".torchscript", ".bin", ".onnx")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
ARCHIVE_MAX_ENTRIES, ARCHIVE_MAX_ENTRIES_ENV = 10_000, "MODELDEPLOY_ARCHIVE_MAX_ENTRIES"
ARCHIVE_MAX_BYTES, ARCHIVE_MAX_BYTES_ENV = 16 << 30, "MODELDEPLOY_ARCHIVE_MAX_BYTES"
"""Caps on a local archive, read from its index before anything is unpacked."""
"""Where the staging Job mounts ``pvc://<claim>/`` volumes: ``$MODELDEPLOY_PVC_ROOT/<claim>``."""


@dataclass(frozen=True)
class Source:
    """A fetched model file and the sha256 of its bytes."""

    path: Path
    digest: str  # "sha256:<hex>"


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _escapes(member: str) -> bool:
    path = PurePosixPath(member.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts


def _limit(variable: str, default: int) -> int:
    return int(os.environ.get(variable) or default)


def _refused_by_data_filter(member: tarfile.TarInfo) -> bool:
    try:
        tarfile.data_filter(member, "/destination")
    except tarfile.FilterError:
        return True
    return False


def check_archive(path: Path) -> None:
    """Refuse an archive with any entry that would be written outside its destination, with
    more entries than ``MODELDEPLOY_ARCHIVE_MAX_ENTRIES`` or more bytes unpacked than
    ``MODELDEPLOY_ARCHIVE_MAX_BYTES``: both read from the archive's index, before unpacking."""
    max_entries = _limit(ARCHIVE_MAX_ENTRIES_ENV, ARCHIVE_MAX_ENTRIES)
    max_bytes = _limit(ARCHIVE_MAX_BYTES_ENV, ARCHIVE_MAX_BYTES)
    truncated: tarfile.ReadError | None = None
    if path.name.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            bad = [e.filename for e in entries if _escapes(e.filename)]
            sizes = [e.file_size for e in entries]
    else:
        with tarfile.open(path) as archive:
            members: list[tarfile.TarInfo] = []
            try:
                for member in archive:  # streamed: refused before it is all in memory
                    members.append(member)
                    if len(members) > max_entries or sum(m.size for m in members) > max_bytes:
                        break
            except tarfile.ReadError as err:  # the data ends before what the headers declare
                truncated = err
            # The standard library's "data" filter, which extraction applies too, judges each
            # entry: absolute or escaping names and links, device files.
            bad = [m.name for m in members if _refused_by_data_filter(m)]
            sizes = [m.size for m in members]
    if len(sizes) > max_entries:
        raise UnsafeArchiveError(
            f"archive {path.name} has more than {max_entries} entries, the limit "
            f"({ARCHIVE_MAX_ENTRIES_ENV})"
        )
    if sum(sizes) > max_bytes:
        raise UnsafeArchiveError(
            f"archive {path.name} unpacks to {sum(sizes)} bytes; the limit is {max_bytes} "
            f"({ARCHIVE_MAX_BYTES_ENV})"
        )
    if bad:
        raise UnsafeArchiveError(
            f"archive {path.name} has entries that would land outside the destination: "
            + ", ".join(repr(b) for b in bad[:5])
        )
    if truncated is not None:
        raise SourceUnavailableError(f"archive {path.name} is truncated: {truncated}")


def _unpack(path: Path, into: Path) -> None:
    check_archive(path)
    if path.name.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            archive.extractall(into)
    else:
        with tarfile.open(path) as archive:
            archive.extractall(into, filter="data")


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
        if transient(err):
            raise SourceUnreachableError(f"cannot fetch {uri} (will be retried): {err}") from err
        raise SourceUnavailableError(f"cannot fetch {uri}: {err}") from err


_TRANSIENT_STATUS = re.compile(r"status code (5\d\d|429|408)\b")
_TRANSIENT_TYPES = {
    "ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "ProtocolError",
    "NewConnectionError", "MaxRetryError", "EndpointConnectionError", "ConnectTimeoutError",
    "ReadTimeoutError", "ConnectionClosedError", "ServiceUnavailable", "TooManyRequests",
}  # fmt: skip
_TRANSIENT_CODES = {"SlowDown", "Throttling", "RequestTimeout", "InternalError", "ServiceUnavailable", "503", "500"}  # fmt: skip


def transient(err: BaseException) -> bool:
    """Whether another attempt might fetch it: a network failure, a timeout, HTTP 5xx, 429 or
    408, or S3 throttling anywhere in the exception's chain. kserve-storage reports HTTP status
    codes only in its message, so that is read too; a 404, 403 or a bad URI is permanent."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, (ConnectionError, TimeoutError)):
            return True
        if type(cause).__name__ in _TRANSIENT_TYPES or _TRANSIENT_STATUS.search(str(cause)):
            return True
        code = getattr(cause, "response", None)
        if isinstance(code, dict) and str(code.get("Error", {}).get("Code")) in _TRANSIENT_CODES:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _no_links(folder: Path, uri: str) -> None:
    """Staging reads only what is in the folder itself: a symbolic link could point anywhere
    in the pod's filesystem (its service-account token, /proc/self/environ)."""
    links = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_symlink())
    if links:
        raise UnsafeArchiveError(f"{uri}: symbolic links are not followed: " + ", ".join(links[:5]))


def _first_link(uri: str, local: Path) -> Path | None:
    """The first symbolic link on the way from a pvc:// claim's mount to ``local`` (or
    ``local`` itself); a link inside a claim could lead out of it. file:// paths on a laptop
    may run through links of the user's own making; in a cluster the operator refuses them."""
    parts = [local]
    if urlparse(uri).scheme == "pvc":
        claim = pvc_root() / urlparse(uri).netloc
        below = local.relative_to(claim).parts
        parts = [claim.joinpath(*below[:n]) for n in range(1, len(below) + 1)]
    return next((p for p in parts if p.is_symlink()), None)


def _find_model(folder: Path, uri: str) -> Path:
    _no_links(folder, uri)
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
        link = _first_link(uri, local)
        if link is not None:
            raise UnsafeArchiveError(f"{uri}: {link} is a symbolic link, which is not followed")
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
