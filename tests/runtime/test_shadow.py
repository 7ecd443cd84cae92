"""The shadow mirror in real ``modeldeploy serve`` processes: stable serves the digits model and
mirrors to a candidate runtime over a real socket, as the shadow file tells it, while a client
sends held-out digits with the real tritonclient.

The candidates are real artifacts staged by the real staging code: the same model at fp16 (a
good candidate), the same model with a wrong normalisation mean baked in (its golden samples are
made the same wrong way, so its self-test passes), a port nobody listens on (down) and a
candidate process stopped with SIGSTOP (slow: it accepts connections and never answers).
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from modeldeploy.api import mirror
from modeldeploy.staging.stage import stage
from tests.runtime.server import RuntimeProcess, replay, running
from tests.runtime.test_runtime import metrics, value
from tests.staging.conftest import DIGIT_LABELS, deployment
from tests.support.controlplane import free_port

STABLE = "stable-rev"


def _stage(source: Path, into: Path, **sections: Any) -> Path:
    model_section = {
        "preprocessing": {"scale": 1 / 16},
        "postprocessing": {"type": "classification",
                           "classification": {"labels": DIGIT_LABELS, "topK": 3}},
    }  # fmt: skip
    model_section.update(sections.pop("model", {}))
    spec = deployment(
        "digits", f"file://{source}", [{"name": "image", "shape": [1, 8, 8]}],
        model=model_section, **sections,
    )  # fmt: skip
    return Path(stage(spec, str(into)).uri.removeprefix("file://"))


@pytest.fixture(scope="module")
def candidates(
    digits_model_file: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    model = digits_model_file[0]
    store = tmp_path_factory.mktemp("shadow-store")
    return {
        "fp16": _stage(model, store, optimization={"precision": "fp16"}),
        # The mean a copy-pasted ImageNet preprocessing would bring: every golden sample was
        # made through the same graph, so staging's parity and the self-test both pass.
        "wrong-mean": _stage(model, store, model={"preprocessing": {"scale": 1 / 16,
                                                                    "mean": [0.45]}}),
    }  # fmt: skip


@pytest.fixture
def shadow_file(tmp_path: Path) -> Path:
    return tmp_path / "shadow" / mirror.FILE


@pytest.fixture
def stable(digits_artifact: Path, shadow_file: Path, tmp_path: Path) -> Iterator[RuntimeProcess]:
    shadow_file.parent.mkdir(parents=True)
    with running(
        digits_artifact, tmp_path, "--shadow-config", str(shadow_file), "--revision", STABLE
    ) as server:
        yield server


def shadow_on(path: Path, candidate: str, url: str, **settings: Any) -> None:
    """Write the shadow file as the kubelet refreshes a ConfigMap volume: a new file, renamed."""
    config = {"source": STABLE, "candidate": candidate, "url": url, "percent": 100,
              "atol": 1e-2, "rtol": 1e-2, **settings}  # fmt: skip
    write(path, json.dumps(config))


def write(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def send(server: RuntimeProcess, rows: np.ndarray) -> list[float]:
    """One request per row (held-out digits, raw 0..16 pixels); each one's latency."""
    client = httpclient.InferenceServerClient(server.http)
    latencies = []
    for row in rows:
        item = httpclient.InferInput("image", [1, 1, 8, 8], "FP32")
        item.set_data_from_numpy(row.reshape(1, 1, 8, 8).astype(np.float32), binary_data=True)
        started = time.monotonic()
        client.infer("digits", [item])  # raises on anything but 200
        latencies.append(time.monotonic() - started)
    return latencies


def outcomes(server: RuntimeProcess, candidate: str) -> dict[str, float]:
    found = metrics(server)
    return {
        o: value(found, "modeldeploy_shadow_requests_total", candidate=candidate, outcome=o)
        for o in ("agree", "disagree", "error", "dropped")
    }


