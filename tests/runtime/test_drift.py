"""Drift in a real ``modeldeploy serve`` process: the digits model staged by the real staging
code with ``spec.monitoring.reference`` naming an .npz of the training digits, so its manifest
carries their profile; served and fed over HTTP with the real tritonclient. Held-out digits read
as no drift; inverted digits (16 - x) push the input's and the predictions' PSI past 0.25 within
one window."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as httpclient

from modeldeploy.api.metric_names import RUNTIME_FAMILIES
from modeldeploy.artifacts.drift import ReferenceProfile
from modeldeploy.staging.stage import stage
from tests.runtime.server import running
from tests.runtime.test_runtime import metrics, value
from tests.staging.conftest import DIGIT_LABELS, deployment

WINDOW = 60


def staged_with_reference(model: Path, reference: np.ndarray, into: Path) -> Path:
    """The digits artifact, staged with ``reference`` (saved as an .npz) as its reference."""
    data = into / "reference.npz"
    np.savez(data, image=reference)
    spec = deployment(
        "digits",
        f"file://{model}",
        [{"name": "image", "shape": [1, 8, 8]}],
        model={"preprocessing": {"scale": 1 / 16},
               "postprocessing": {"type": "classification",
                                  "classification": {"labels": DIGIT_LABELS}}},
        monitoring={"reference": {"uri": f"file://{data}"}},
    )  # fmt: skip
    result = stage(spec, str(into / "store"))
    return Path(result.uri.removeprefix("file://"))


def send(client: httpclient.InferenceServerClient, rows: np.ndarray, per_request: int) -> None:
    for start in range(0, len(rows), per_request):
        part = rows[start : start + per_request].astype(np.float32)
        item = httpclient.InferInput("image", list(part.shape), "FP32")
        item.set_data_from_numpy(part, binary_data=True)
        client.infer("digits", [item])


def drift(found: dict[str, Any]) -> tuple[float, float, float, float, float, float]:
    return (
        value(found, "modeldeploy_drift_psi", model_name="digits", input="image", channel="0"),
        value(found, "modeldeploy_drift_ks", model_name="digits", input="image", channel="0"),
        value(found, "modeldeploy_prediction_drift_psi", model_name="digits"),
        value(found, "modeldeploy_drift_window_requests", model_name="digits"),
        value(found, "modeldeploy_prediction_drift_ks", model_name="digits"),
        value(found, "modeldeploy_drift_mean_psi", model_name="digits", input="image", channel="0"),
    )


def test_held_out_digits_do_not_drift_and_inverted_digits_do_within_one_window(
    digits_model_file: tuple[Path, Any], tmp_path: Path
) -> None:
    from tests.staging import models

    x_train, x_test, _, _ = models.digits()
    artifact = staged_with_reference(digits_model_file[0], x_train, tmp_path)
    manifest = json.loads((artifact / "digits" / "modeldeploy.json").read_text())
    profile = ReferenceProfile.model_validate(manifest["reference"])
    assert profile.samples == len(x_train)
    assert profile.source.endswith("reference.npz")
    assert profile.predictions is not None
    with running(artifact, tmp_path, "--drift-window", str(WINDOW)) as server:
        client = httpclient.InferenceServerClient(server.http)
        send(client, x_test[:240], per_request=8)  # 30 requests
        found = metrics(server)
        psi, ks, prediction_psi, window, score_ks, mean_psi = drift(found)
        assert window == 30
        assert score_ks < 0.2
        assert mean_psi < 0.25  # 30 requests of 8: a few hundred means against deciles
        assert psi < 0.1
        assert ks < 0.1
        assert prediction_psi < 0.1
        exported = {name for name in found if name.startswith("modeldeploy_drift")
                    or name.startswith("modeldeploy_prediction_drift")}  # fmt: skip
        drift_families = [f for f in RUNTIME_FAMILIES if "drift" in f.name]
        assert exported == {s for f in drift_families for s in f.samples()}

        send(client, 16 - x_test[: WINDOW * 2], per_request=2)  # a whole window of inverted
        psi, ks, prediction_psi, window, score_ks, mean_psi = drift(metrics(server))
        assert window == WINDOW
        assert score_ks > 0.2  # inverted digits are answered with less confidence
        assert mean_psi > 1.0  # every inverted image is far brighter than any reference one
        assert psi > 0.25
        assert ks > 0.3
        assert prediction_psi > 0.25
