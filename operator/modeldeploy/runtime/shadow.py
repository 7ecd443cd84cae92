"""The shadow mirror: stable sends a sample of its live requests to a candidate, in the dark,
and compares the candidate's answers with its own.

The client's request is never delayed and never fails because of it. ``offer`` runs after stable
has its own answer and costs a random number and, when sampled, one task: the request goes out
from that task, on the event loop, while the client's answer is written. At most
``maxInFlight`` mirrored requests are out at once; one sampled beyond that is *dropped*
(counted, never queued), so a slow or dead candidate costs stable a bounded number of sockets
and nothing else. Stable compares with the answer it already computed, so a mirrored request
costs stable no inference.

What to mirror comes from the shadow ConfigMap's file (``api/mirror.py``), re-read when it
changes (looked at once a second at most): the operator switches a shadow on and off without
restarting stable. Only the pod whose revision the file names as ``source`` mirrors.

Outcomes (``modeldeploy_shadow_requests_total{candidate,outcome}``): ``agree``, ``disagree``,
``error`` (the candidate refused, failed, answered something malformed or nothing within the
timeout) and ``dropped``. A disagreement keeps its evidence, the mirrored request and both
answers as ``.npz``, in memory and bounded, for the operator to collect into the artifact
store; stable needs no credentials to write anywhere.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from modeldeploy.api import mirror
from modeldeploy.artifacts.golden import agree
from modeldeploy.runtime import metrics, protocol

logger = logging.getLogger("modeldeploy.runtime")

RELOAD_SECONDS = 1.0
"""How often, at most, the file's metadata is looked at (on a request, never on a timer)."""
EVIDENCE_MAX_BYTES = 8 * 1024 * 1024
"""Largest evidence file kept: a disagreement on a larger request is counted, not kept."""


class Outcome(StrEnum):
    AGREE = "agree"
    DISAGREE = "disagree"
    ERROR = "error"
    DROPPED = "dropped"


@dataclass(frozen=True)
class Comparison:
    """A candidate's answer against stable's."""

    agree: bool
    max_abs_diff: float | None
    """Largest |candidate - stable| over the outputs compared; None when none could be."""
    why: str = ""


def compare(
    stable: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    atol: float,
    rtol: float,
    classifier: bool,
) -> Comparison:
    """Every output of stable's answer against the candidate's: within ``atol + rtol·|stable|``
    element by element and, for a classifier, the same top-1 class for every row."""
    agreement = agree(candidate, stable, atol, rtol, of="stable")
    reasons = list(agreement.failures)
    compared = [name for name, mine in stable.items()
                if name in candidate and candidate[name].shape == mine.shape]  # fmt: skip
    if classifier:
        for name in compared:
            mine = stable[name]
            if mine.ndim == 2 and mine.shape[1] >= 2:
                moved = int((mine.argmax(axis=1) != candidate[name].argmax(axis=1)).sum())
                if moved:
                    reasons.append(
                        f"output {name!r}: top-1 class differs on {moved} of {len(mine)}"
                    )
    return Comparison(not reasons, agreement.worst if compared else None, "; ".join(reasons))


@dataclass(frozen=True)
class Evidence:
    """One disagreement: the request as mirrored and both answers, as an ``.npz``."""

    id: str
    candidate: str
    at: float
    """Unix time."""
    data: bytes

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "candidate": self.candidate, "at": self.at, "bytes": len(self.data)}


def evidence_npz(
    body: bytes,
    header_length: int,
    stable: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    inputs: list[tuple[str, str, np.ndarray]],
) -> bytes:
    """``request`` (the REST body, replayable as is with ``request_header_length``), the
    numeric inputs as ``input/<name>``, and ``stable/<output>`` and ``candidate/<output>``."""
    arrays: dict[str, np.ndarray] = {
        "request": np.frombuffer(body, dtype=np.uint8),
        "request_header_length": np.array(header_length, dtype=np.int64),
    }
    for name, datatype, array in inputs:
        if datatype in protocol.NUMERIC:
            arrays[f"input/{name}"] = array
    arrays.update({f"stable/{n}": a for n, a in stable.items()})
    arrays.update({f"candidate/{n}": a for n, a in candidate.items()})
    out = io.BytesIO()
    np.savez(out, allow_pickle=False, **arrays)
    return out.getvalue()


