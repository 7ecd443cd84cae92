"""The ModelDeployments waiting for a look, worked off by a fixed number of workers: client-go's
workqueue semantics.

- A key is queued at most once: ten events for one ModelDeployment before a worker is free
  cost one reconciliation, which reads the newest state from memory anyway (level-based).
- No two workers hold one key: a key that changes while it is being reconciled is queued again
  when that reconciliation ends, so the last change is always seen.
- The workers are bounded (``MODELDEPLOY_WORKERS``): a burst of a thousand objects is worked off
  by a fixed number of coroutines, not a thousand at once.
- The work says when to look again (a rollout's step clock: controller-runtime's
  ``RequeueAfter``): the key is added after that many seconds. One such look is pending per key,
  and the newest answer replaces it; None drops it. A look that fails leaves it as it was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from modeldeploy.controller.bodies import Key

log = logging.getLogger(__name__)

Work: TypeAlias = Callable[[Key], Awaitable[float | None]]
"""Look at one key; in how many seconds to look again, or None."""


class WorkQueue:
    def __init__(self, work: Work, workers: int) -> None:
        self._work = work
        self._workers = workers
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._dirty: set[Key] = set()
        """Queued and not yet taken by a worker."""
        self._active: set[Key] = set()
        """Being worked on now."""
        self._later: dict[Key, asyncio.TimerHandle] = {}
        """The pending look after a delay, per key."""

    def add(self, key: Key) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._active:  # else queued when its worker is done with it
            self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float | None) -> None:
        """Add ``key`` in ``delay`` seconds, in place of any look already pending for it; None:
        none pending."""
        pending = self._later.pop(key, None)
        if pending is not None:
            pending.cancel()
        if delay is not None:
            self._later[key] = asyncio.get_running_loop().call_later(delay, self._due, key)

    def _due(self, key: Key) -> None:
        del self._later[key]
        self.add(key)

    def __len__(self) -> int:
        return len(self._dirty)

    async def run(self) -> None:
        """Work until cancelled."""
        async with asyncio.TaskGroup() as group:
            for n in range(self._workers):
                group.create_task(self._worker(), name=f"worker {n}")

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._dirty.discard(key)
            self._active.add(key)
            try:
                self.add_after(key, await self._work(key))
            except Exception:  # logged; the next event, requeue or resync looks again
                log.exception(f"reconciling {key[0]}/{key[1]}")
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._queue.put_nowait(key)
