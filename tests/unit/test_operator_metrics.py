"""The operator's own metrics count every way a reconciliation ends: a permanent error (a write
the API server refuses, a bug) as well as success and transient errors, with durations named
as Prometheus' conventions ask (``_duration_seconds``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from prometheus_client import REGISTRY

from modeldeploy.controller import engine
from modeldeploy.controller.kube import TransientApiError


def count(result: str) -> float:
    value = REGISTRY.get_sample_value(
        "modeldeploy_operator_reconciliations_total", {"result": result}
    )
    return value or 0.0


def test_a_permanent_error_is_counted_and_still_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused(*_: Any) -> None:
        raise ValueError("422 Unprocessable Entity")

    monkeypatch.setattr(engine, "converge", refused)
    before = count("permanent_error")
    with pytest.raises(ValueError, match="422"):
        asyncio.run(engine.converge_or_schedule(None, "ns", "md", logging.getLogger()))  # type: ignore[arg-type]
    assert count("permanent_error") == before + 1


def test_a_transient_error_is_counted_as_such_and_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    async def flaky(*_: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise TransientApiError("503")

    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr(engine, "converge", flaky)
    monkeypatch.setattr(engine.asyncio, "sleep", no_wait)
    transient, permanent = count("transient_error"), count("permanent_error")
    asyncio.run(engine.converge_or_schedule(None, "ns", "md", logging.getLogger()))  # type: ignore[arg-type]
    assert len(calls) == 2
    assert count("transient_error") == transient + 1
    assert count("permanent_error") == permanent


def test_durations_are_named_duration_seconds() -> None:
    names = {m.name for m in REGISTRY.collect()}
    assert {"modeldeploy_operator_reconcile_duration_seconds",
            "modeldeploy_operator_analysis_duration_seconds"} <= names  # fmt: skip
    assert not {"modeldeploy_operator_reconcile_seconds",
                "modeldeploy_operator_analysis_seconds"} & names  # fmt: skip


def test_every_operator_metric_is_in_the_documented_catalogue() -> None:
    from modeldeploy.api.metric_names import OPERATOR_FAMILIES

    exported = {m.name: m for m in REGISTRY.collect() if m.name.startswith("modeldeploy_operator")}
    assert set(exported) == {f.name for f in OPERATOR_FAMILIES}
    for documented in OPERATOR_FAMILIES:
        assert exported[documented.name].type == documented.kind
