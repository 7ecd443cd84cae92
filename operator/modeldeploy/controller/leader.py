"""Leader election by a ``coordination.k8s.io`` Lease, as controller-runtime does it.

With more than one replica, exactly one reconciles, resyncs and requeues: the one holding the
Lease. kopf's peering, which the operator used before, paused the watch streams only; the resync
loop and the requeue timers of a paused replica kept writing. Here every path to a write (``engine.converge``, the resync, the
finalizer's release) asks :meth:`LeaderElection.leading` first.

- A replica takes the Lease when it is free or expired (``renewTime + leaseDurationSeconds``
  passed), by an update carrying the resourceVersion it read: of two racing replicas, the API
  server accepts one and answers the other 409.
- The leader renews it every ``renew_seconds``. If it cannot renew for ``deadline_seconds``
  (shorter than the duration), it stops leading before anyone else may take over, so two
  replicas never write at once.
- A clean stop gives the Lease up (holder cleared), so a successor need not wait it out.

The decision is pure (:func:`decide`), with the time given.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)


class Move(StrEnum):
    ACQUIRE = "acquire"
    """The Lease is free or expired: take it."""
    RENEW = "renew"
    """We hold it: renew it."""
    WAIT = "wait"
    """Another replica holds it and it has not expired."""


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def decide(spec: dict[str, Any] | None, identity: str, now: datetime) -> Move:
    """What to do with the Lease whose ``spec`` was read at ``now``."""
    spec = spec or {}
    holder = spec.get("holderIdentity")
    if holder == identity:
        return Move.RENEW
    renewed = _time(spec.get("renewTime")) or _time(spec.get("acquireTime"))
    duration = int(spec.get("leaseDurationSeconds") or 0)
    if not holder or renewed is None or now >= renewed + timedelta(seconds=duration):
        return Move.ACQUIRE
    return Move.WAIT


@dataclass(frozen=True)
class Timing:
    duration_seconds: int = 15
    """How long a Lease not renewed stays its holder's."""
    deadline_seconds: float = 10.0
    """A leader that could not renew for this long stops leading (before the Lease expires)."""
    renew_seconds: float = 2.0
    """How often the leader renews, and a follower looks."""


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElection:
    """Hold the Lease ``namespace/name`` as ``identity`` while the operator runs."""

    def __init__(
        self,
        api: Any,
        namespace: str,
        name: str,
        identity: str,
        timing: Timing = Timing(),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api  # a kubernetes.client.CoordinationV1Api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self.clock = clock
        self._leading = False
        self._renewed_at = 0.0  # monotonic time of the last successful acquire or renew

    def leading(self) -> bool:
        """Whether this replica may write now: it holds the Lease, renewed within the
        deadline."""
        if self._leading and time.monotonic() - self._renewed_at > self.timing.deadline_seconds:
            log.warning(
                "leader election: no renewal for %ss; stepping down", self.timing.deadline_seconds
            )
            self._leading = False
        return self._leading

    async def run(self, on_elected: Callable[[], Awaitable[None]]) -> None:
        """Take part until cancelled; ``on_elected`` runs each time this replica becomes the
        leader (a resync: what happened while following was not acted on)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                was = self.leading()
                try:
                    await loop.run_in_executor(None, self._round)
                except Exception as err:  # the API server unreachable: try again next round
                    log.warning("leader election: %s", err)
                now = self.leading()
                if now and not was:
                    log.info(
                        "leader election: %s leads (Lease %s/%s)",
                        self.identity,
                        self.namespace,
                        self.name,
                    )
                    await on_elected()
                elif was and not now:
                    log.warning("leader election: %s no longer leads", self.identity)
                await asyncio.sleep(self.timing.renew_seconds)
        finally:
            if self._leading:
                await loop.run_in_executor(None, self._release)

    def _round(self) -> None:
        from kubernetes.client.exceptions import ApiException

        lease = self._read()
        now = self.clock()
        held: dict[str, Any] = (lease or {}).get("spec") or {}
        move = decide(held, self.identity, now)
        if move is Move.WAIT:
            self._leading = False
            return
        acquired = now if move is Move.ACQUIRE else (_time(held.get("acquireTime")) or now)
        transitions = int(held.get("leaseTransitions") or 0)
        if move is Move.ACQUIRE and held.get("holderIdentity"):
            transitions += 1  # taken over from another replica
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.timing.duration_seconds,
                "acquireTime": _stamp(acquired),
                "renewTime": _stamp(now),
                "leaseTransitions": transitions,
            },
        }
        try:
            if lease is None:
                self.api.create_namespaced_lease(self.namespace, body)
            else:
                body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
                self.api.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as err:
            if err.status in (409, 422):  # another replica won the race
                self._leading = False
                return
            raise
        self._leading = True
        self._renewed_at = time.monotonic()

    def _read(self) -> dict[str, Any] | None:
        """The Lease as the API server stores it (camelCase, times as strings), or None."""
        from kubernetes.client.exceptions import ApiException

        try:
            answer = self.api.read_namespaced_lease(
                self.name, self.namespace, _preload_content=False
            )
        except ApiException as err:
            if err.status != 404:
                raise
            return None
        lease: dict[str, Any] = json.loads(answer.data)
        return lease

    def _release(self) -> None:
        """Give the Lease up on a clean stop, so a successor need not wait it out."""
        try:
            lease = self._read()
            if lease is None or lease["spec"].get("holderIdentity") != self.identity:
                return
            for field in ("holderIdentity", "renewTime"):
                lease["spec"].pop(field, None)
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except Exception as err:  # stopping anyway; the Lease expires on its own
            log.warning("leader election: could not give the Lease up: %s", err)
        self._leading = False