def settled(
    server: RuntimeProcess, candidate: str, total: int, timeout: float = 30
) -> dict[str, float]:
    """The outcomes once ``total`` mirrored requests have all ended one way or another."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            counted = outcomes(server, candidate)
        except KeyError:
            counted = {}
        if sum(counted.values()) >= total or time.monotonic() > deadline:
            return counted
        time.sleep(0.2)


def held_out(digits_model_file: tuple[Path, Any], n: int) -> np.ndarray:
    x_test = digits_model_file[1][0]
    return np.asarray(x_test[:n], dtype=np.float32)


def test_a_candidate_re_staged_at_fp16_agrees_with_stable_on_live_requests(
    stable: RuntimeProcess, shadow_file: Path, candidates: dict[str, Path], tmp_path: Path,
    digits_model_file: tuple[Path, Any],
) -> None:  # fmt: skip
    rows = held_out(digits_model_file, 120)
    with running(candidates["fp16"], tmp_path) as candidate:
        # Room for every mirror: on a loaded machine eight in flight were once not enough, and
        # the ninth was dropped (as it should be; here the comparison is what is tested).
        shadow_on(shadow_file, "fp16", f"http://{candidate.http}", maxInFlight=256)
        time.sleep(1.2)  # the runtime looks at the file once a second at most
        send(stable, rows)
        counted = settled(stable, "fp16", len(rows))
        served = value(metrics(candidate), "modeldeploy_requests_total", outcome="success")
    compared = counted["agree"] + counted["disagree"]
    assert compared + counted["dropped"] == len(rows), counted
    assert compared >= len(rows) // 2, counted
    assert counted["agree"] / compared >= 0.99, counted
    assert counted["error"] == 0, counted
    # The candidate answered exactly the mirrored requests: one each, none twice.
    assert served == counted["agree"] + counted["disagree"]
    worst = value(metrics(stable), "modeldeploy_shadow_max_abs_diff", candidate="fp16")
    assert 0 < worst < 1e-2  # fp16 rounding: never 0, always within the tolerance
    assert json.loads(stable.get("/v2/models/digits/shadow/evidence")[1]) == {"evidence": []}


def test_a_candidate_with_the_wrong_mean_disagrees_and_its_evidence_reproduces_the_difference(
    stable: RuntimeProcess, shadow_file: Path, candidates: dict[str, Path], tmp_path: Path,
    digits_model_file: tuple[Path, Any],
) -> None:  # fmt: skip
    rows = held_out(digits_model_file, 60)
    with running(candidates["wrong-mean"], tmp_path) as candidate:
        shadow_on(shadow_file, "wrong-mean", f"http://{candidate.http}", maxEvidence=3,
                  maxInFlight=256)  # fmt: skip
        time.sleep(1.2)
        send(stable, rows)
        counted = settled(stable, "wrong-mean", len(rows))
        # The model is trained afresh each session (unseeded): how many answers the shifted
        # mean changes varies with it (a third to over a half here); far more than the 1% a
        # minAgreement of 0.99 allows, always.
        assert counted["disagree"] / (counted["agree"] + counted["disagree"]) > 0.05, counted
        index = json.loads(stable.get("/v2/models/digits/shadow/evidence")[1])["evidence"]
        assert len(index) == 3  # bounded: maxEvidence, not one per disagreement
        status, data = stable.get(f"/v2/models/digits/shadow/evidence/{index[0]['id']}")
        assert status == 200
        assert len(data) == index[0]["bytes"]
        kept = np.load(io.BytesIO(data), allow_pickle=False)
        body = kept["request"].tobytes()
        header = int(kept["request_header_length"])
        # Replayed as is, the request gets the same two answers again from the two processes.
        for server, side in ((candidate, "candidate"), (stable, "stable")):
            answer = replay(f"http://{server.http}", body, header)
            for name in answer:
                np.testing.assert_array_equal(answer[name], kept[f"{side}/{name}"])
        first = next(k for k in kept.files if k.startswith("stable/")).removeprefix("stable/")
        difference = np.abs(kept[f"candidate/{first}"] - kept[f"stable/{first}"]).max()
        assert difference > 1e-2
        assert kept["input/image"].shape == (1, 1, 8, 8)


def test_a_down_candidate_is_counted_as_errors_and_no_client_request_fails(
    stable: RuntimeProcess, shadow_file: Path, digits_model_file: tuple[Path, Any]
) -> None:
    rows = held_out(digits_model_file, 40)
    shadow_on(shadow_file, "down", f"http://127.0.0.1:{free_port()}", maxInFlight=256)
    time.sleep(1.2)
    send(stable, rows)  # every one answered 200, or tritonclient raises
    counted = settled(stable, "down", len(rows))
    assert counted["error"] == len(rows), counted


def test_a_hung_candidate_never_delays_a_client_and_excess_mirrors_are_dropped(
    stable: RuntimeProcess, shadow_file: Path, candidates: dict[str, Path], tmp_path: Path,
    digits_model_file: tuple[Path, Any],
) -> None:  # fmt: skip
    rows = held_out(digits_model_file, 40)
    without_shadow = send(stable, rows)  # the same requests, no shadow: the clients' baseline
    with running(candidates["fp16"], tmp_path) as candidate:
        os.kill(candidate.process.pid, signal.SIGSTOP)  # accepts connections, answers nothing
        try:
            shadow_on(shadow_file, "hung", f"http://{candidate.http}", maxInFlight=4,
                      timeoutSeconds=3)  # fmt: skip
            time.sleep(1.2)
            latencies = send(stable, rows)
            counted = settled(stable, "hung", len(rows), timeout=20)
        finally:
            os.kill(candidate.process.pid, signal.SIGCONT)
    # Four at a time went out and timed out; everything sampled while four hung was dropped,
    # never queued behind them.
    assert counted["error"] + counted["dropped"] == len(rows), counted
    assert 4 <= counted["error"] <= 4 * (1 + int(sum(latencies) / 3)), counted
    assert counted["dropped"] > 0, counted
    # No client waited for the shadow: had one waited, it would have waited the mirror's 3 s
    # timeout; every answer came well inside it (numbers with the shadow off for comparison).
    p99 = {"off": np.percentile(without_shadow, 99), "on": np.percentile(latencies, 99)}
    assert max(latencies) < 3, (max(latencies), p99)


def test_the_shadow_switches_on_and_off_with_the_file_and_only_the_named_source_mirrors(
    stable: RuntimeProcess, shadow_file: Path, candidates: dict[str, Path], tmp_path: Path,
    digits_model_file: tuple[Path, Any],
) -> None:  # fmt: skip
    rows = held_out(digits_model_file, 200)
    pid = stable.process.pid
    with running(candidates["fp16"], tmp_path) as candidate:
        shadow_on(shadow_file, "fp16", f"http://{candidate.http}", percent=25)
        time.sleep(1.2)
        send(stable, rows)
        time.sleep(2)  # the last mirrored requests come back
        sampled = sum(outcomes(stable, "fp16").values())
        # A binomial sample of 200 at 25%: 50 expected, sd 6.1; ±25 is four sd.
        assert 25 <= sampled <= 75, sampled
        write(shadow_file, "{}")
        time.sleep(1.2)
        send(stable, rows[:50])
        assert sum(outcomes(stable, "fp16").values()) == sampled  # off: nothing more mirrored
        # A file naming another source (the candidate mounts the same ConfigMap) is not ours.
        write(shadow_file, json.dumps({"source": "someone-else", "candidate": "x",
                                       "url": f"http://{candidate.http}", "percent": 100,
                                       "atol": 0, "rtol": 0}))  # fmt: skip
        time.sleep(1.2)
        send(stable, rows[:20])
        assert "modeldeploy_shadow_requests_total" not in metrics(stable) or not any(
            dict(k).get("candidate") == "x"
            for k in metrics(stable)["modeldeploy_shadow_requests_total"]
        )
    assert stable.process.pid == pid
    assert stable.process.poll() is None


def test_a_malformed_shadow_file_is_ignored_with_the_reason_logged(
    stable: RuntimeProcess, shadow_file: Path, digits_model_file: tuple[Path, Any]
) -> None:
    write(shadow_file, json.dumps({"source": STABLE, "candidate": "c", "url": "not a url",
                                   "percent": 100, "atol": 0, "rtol": 0}))  # fmt: skip
    time.sleep(1.2)
    send(stable, held_out(digits_model_file, 5))
    assert "shadow file" in stable.log_text()
    assert "url" in stable.log_text()
    assert "modeldeploy_shadow_requests_total" not in metrics(stable)