class ShadowMirror:
    """Mirrors and compares for one model, as the shadow file says."""

    def __init__(
        self,
        model: str,
        path: Path,
        revision: str | None,
        classifier: bool,
        clock: Callable[[], float] = time.monotonic,
        sample: Callable[[], float] = random.random,
    ) -> None:
        self.model = model
        self.path = path
        self.revision = revision
        self.classifier = classifier
        self.clock = clock
        self.sample = sample
        self._config: mirror.MirrorConfig | None = None
        self._signature: tuple[int, int, int] | None = None
        self._looked_at = -math.inf
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: Any = None
        self._evidence: deque[Evidence] = deque()
        self._worst: dict[str, float] = {}

    # --- the file ------------------------------------------------------------------------
    def config(self) -> mirror.MirrorConfig | None:
        """The shadow to run now, for this pod; None when there is none."""
        now = self.clock()
        if now - self._looked_at < RELOAD_SECONDS:
            return self._config
        self._looked_at = now
        try:
            found = os.stat(self.path)  # follows the kubelet's ..data symlink
            signature = (found.st_mtime_ns, found.st_ino, found.st_size)
        except OSError:
            signature = None
        if signature != self._signature:
            self._signature = signature
            self._load(signature is not None)
        return self._config

    def _load(self, exists: bool) -> None:
        config = None
        if exists:
            try:
                with self.path.open("rb") as file:
                    data = file.read(mirror.MAX_BYTES + 1)
                if len(data) > mirror.MAX_BYTES:
                    raise ValueError(f"{len(data)} bytes, more than {mirror.MAX_BYTES}")
                if data.strip() not in (b"", b"{}"):
                    config = mirror.MirrorConfig.model_validate_json(data)
            except (OSError, ValueError, ValidationError) as err:
                logger.error("%s: shadow file %s ignored: %s", self.model, self.path, err)
                config = None
        if config is not None and self.revision is not None and config.source != self.revision:
            config = None  # another revision's shadow (the candidate mounts the file too)
        if config != self._config:
            self._start(config)

    def _start(self, config: mirror.MirrorConfig | None) -> None:
        previous = self._config
        self._config = config
        if config is None:
            if previous is not None:
                logger.info("%s: shadow of %s off", self.model, previous.candidate)
            return
        if previous is None or previous.candidate != config.candidate:
            self._evidence.clear()
            self._worst[config.candidate] = 0.0
            # Every series from the start at 0: a rate over the first outcomes sees them.
            for outcome in Outcome:
                metrics.SHADOW_REQUESTS.labels(self.model, config.candidate, outcome.value)
            metrics.SHADOW_MAX_ABS_DIFF.labels(self.model, config.candidate).set(0)
        logger.info("%s: mirroring %g%% to %s (%s)", self.model, config.percent, config.candidate,
                    config.url)  # fmt: skip

    # --- the request path ------------------------------------------------------------------
    def offer(self, received: dict[str, np.ndarray], answer: dict[str, np.ndarray]) -> None:
        """Maybe mirror one served request (``received``: its inputs as the model got them,
        images still encoded; ``answer``: the graph's outputs). Returns at once; never raises
        into the request."""
        try:
            config = self.config()
            if config is None or self.sample() * 100 >= config.percent:
                return
            if self._in_flight >= config.max_in_flight:
                self._count(config, Outcome.DROPPED)
                return
            inputs = [(name, protocol.datatype(a), a) for name, a in received.items()]
            task = asyncio.get_running_loop().create_task(self._mirror(config, inputs, answer))
            self._in_flight += 1
        except Exception:  # the shadow must never fail a client's request
            logger.exception("%s: shadow offer", self.model)
            return
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight -= 1

    def _count(self, config: mirror.MirrorConfig, outcome: Outcome) -> None:
        metrics.SHADOW_REQUESTS.labels(self.model, config.candidate, outcome.value).inc()

    async def _mirror(
        self,
        config: mirror.MirrorConfig,
        inputs: list[tuple[str, str, np.ndarray]],
        answer: dict[str, np.ndarray],
    ) -> None:
        started = time.monotonic()
        try:
            body, header_length = protocol.encode_request(inputs, list(answer))
            cap = 2 * sum(a.nbytes for a in answer.values()) + 256 * 1024
            got = await self._post(config, body, header_length, cap)
            theirs = protocol.parse_answer(*got)
        except Exception as err:
            logger.debug("%s: shadow request to %s: %s", self.model, config.candidate, err)
            self._count(config, Outcome.ERROR)
            return
        metrics.SHADOW_LATENCY.labels(self.model, config.candidate).observe(
            time.monotonic() - started
        )
        result = compare(answer, theirs, config.atol, config.rtol, self.classifier)
        if result.max_abs_diff is not None:
            metrics.SHADOW_ABS_DIFF.labels(self.model, config.candidate).observe(
                result.max_abs_diff
            )
            worst = max(self._worst.get(config.candidate, 0.0), result.max_abs_diff)
            self._worst[config.candidate] = worst
            metrics.SHADOW_MAX_ABS_DIFF.labels(self.model, config.candidate).set(worst)
        self._count(config, Outcome.AGREE if result.agree else Outcome.DISAGREE)
        if not result.agree and len(self._evidence) < config.max_evidence:
            data = evidence_npz(body, header_length, answer, theirs, inputs)
            if len(data) <= EVIDENCE_MAX_BYTES:
                self._evidence.append(
                    Evidence(uuid.uuid4().hex[:16], config.candidate, time.time(), data)
                )
                logger.warning("%s: candidate %s disagrees: %s", self.model, config.candidate,
                               result.why)  # fmt: skip

    async def _post(
        self, config: mirror.MirrorConfig, body: bytes, header_length: int, cap: int
    ) -> tuple[bytes, int | None]:
        """The candidate's answer (body, JSON header length), read with a byte cap."""
        import aiohttp

        if self._session is None:
            # No pool limit of its own: maxInFlight bounds the requests out.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=30)
            )
        url = f"{config.url.rstrip('/')}/v2/models/{self.model}/infer"
        headers = {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(header_length),
        }
        timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        async with self._session.post(url, data=body, headers=headers, timeout=timeout) as reply:
            if reply.status != 200:
                raise RuntimeError(f"HTTP {reply.status}")
            if reply.content_length is not None and reply.content_length > cap:
                raise RuntimeError(f"answer of {reply.content_length} bytes, over {cap}")
            data = bytearray()
            while chunk := await reply.content.read(65536):
                data += chunk
                if len(data) > cap:
                    raise RuntimeError(f"answer over {cap} bytes")
            length = reply.headers.get("Inference-Header-Content-Length")
            return bytes(data), int(length) if length is not None else None

    # --- evidence ---------------------------------------------------------------------------
    def evidence(self) -> list[Evidence]:
        """The disagreements kept for the current candidate, oldest first."""
        return list(self._evidence)

    def evidence_file(self, evidence_id: str) -> Evidence | None:
        return next((e for e in self._evidence if e.id == evidence_id), None)
