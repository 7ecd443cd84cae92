"""One asyncio scenario run beside a loop that runs forever (a watch, the work queue's workers):
the loop is cancelled when the scenario ends, or fails, or runs out of time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


def run_beside(
    forever: Callable[[], Awaitable[None]],
    scenario: Callable[[], Awaitable[None]],
    timeout: float,
    *,
    finally_: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run ``scenario`` for at most ``timeout`` seconds while ``forever`` runs, then cancel
    ``forever`` and await ``finally_`` (closing what both used), on a loop of their own."""

    async def run() -> None:
        task = asyncio.ensure_future(forever())
        try:
            await asyncio.wait_for(scenario(), timeout)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if finally_ is not None:
                await finally_()

    asyncio.run(run())
