"""The reference profile and its statistics on real data: scikit-learn's bundled handwritten
digits, split into a reference half and a held-out half. Held-out digits are the same
population (PSI below 0.1); inverted digits are not (PSI above 0.25), on every statistic."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from modeldeploy.artifacts.drift import (
    Histogram,
    ReferenceProfile,
    histogram,
    ks,
    profile_input,
    profile_predictions,
    psi,
)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32)[:, None]  # [N, 1, 8, 8], 0..16
    order = np.random.default_rng(0).permutation(len(images))
    return images[order[: len(images) // 2]], images[order[len(images) // 2 :]]


def input_psi(profile_channels: list[Histogram], live: np.ndarray) -> float:
    return max(psi(h.proportions, h.counts(live[:, c])) for c, h in enumerate(profile_channels))


def test_held_out_digits_do_not_drift_and_inverted_ones_do(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    reference, held_out = digits
    profile = profile_input("image", reference)
    assert len(profile.channels) == 1  # one grey channel
    assert input_psi(profile.channels, held_out) < 0.1
    inverted = 16 - held_out
    assert input_psi(profile.channels, inverted) > 0.25
    means = profile.sample_means[0]
    held_means = held_out.reshape(len(held_out), -1).mean(axis=1)
    inverted_means = inverted.reshape(len(inverted), -1).mean(axis=1)
    assert psi(means.proportions, means.counts(held_means)) < 0.1
    assert psi(means.proportions, means.counts(inverted_means)) > 0.25
    histogram_ = profile.channels[0]
    assert ks(histogram_.proportions, histogram_.counts(held_out)) < 0.05
    assert ks(histogram_.proportions, histogram_.counts(inverted)) > 0.3


def test_predictions_keep_each_classes_share_and_the_top_score() -> None:
    scores = np.eye(4)[[0, 0, 1, 2, 3, 3, 3, 3]] * 0.9 + 0.025
    profile = profile_predictions(scores)
    assert profile is not None
    assert profile.classes == pytest.approx([0.25, 0.125, 0.125, 0.5])
    same = np.bincount(scores.argmax(1), minlength=4).astype(float)
    assert psi(profile.classes, same) == pytest.approx(0.0, abs=1e-9)
    shuffled = np.bincount([1, 1, 1, 1, 0, 2, 2, 2], minlength=4).astype(float)
    assert psi(profile.classes, shuffled) > 0.25
    assert profile_predictions(np.zeros((8, 2, 2))) is None  # not [N, classes]


def test_a_profile_round_trips_as_json_and_nothing_malformed_is_accepted(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    reference, _ = digits
    profile = ReferenceProfile(source="s3://data/reference.npz", samples=len(reference),
                               inputs=[profile_input("image", reference)])  # fmt: skip
    again = ReferenceProfile.model_validate_json(profile.model_dump_json(by_alias=True))
    assert again == profile
    with pytest.raises(ValidationError, match="3 edges for 1 bins"):
        Histogram(edges=[0, 1, 2], proportions=[1.0])
    with pytest.raises(ValidationError, match="must increase"):
        Histogram(edges=[1, 0], proportions=[1.0])
    with pytest.raises(ValidationError, match=r"sum to 0\.5000"):
        Histogram(edges=[0, 1], proportions=[0.5])


def test_a_constant_and_no_data_are_handled() -> None:
    constant = histogram(np.full(10, 3.0))
    assert constant.edges == [2.5, 3.5]
    assert psi(constant.proportions, constant.counts(np.full(5, 3.0))) == pytest.approx(0.0)
    assert np.isnan(psi(constant.proportions, np.zeros(1)))
    assert np.isnan(ks(constant.proportions, np.zeros(1)))
    with pytest.raises(ValueError, match="no finite values"):
        histogram(np.array([np.nan]))


def spec_with(**monitoring: Any) -> Any:
    from modeldeploy.api.modeldeployment import ModelDeploymentSpec

    return ModelDeploymentSpec.model_validate({
        "model": {"uri": "s3://m/x.pt", "format": "torchscript",
                  "inputs": [{"name": "image", "shape": [1, 8, 8]}]},
        "monitoring": monitoring,
    })  # fmt: skip


def test_the_drifting_condition_names_what_crossed_the_threshold_with_the_numbers() -> None:
    from modeldeploy.controller.drift import DriftReading, report

    spec = spec_with(reference={"uri": "s3://d/r.npz"}, psiThreshold=0.2, minRequests=40)
    calm, wanted = report(spec, DriftReading({"image/0": 0.031}, 0.012, 40), prometheus=True)
    assert calm.wire() == {"monitored": True, "worstPsi": 0.03, "worstInput": "image/0",
                    "predictionPsi": 0.01, "windowRequests": 40}  # fmt: skip
    assert wanted is not None
    assert (wanted.status, wanted.reason) == (False, "NoDrift")
    _, wanted = report(spec, DriftReading({"image/0": 0.5}, 0.1, 40), prometheus=True)
    assert wanted is not None
    assert (wanted.status, wanted.reason) == (True, "InputDrift")
    assert wanted.message == (
        "input image/0 PSI 0.50 > 0.2 over the last 40 requests, against the reference profile"
    )
    _, wanted = report(spec, DriftReading({"image/0": 0.05}, 0.9, 40), prometheus=True)
    assert wanted is not None
    assert (wanted.status, wanted.reason) == (True, "PredictionDrift")


def test_without_reference_data_prometheus_or_requests_nothing_is_claimed() -> None:
    from modeldeploy.controller.drift import DriftReading, report

    none, wanted = report(spec_with(), DriftReading({"image/0": 9.0}, None, 40), prometheus=True)
    assert none.monitored is False
    assert "drift is not monitored" in str(none.message)
    assert wanted is None
    spec = spec_with(reference={"uri": "s3://d/r.npz"})
    blind, wanted = report(spec, None, prometheus=False)
    assert "no Prometheus address" in str(blind.message)
    assert wanted is None
    idle, wanted = report(spec, DriftReading({}, None, 0), prometheus=True)
    assert "no requests served" in str(idle.message)
    assert wanted is None


def test_a_part_filled_window_gives_no_verdict_either_way_and_says_how_many_requests_it_holds() -> (
    None
):
    from modeldeploy.controller.drift import DriftReading, report

    spec = spec_with(reference={"uri": "s3://d/r.npz"}, minRequests=50)
    for psis in ({"image/0": 0.9}, {"image/0": 0.01}):
        early, wanted = report(spec, DriftReading(psis, 0.9, 49), prometheus=True)
        assert wanted is None
        assert early.wire() == {
            "monitored": True,
            "windowRequests": 49,
            "message": "49 of the 50 requests needed to judge drift (spec.monitoring.minRequests) "
            "are in the window",
        }
    _, wanted = report(spec, DriftReading({"image/0": 0.9}, None, 50), prometheus=True)
    assert wanted is not None
    assert wanted.reason == "InputDrift"
    # A window smaller than minRequests is judged once full: the window is all there can be.
    small = spec_with(reference={"uri": "s3://d/r.npz"}, window={"requests": 20})
    _, wanted = report(small, DriftReading({"image/0": 0.01}, None, 19), prometheus=True)
    assert wanted is None
    _, wanted = report(small, DriftReading({"image/0": 0.01}, None, 20), prometheus=True)
    assert wanted is not None
    assert wanted.reason == "NoDrift"
