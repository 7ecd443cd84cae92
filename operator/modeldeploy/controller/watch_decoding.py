"""Watch events decoded with orjson (``informer.py``).

Under a burst of ModelDeployments, decoding watch lines with the standard library's
``json.loads`` was 12% of the operator's CPU in ``py-spy record --gil`` (docs/benchmarks.md).
orjson decodes the same lines several times faster into the same dicts. It falls back to the
standard library for what orjson refuses and Python's decoder accepts (an escaped lone surrogate
such as ``"\\ud800"``), so no event is ever lost to the faster path. Integers are not a
difference here: the API server itself holds a schemaless number in 64 bits (int64, else
float64), as orjson does.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(text: str | bytes) -> Any:
    """``json.loads``, through orjson when it can."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
