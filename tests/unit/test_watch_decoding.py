"""Watch lines decoded by orjson (``controller/watch_decoding.py``): the same dicts as the
standard library's, and nothing lost where orjson refuses."""

from __future__ import annotations

import json

import pytest

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


def test_a_watch_line_decodes_to_the_standard_librarys_dicts() -> None:
    line = json.dumps(EVENT, ensure_ascii=False).encode()
    assert watch_decoding.loads(line) == json.loads(line) == EVENT


def test_a_line_orjson_refuses_is_still_decoded_by_the_standard_library() -> None:
    line = (
        b'{"type": "ADDED", "object": {"metadata": {"name": "x", "annotations": {"a": "\\ud800"}}}}'
    )
    decoded = watch_decoding.loads(line)
    assert decoded["object"]["metadata"]["annotations"]["a"] == "\ud800"


def test_invalid_json_is_still_an_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        watch_decoding.loads('{"type": ')
