"""Drift in a real ``modeldeploy serve`` process: the digits artifact, with a reference profile
of the training digits in its manifest, served and fed over HTTP with the real tritonclient.
Held-out digits read as no drift; inverted digits (16 - x) push the input's and the
predictions' PSI past 0.25 within one window. The profile is built here with the same
``artifacts.drift`` functions staging will use (issue 19: staging does not build it yet)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import tritonclient.http as httpclient

from modeldeploy.api.metric_names import RUNTIME_FAMILIES
from modeldeploy.artifacts.drift import ReferenceProfile, profile_input, profile_predictions
from tests.runtime.server import running
from tests.runtime.test_runtime import metrics, value

WINDOW = 60


def with_reference(artifact: Path, reference: np.ndarray, into: Path) -> Path:
    """A copy of ``artifact`` whose manifest carries the profile of ``reference``."""
    copy = into / "with-reference"
    shutil.copytree(artifact, copy)
    folder = copy / "digits"
    manifest = json.loads((folder / "modeldeploy.json").read_text())
    session = ort.InferenceSession(str(folder / manifest["model"]["file"]))
    scores = session.run(None, {"image": reference.astype(np.float32)})[0]
    profile = ReferenceProfile(source="test", samples=len(reference),
                               inputs=[profile_input("image", reference)],
                               predictions=profile_predictions(scores))  # fmt: skip
    manifest["reference"] = profile.model_dump(mode="json", by_alias=True)
    (folder / "modeldeploy.json").write_text(json.dumps(manifest))
    return copy


def send(client: httpclient.InferenceServerClient, rows: np.ndarray, per_request: int) -> None:
    for start in range(0, len(rows), per_request):
        part = rows[start : start + per_request].astype(np.float32)
        item = httpclient.InferInput("image", list(part.shape), "FP32")
        item.set_data_from_numpy(part, binary_data=True)
        client.infer("digits", [item])


def drift(found: dict[str, Any]) -> tuple[float, float, float, float]:
    return (
        value(found, "modeldeploy_drift_psi", model_name="digits", input="image", channel="0"),
        value(found, "modeldeploy_drift_ks", model_name="digits", input="image", channel="0"),
        value(found, "modeldeploy_prediction_drift_psi", model_name="digits"),
        value(found, "modeldeploy_drift_window_requests", model_name="digits"),
    )


def test_held_out_digits_do_not_drift_and_inverted_digits_do_within_one_window(
    digits_artifact: Path, digits_model_file: tuple[Path, Any], tmp_path: Path
) -> None:
    from tests.staging import models

    x_train, x_test, _, _ = models.digits()
    artifact = with_reference(digits_artifact, x_train, tmp_path)
    with running(artifact, tmp_path, "--drift-window", str(WINDOW)) as server:
        client = httpclient.InferenceServerClient(server.http)
        send(client, x_test[:240], per_request=8)  # 30 requests
        found = metrics(server)
        psi, ks, prediction_psi, window = drift(found)
        assert window == 30
        assert psi < 0.1
        assert ks < 0.1
        assert prediction_psi < 0.1
        exported = {name for name in found if name.startswith("modeldeploy_drift")
                    or name.startswith("modeldeploy_prediction_drift")}  # fmt: skip
        assert exported == {s for f in RUNTIME_FAMILIES if f.only_when for s in f.samples()}

        send(client, 16 - x_test[: WINDOW * 2], per_request=2)  # a whole window of inverted
        psi, ks, prediction_psi, window = drift(metrics(server))
        assert window == WINDOW
        assert psi > 0.25
        assert ks > 0.3
        assert prediction_psi > 0.25
