"""kopf's watch lines decoded by orjson (``controller/watch_decoding.py``): the same dicts as the
standard library's, nothing lost where orjson refuses, and kopf left alone once it changes."""

from __future__ import annotations

import json

import pytest
from kopf._cogs.clients import api

from modeldeploy.controller import watch_decoding

EVENT = {
    "type": "MODIFIED",
    "object": {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "digits", "namespace": "ml", "resourceVersion": "9223372036854775807",
                     "labels": {"team": "vision", "note": "ünïcödé ✓"}},
        "spec": {"model": {"uri": "pvc://models/digits/model.pt"}, "replicas": 3,
                 "threshold": 0.25, "golden": [1, -2, 3.5e-7], "enabled": True, "extra": None},
    },
}  # fmt: skip


@pytest.fixture
def swapped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "json", json)  # as kopf ships it, restored after the test
    assert watch_decoding.use_orjson_for_watches()


@pytest.mark.usefixtures("swapped")
def test_kopfs_watch_decoder_is_replaced_and_gives_the_standard_librarys_dicts() -> None:
    assert api.json is not json
    line = json.dumps(EVENT, ensure_ascii=False).encode()
    assert api.json.loads(line.decode("utf-8")) == json.loads(line) == EVENT


@pytest.mark.usefixtures("swapped")
def test_a_line_orjson_refuses_is_still_decoded_by_the_standard_library() -> None:
    line = (
        '{"type": "ADDED", "object": {"metadata": {"name": "x", "annotations": {"a": "\\ud800"}}}}'
    )
    decoded = api.json.loads(line)
    assert decoded["object"]["metadata"]["annotations"]["a"] == "\ud800"


@pytest.mark.usefixtures("swapped")
def test_swapping_twice_keeps_the_fast_decoder() -> None:
    assert watch_decoding.use_orjson_for_watches()
    assert api.json is not json


def test_a_kopf_whose_module_changed_is_left_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    other = object()
    monkeypatch.setattr(api, "json", other)
    assert not watch_decoding.use_orjson_for_watches()
    assert api.json is other


def test_invalid_json_is_still_an_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        watch_decoding.loads('{"type": ')
