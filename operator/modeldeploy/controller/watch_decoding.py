"""kopf's watch streams decoded with orjson.

kopf (1.45) decodes every line of every watch stream with the standard library's
``json.loads``, in ``kopf._cogs.clients.api``. Under a burst of ModelDeployments that was 12%
of the operator's CPU in ``py-spy record --gil`` (docs/benchmarks.md), ahead of any one of our
own reads. orjson decodes the same lines several times faster into the same dicts.

kopf has no setting for its decoder, so this replaces the ``json`` name in that one module with
an object whose ``loads`` is orjson's. It falls back to the standard library for what orjson
refuses and Python's decoder accepts (an escaped lone surrogate such as ``"\\ud800"``), so no
event is ever lost to the faster path. Integers are not a difference here: the API server
itself holds a schemaless number in 64 bits (int64, else float64), as orjson does. When kopf's module no longer looks as expected, nothing
is replaced and kopf keeps its own decoder.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson

log = logging.getLogger(__name__)


def loads(text: str | bytes) -> Any:
    """``json.loads``, through orjson when it can."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class _Decoder:
    """Stands in for the ``json`` module where kopf only calls ``json.loads``."""

    loads = staticmethod(loads)


def use_orjson_for_watches() -> bool:
    """Swap kopf's watch decoder; False (and kopf untouched) when its module has changed."""
    from kopf._cogs.clients import api

    if getattr(api, "json", None) is _Decoder:
        return True
    if getattr(api, "json", None) is not json:
        log.info("kopf's watch decoder is not the standard library's: left as it is")
        return False
    api.json = _Decoder
    return True
