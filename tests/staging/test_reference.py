"""Staging builds the drift reference profile into the manifest from
``spec.monitoring.reference`` (an .npz of representative inputs), and only from real data: no
reference and no calibration data, no profile. The reference's bytes are part of the content
key, and a reference that does not fit the inputs is refused with its reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modeldeploy.artifacts.manifest import read_manifest
from modeldeploy.staging.errors import SourceUnavailableError
from modeldeploy.staging.stage import stage
from tests.staging.conftest import digits_deployment

pytestmark = pytest.mark.staging  # stages or trains models with PyTorch in its tests


def manifest_of(result: Any) -> Any:
    return read_manifest(Path(result.uri.removeprefix("file://")) / "digits" / "modeldeploy.json")


def with_reference(files: Path, data: Path) -> Any:
    spec = digits_deployment(f"file://{files / 'cnn.pt'}")
    doc = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["spec"]["monitoring"] = {"reference": {"uri": f"file://{data}", "samples": 500}}
    return type(spec).model_validate(doc)


def test_the_profile_comes_from_the_reference_data_and_its_bytes_key_the_artifact(
    files: Path, tmp_path: Path, digits_data: Any
) -> None:
    x_train, x_test, _, _ = digits_data
    data = tmp_path / "reference.npz"
    np.savez(data, image=x_train)
    first = stage(with_reference(files, data), str(tmp_path / "store"))
    profile = manifest_of(first).reference
    assert profile is not None
    assert profile.samples == 500  # cut to the spec's samples
    assert profile.source == f"file://{data}"
    assert [i.name for i in profile.inputs] == ["image"]
    assert profile.predictions is not None
    assert len(profile.predictions.classes) == 10
    # Other data behind the same URI: another artifact, not a cache hit.
    np.savez(data, image=x_test)
    second = stage(with_reference(files, data), str(tmp_path / "store"))
    assert second.key != first.key
    assert not second.cache_hit


def test_no_reference_and_no_calibration_is_no_profile(files: Path, tmp_path: Path) -> None:
    result = stage(digits_deployment(f"file://{files / 'cnn.pt'}"), str(tmp_path / "store"))
    assert manifest_of(result).reference is None  # random parity samples are no reference


def test_a_reference_without_the_models_input_is_refused(files: Path, tmp_path: Path) -> None:
    data = tmp_path / "wrong.npz"
    np.savez(data, pixels=np.zeros((20, 1, 8, 8), np.float32))
    with pytest.raises(
        SourceUnavailableError, match=r"monitoring.reference .*lacks inputs \['image'\]"
    ):
        stage(with_reference(files, data), str(tmp_path / "store"))
