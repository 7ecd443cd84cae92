"""Drift end to end: the digits model staged with a reference (half of scikit-learn's digits, as
the pixels the server receives), served by the executor, scraped by a real Prometheus, read by the
real operator. Held-out digits give ``Drifting=False`` with the numbers; inverted digits turn it
True within one window, with a Warning Event and the worst input in ``status.monitoring``."""

from __future__ import annotations

from typing import Any

import numpy as np
import tritonclient.http as httpclient

from tests.operator.conftest import Kube, digits_spec
from tests.operator.rollouts import ENV_FAST, status
from tests.support.demo_model import digits
from tests.support.processes import LocalStack

WINDOW = 40


def send(url: str, rows: np.ndarray, per_request: int = 4) -> None:
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    for start in range(0, len(rows), per_request):
        part = rows[start : start + per_request]
        item = httpclient.InferInput("image", list(part.shape), "FP32")
        item.set_data_from_numpy(part, binary_data=True)
        client.infer("digits", [item])
    client.close()


def monitoring(kube: Kube) -> dict[str, Any]:
    found: dict[str, Any] = status(kube).get("monitoring") or {}
    return found


def test_other_data_than_the_reference_turns_drifting_true_within_one_window(
    kube: Kube, start_operator: Any, stack: LocalStack, namespace: str, prometheus: str
) -> None:
    images, _ = digits()
    # The values the server receives: the PNG pixels the demo's clients send (0..255).
    pixels = np.round(images * 255 / 16).astype(np.float32)
    reference, held_out = pixels[::2], pixels[1::2]
    path = stack.pvc_root / "models" / namespace / "reference.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, image=reference)
    start_operator("--prometheus-address", prometheus, env=ENV_FAST)
    kube.create("digits", digits_spec(
        serving={"deploymentMode": "Knative"},
        monitoring={"reference": {"uri": f"pvc://models/{namespace}/reference.npz"},
                    "window": {"requests": WINDOW}},
    ))  # fmt: skip
    kube.wait_condition("digits", "Ready", "True", timeout=180)
    assert monitoring(kube)["monitored"] is True
    url = status(kube)["url"]

    send(url, held_out[: WINDOW * 4])
    calm = kube.wait_condition("digits", "Drifting", "False", "NoDrift", timeout=60)
    assert "over the last 40 requests" in calm["message"]
    numbers = monitoring(kube)
    assert numbers["worstPsi"] < 0.1
    assert numbers["worstInput"] == "image/0"
    assert numbers["windowRequests"] == WINDOW

    send(url, 255 - held_out[: WINDOW * 4])  # one whole window of inverted digits
    drifting = kube.wait_condition("digits", "Drifting", "True", "InputDrift", timeout=60)
    assert drifting["message"].startswith("input image/0 PSI ")
    assert monitoring(kube)["worstPsi"] > 0.25
    kube.wait("the Warning Event", lambda: ("Warning", "InputDrift") in kube.events("digits"))
