"""Collect a shadow's evidence from stable's pods into the artifact store.

Stable keeps each disagreement (the mirrored request and both answers, as ``.npz``) in memory
and serves them at ``/v2/models/<model>/shadow/evidence``; it has no credentials to write
anywhere. The operator reads them with byte caps, checks that each one is what the runtime
writes (an ``.npz`` of plain arrays, no pickles, only the expected names, a bounded size) and
only then writes it under the namespace's own prefix of the store::

    <store>/<namespace>/.shadow/<deployment>/<candidate>/<id>.npz

Everything read here comes from a tenant's pod, so nothing is trusted: an index entry that does
not parse, an id that is not 16 hex digits, a file over its cap or an array of objects is
skipped with the reason logged, and never stops the analysis.
"""

from __future__ import annotations

import io
import json
import logging
import re
import urllib.error
import urllib.request
import zipfile
from typing import Any

import numpy as np

from modeldeploy.artifacts.store import StoreError, open_store

log = logging.getLogger(__name__)

INDEX_MAX_BYTES = 64 * 1024
"""Largest evidence index read: 20 entries of a few dozen bytes each, with room."""
FILE_MAX_BYTES = 8 * 1024 * 1024
"""Largest evidence file read (the runtime keeps none larger)."""
EVIDENCE_ID = re.compile(r"^[0-9a-f]{16}$")
ARRAY_NAME = re.compile(r"^(request|request_header_length|(input|stable|candidate)/[^/]{1,256})$")
MAX_ARRAYS = 256


def evidence_path(deployment: str, candidate: str, evidence_id: str) -> str:
    return f".shadow/{deployment}/{candidate}/{evidence_id}.npz"


def _get(url: str, cap: int, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        data: bytes = reply.read(cap + 1)
    if len(data) > cap:
        raise ValueError(f"{url}: over {cap} bytes; not read")
    return data


def check_evidence(data: bytes) -> None:
    """``ValueError`` unless ``data`` is an .npz as the runtime writes it: plain numeric
    arrays under the expected names, nothing pickled."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if len(members) > MAX_ARRAYS:
                raise ValueError(f"{len(members)} arrays, more than {MAX_ARRAYS}")
            if sum(m.file_size for m in members) > 4 * FILE_MAX_BYTES:
                raise ValueError("expands to more than its cap")  # a zip bomb is not evidence
        kept = np.load(io.BytesIO(data), allow_pickle=False)
        for name in kept.files:
            if not ARRAY_NAME.match(name):
                raise ValueError(f"unexpected array {name!r}")
            if kept[name].dtype.kind not in "biuf":
                raise ValueError(f"array {name!r} is {kept[name].dtype}, not numeric")
        if "request" not in kept.files:
            raise ValueError("no request")
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        raise ValueError(f"not shadow evidence: {err}") from err


def collect(
    stable_url: str,
    model: str,
    store_uri: str,
    deployment: str,
    candidate: str,
    kept: tuple[str, ...],
    limit: int,
    timeout: float,
) -> tuple[str, ...]:
    """Every evidence file kept for ``candidate``: ``kept``, plus what stable's pod (the one
    ``stable_url`` reached) holds beyond it, up to ``limit`` in all."""
    found = list(kept)
    if len(found) >= limit:
        return tuple(found)
    base = f"{stable_url.rstrip('/')}/v2/models/{model}/shadow/evidence"
    try:
        index: Any = json.loads(_get(base, INDEX_MAX_BYTES, timeout))
        entries = index["evidence"]
        if not isinstance(entries, list):
            raise TypeError("evidence is not a list")
    except (OSError, ValueError, KeyError, TypeError, urllib.error.URLError) as err:
        log.warning("shadow evidence of %s at %s: %s", deployment, base, err)
        return tuple(found)
    try:
        store = open_store(store_uri)
    except StoreError as err:
        log.warning("shadow evidence of %s: %s", deployment, err)
        return tuple(found)
    for entry in entries[:64]:
        if len(found) >= limit:
            break
        evidence_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(evidence_id, str) or not EVIDENCE_ID.match(evidence_id):
            log.warning("shadow evidence of %s: entry %r skipped", deployment, entry)
            continue
        if entry.get("candidate") != candidate:
            continue
        path = evidence_path(deployment, candidate, evidence_id)
        if any(uri.endswith("/" + path) for uri in found):
            continue
        try:
            data = _get(f"{base}/{evidence_id}", FILE_MAX_BYTES, timeout)
            check_evidence(data)
            found.append(store.put(path, data))
        except (OSError, ValueError, StoreError, urllib.error.URLError) as err:
            log.warning("shadow evidence %s of %s skipped: %s", evidence_id, deployment, err)
    return tuple(found)
