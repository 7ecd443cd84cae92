"""The ModelDeployments waiting for a look, worked off by a fixed number of workers: client-go's
workqueue semantics.

- A key is queued at most once: ten events for one ModelDeployment before a worker is free
  cost one reconciliation, which reads the newest state from memory anyway (level-based).
- No two workers hold one key: a key that changes while it is being reconciled is queued again
  when that reconciliation ends, so the last change is always seen.
- The workers are bounded (``MODELDEPLOY_WORKERS``): a burst of a thousand objects is worked off
  by a fixed number of coroutines, not a thousand at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Key = tuple[str, str]


class WorkQueue:
    def __init__(self, work: Callable[[Key], Awaitable[None]], workers: int) -> None:
        self._work = work
        self._workers = workers
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._dirty: set[Key] = set()
        """Queued and not yet taken by a worker."""
        self._active: set[Key] = set()
        """Being worked on now."""

    def add(self, key: Key) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._active:  # else queued when its worker is done with it
            self._queue.put_nowait(key)

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
                await self._work(key)
            except Exception:  # logged; the next event, requeue or resync looks again
                log.exception(f"reconciling {key[0]}/{key[1]}")
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._queue.put_nowait(key)
