"""Background loops of the cluster's stand-ins."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("loops")


def every(seconds: float, stop: threading.Event, action: Callable[[], object], what: str) -> None:
    """Run ``action`` every ``seconds`` until ``stop`` is set; a failure is logged and the loop
    goes on (the API server restarting, a race with a deletion), as a controller's resync does."""
    while not stop.wait(seconds):
        try:
            action()
        except Exception:
            if stop.is_set():
                return
            log.exception(what)
