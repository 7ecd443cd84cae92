"""Where artifacts live: a folder (a mounted PVC) or S3-compatible object storage, under a
content address, published atomically.

Layout under the store, for ModelDeployment ``resnet50`` in namespace ``vision``::

    <store>/vision/<resnet50-ab12…>/resnet50/config.pbtxt       Triton model configuration
    <store>/vision/<resnet50-ab12…>/resnet50/1/model.onnx       the verified graph
    <store>/vision/<resnet50-ab12…>/resnet50/golden.npz         golden inputs/outputs
    <store>/vision/<resnet50-ab12…>/resnet50/labels.txt         class labels, when declared
    <store>/vision/<resnet50-ab12…>/resnet50/modeldeploy.json   the manifest, written last

Every namespace has its own prefix (:func:`tenant_store`): the operator's staging Jobs only
ever publish a namespace's artifacts under that namespace's prefix, so no tenant can plant or
overwrite another's. The folder name is a digest of the source bytes and every option that
changes the graph, so the same request finds the same folder, and a folder whose manifest
exists is complete (and is still verified before it is used: ``modeldeploy.staging.publish``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from modeldeploy.artifacts.locations import local_path
from modeldeploy.artifacts.manifest import (
    MANIFEST,
    MANIFEST_MAX_BYTES,
    ArtifactError,
    sha256_file,
)

OWNERS = ".owners"
"""Beside the artifacts: ``.owners/<key>/<namespace>.<name>`` marks each ModelDeployment that
uses an artifact. Deleting a ModelDeployment removes its marks and only the artifacts left with
none; artifacts without any mark (staged by hand) are never deleted."""


class StoreError(RuntimeError):
    """The artifact store could not be read or written (staging reports it as
    ``DestinationUnavailable``)."""


def tenant_store(store: str, namespace: str) -> str:
    """The prefix of ``store`` that holds namespace ``namespace``'s artifacts: what every
    staging Job, clean-up Job and analysis of a ModelDeployment in ``namespace`` is given."""
    return f"{store.rstrip('/')}/{namespace}"


def content_key(name: str, digest: str, options: dict[str, Any]) -> str:
    """``<name>-<20 hex>`` from the source digest and the options that shape the artifact."""
    canonical = json.dumps({"name": name, "digest": digest, "options": options}, sort_keys=True)
    return f"{name}-{hashlib.sha256(canonical.encode()).hexdigest()[:20]}"


class ArtifactStore(Protocol):
    """Where artifacts live: a folder (a mounted PVC) or S3-compatible object storage."""

    def uri(self, key: str) -> str:
        """The storageUri KServe gets for the artifact."""

    def manifest(self, key: str, name: str) -> dict[str, Any] | None:
        """The manifest of a complete artifact at ``key``, or None."""

    def read(self, key: str, path: str, limit: int = MANIFEST_MAX_BYTES) -> bytes | None:
        """A file of the artifact at ``key`` (``<name>/golden.npz``), or None when absent;
        :class:`StoreError` when it is larger than ``limit`` bytes (never read whole)."""

    def files(self, key: str) -> dict[str, int] | None:
        """Every file of the artifact at ``key`` (path under the key → size), or None when
        nothing is there; :class:`ArtifactError` for anything that is not a plain file."""

    def sha256(self, key: str, path: str) -> str:
        """``sha256:<hex>`` of one file of the artifact, read as a stream."""

    def publish(self, key: str, staged: Path, replace: bool = False) -> None:
        """Make ``staged`` (a folder) the artifact at ``key``, all or nothing; with ``replace``,
        whatever is at ``key`` now goes (an artifact that failed verification)."""

    def put(self, path: str, data: bytes) -> str:
        """Write ``data`` at ``path`` under the store (outside every artifact, e.g. a shadow's
        evidence), whole or not at all; its URI."""

    def add_owner(self, key: str, owner: str) -> None:
        """Record that ``owner`` (``namespace.name``) uses the artifact at ``key``."""

    def release(self, name: str, owner: str) -> list[str]:
        """Drop ``owner``'s marks on the artifacts of ModelDeployment ``name``; delete and return
        the keys no one else marks."""


@dataclass(frozen=True)
class FolderStore:
    """A filesystem folder: the artifact appears by one atomic rename of a finished folder."""

    root: Path
    base_uri: str

    def uri(self, key: str) -> str:
        return f"{self.base_uri.rstrip('/')}/{key}"

    def manifest(self, key: str, name: str) -> dict[str, Any] | None:
        data = self.read(key, f"{name}/{MANIFEST}")
        try:
            manifest: dict[str, Any] | None = json.loads(data) if data is not None else None
        except ValueError:
            return None
        return manifest

    def read(self, key: str, path: str, limit: int = MANIFEST_MAX_BYTES) -> bytes | None:
        try:
            with (self.root / key / path).open("rb") as f:
                data = f.read(limit + 1)
        except OSError:
            return None
        if len(data) > limit:
            raise StoreError(f"{self.uri(key)}/{path} is larger than {limit} bytes")
        return data

    def files(self, key: str) -> dict[str, int] | None:
        top = self.root / key
        if not top.is_dir() or top.is_symlink():
            return None
        found: dict[str, int] = {}
        for folder, dirs, names in os.walk(top, followlinks=False):
            for entry in [*dirs, *names]:
                path = Path(folder) / entry
                relative = path.relative_to(top).as_posix()
                mode = path.lstat().st_mode
                if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                    raise ArtifactError(f"{self.uri(key)}/{relative} is not a plain file or folder")
                if stat.S_ISREG(mode):
                    found[relative] = path.lstat().st_size
        return found

    def sha256(self, key: str, path: str) -> str:
        try:
            return sha256_file(self.root / key / path)
        except OSError as err:
            raise StoreError(f"cannot read {self.uri(key)}/{path}: {err}") from err

    def publish(self, key: str, staged: Path, replace: bool = False) -> None:
        target = self.root / key
        temporary = self.root / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        discarded = self.root / f".discarded-{key}-{uuid.uuid4().hex[:8]}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.copytree(staged, temporary, symlinks=True)
            if replace and target.exists():
                os.rename(target, discarded)
            os.rename(temporary, target)
        except OSError as err:
            shutil.rmtree(temporary, ignore_errors=True)
            if target.exists() and not replace:
                return  # only a rename creates it: a concurrent run published first
            raise StoreError(f"cannot write artifact to {self.root}: {err}") from err
        finally:
            shutil.rmtree(discarded, ignore_errors=True)

    def put(self, path: str, data: bytes) -> str:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        temporary.write_bytes(data)
        os.replace(temporary, target)
        return self.uri(path)

    def add_owner(self, key: str, owner: str) -> None:
        marks = self.root / OWNERS / key
        try:
            marks.mkdir(parents=True, exist_ok=True)
            (marks / owner).touch()
        except OSError as err:
            raise StoreError(f"cannot mark artifact {key} in {self.root}: {err}") from err

    def release(self, name: str, owner: str) -> list[str]:
        deleted = []
        for marks in sorted((self.root / OWNERS).glob(f"{name}-*")):
            if not (marks / owner).exists():
                continue
            (marks / owner).unlink()
            if any(marks.iterdir()):
                continue
            shutil.rmtree(self.root / marks.name, ignore_errors=True)
            marks.rmdir()
            deleted.append(marks.name)
        return deleted


@dataclass(frozen=True)
class S3Store:
    """An S3 bucket and prefix. Every file is uploaded before the manifest, so an interrupted
    upload leaves no manifest and is never taken for a complete artifact.

    The endpoint and credentials come from the environment as for KServe and boto3:
    ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``.
    """

    bucket: str
    prefix: str

    def _client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)

    def _key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def manifest(self, key: str, name: str) -> dict[str, Any] | None:
        data = self.read(key, f"{name}/{MANIFEST}")
        if data is None:
            return None
        try:
            manifest: dict[str, Any] = json.loads(data)
        except ValueError as err:
            raise StoreError(f"{self.uri(key)}/{name}/{MANIFEST}: not JSON: {err}") from err
        return manifest

    def read(self, key: str, path: str, limit: int = MANIFEST_MAX_BYTES) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            body = self._client().get_object(Bucket=self.bucket, Key=self._key(key, path))["Body"]
            data: bytes = body.read(limit + 1)
            body.close()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise StoreError(f"cannot read {self.uri(key)}/{path}: {err}") from err
        except Exception as err:
            raise StoreError(f"cannot reach s3://{self.bucket}: {err}") from err
        if len(data) > limit:
            raise StoreError(f"{self.uri(key)}/{path} is larger than {limit} bytes")
        return data

    def files(self, key: str) -> dict[str, int] | None:
        prefix = self._key(key) + "/"
        found: dict[str, int] = {}
        try:
            for page in (
                self._client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=self.bucket, Prefix=prefix)
            ):
                for item in page.get("Contents", []):
                    found[item["Key"].removeprefix(prefix)] = int(item["Size"])
        except Exception as err:
            raise StoreError(f"cannot list {self.uri(key)}: {err}") from err
        return found or None

    def sha256(self, key: str, path: str) -> str:
        digest = hashlib.sha256()
        try:
            body = self._client().get_object(Bucket=self.bucket, Key=self._key(key, path))["Body"]
            for block in iter(lambda: body.read(1 << 20), b""):
                digest.update(block)
            body.close()
        except Exception as err:
            raise StoreError(f"cannot read {self.uri(key)}/{path}: {err}") from err
        return f"sha256:{digest.hexdigest()}"

    def publish(self, key: str, staged: Path, replace: bool = False) -> None:
        files = sorted(p for p in staged.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == MANIFEST)  # the manifest goes last
        client = self._client()
        try:
            if replace:  # the manifest first, so that nothing half-replaced looks complete
                old = sorted(self._list(client, self._key(key) + "/"))
                old.sort(key=lambda k: not k.endswith(f"/{MANIFEST}"))
                for obj in old:
                    client.delete_object(Bucket=self.bucket, Key=obj)
            for path in files:
                client.upload_file(
                    str(path), self.bucket, self._key(key, str(path.relative_to(staged)))
                )
        except Exception as err:
            raise StoreError(f"cannot upload artifact to {self.uri(key)}: {err}") from err

    def put(self, path: str, data: bytes) -> str:
        try:
            self._client().put_object(Bucket=self.bucket, Key=self._key(path), Body=data)
        except Exception as err:
            raise StoreError(f"cannot write {self.uri(path)}: {err}") from err
        return self.uri(path)

    def add_owner(self, key: str, owner: str) -> None:
        try:
            self._client().put_object(
                Bucket=self.bucket, Key=self._key(OWNERS, key, owner), Body=b""
            )
        except Exception as err:
            raise StoreError(f"cannot mark artifact {self.uri(key)}: {err}") from err

    def _list(self, client: Any, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    def release(self, name: str, owner: str) -> list[str]:
        client = self._client()
        deleted = []
        try:
            marks = self._list(client, self._key(OWNERS, f"{name}-"))
            for mark in marks:
                if not mark.endswith(f"/{owner}"):
                    continue
                key = mark.split("/")[-2]
                client.delete_object(Bucket=self.bucket, Key=mark)
                if self._list(client, self._key(OWNERS, key) + "/"):
                    continue
                for obj in self._list(client, self._key(key) + "/"):
                    client.delete_object(Bucket=self.bucket, Key=obj)
                deleted.append(key)
        except StoreError:
            raise
        except Exception as err:
            raise StoreError(f"cannot release artifacts in s3://{self.bucket}: {err}") from err
        return deleted


def open_store(destination: str) -> ArtifactStore:
    """``s3://bucket/prefix``, ``pvc://claim/prefix`` (mounted under $MODELDEPLOY_PVC_ROOT),
    ``file:///path`` or a plain path."""
    parsed = urlparse(destination)
    if parsed.scheme == "s3":
        return S3Store(parsed.netloc, parsed.path)
    local = local_path(destination)
    if local is not None:
        return FolderStore(local, destination)
    if parsed.scheme:
        raise StoreError(
            f"unsupported artifact store {destination!r}: use s3://, pvc://, file:// or a path"
        )
    root = Path(destination).resolve()
    return FolderStore(root, f"file://{root}")
