"""Every failure a user can act on: a specific message, its own exit code, and no artifact."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modeldeploy.staging import errors
from modeldeploy.staging.plan import write_termination_log
from modeldeploy.staging.stage import stage
from tests.staging import models
from tests.staging.conftest import deployment, digits_deployment
from tests.support.controlplane import REPO_ROOT

pytestmark = pytest.mark.staging  # stages or trains models with PyTorch in its tests


def assert_nothing_published(store: Path) -> None:
    """No artifact folder at all, complete-looking or not."""
    assert not store.exists() or [p.name for p in store.iterdir()] == []


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on loopback serving a folder, with the content type kserve-storage wants."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(SimpleHTTPRequestHandler):
        def guess_type(self, path: Any) -> str:
            return "application/x-tar" if str(path).endswith(".tar") else "application/octet-stream"

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def over_http(url: str) -> Any:
    """A digits spec fetching from a plain-HTTP test server. The API only admits https:// URIs;
    the test server has no certificate, so the URI is set past validation."""
    spec = digits_deployment("https://models.example.com/cnn.pt")
    spec.spec.model.uri = url
    return spec


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_parity_gate_catches_a_graph_that_export_got_wrong(tmp_path: Path) -> None:
    model = models.SignBranch().eval()
    source = models.save(model, tmp_path / "branchy.pt")
    spec = deployment("branchy", f"file://{source}", [{"name": "x", "shape": [8]}])
    with pytest.raises(errors.ParityError) as err:
        stage(spec, str(tmp_path / "store"))
    message = str(err.value)
    assert "parity check failed for precision fp32 on 32 samples" in message
    assert "max |Δ|" in message
    assert "outside atol 0.001 + rtol 0.001·|ref|" in message
    assert err.value.exit_code == 17
    assert_nothing_published(tmp_path / "store")


def test_unsupported_operator_fails_export(tmp_path: Path) -> None:
    source = models.save(models.SearchSorted().eval(), tmp_path / "bucketize.pt")
    spec = deployment("bucketize", f"file://{source}", [{"name": "x", "shape": [4]}])
    with pytest.raises(errors.ExportError) as err:
        stage(spec, str(tmp_path / "store"))
    assert "ONNX export (opset 17) failed" in str(err.value)
    assert "searchsorted" in str(err.value).lower()
    assert_nothing_published(tmp_path / "store")


def test_unreachable_uri(tmp_path: Path) -> None:
    spec = over_http(f"http://127.0.0.1:{closed_port()}/models/cnn.pt")
    with pytest.raises(errors.SourceUnreachableError) as err:
        stage(spec, str(tmp_path / "store"))
    assert f"cannot fetch {spec.spec.model.uri} (will be retried)" in str(err.value)
    assert (err.value.reason, err.value.exit_code) == ("SourceUnreachable", 21)
    missing = digits_deployment(f"file://{tmp_path / 'nowhere' / 'cnn.pt'}")
    with pytest.raises(errors.SourceUnavailableError, match="does not exist"):
        stage(missing, str(tmp_path / "store"))
    assert_nothing_published(tmp_path / "store")


@pytest.fixture
def answering() -> Iterator[str]:
    """An HTTP server answering every GET with the status its path starts with: /503/x."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(int(self.path.strip("/").split("/")[0]))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.write(b"no model here")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(
    ("status", "error", "exit_code"),
    [
        (503, errors.SourceUnreachableError, 21),
        (429, errors.SourceUnreachableError, 21),
        (404, errors.SourceUnavailableError, 10),
        (403, errors.SourceUnavailableError, 10),
    ],
)
def test_a_source_that_may_answer_later_is_retryable_and_one_that_will_not_is_not(
    answering: str, tmp_path: Path, status: int, error: type[errors.StagingError], exit_code: int
) -> None:
    with pytest.raises(errors.SourceUnavailableError) as err:
        stage(over_http(f"{answering}/{status}/cnn.pt"), str(tmp_path / "store"))
    assert type(err.value) is error
    assert err.value.exit_code == exit_code
    # The Job fails at once only for what another attempt cannot fix.
    from modeldeploy.controller.staging_job import NON_RETRYABLE_EXIT_CODES

    assert (exit_code in NON_RETRYABLE_EXIT_CODES) == (error is errors.SourceUnavailableError)
    assert_nothing_published(tmp_path / "store")


def test_s3_throttling_and_network_failures_are_transient() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError

    from modeldeploy.staging.source import transient

    slow_down = ClientError({"Error": {"Code": "SlowDown", "Message": "Reduce"}}, "GetObject")
    missing = ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"}}, "GetObject")
    assert transient(RuntimeError("download failed").with_traceback(None)) is False
    wrapped = RuntimeError("download failed")
    wrapped.__cause__ = slow_down
    assert transient(wrapped)
    assert transient(EndpointConnectionError(endpoint_url="http://s3.local"))
    assert not transient(missing)


def test_http_source_is_fetched_by_kserve_storage(
    files: Path, tmp_path: Path, http_root: tuple[Path, str]
) -> None:
    root, url = http_root
    (root / "cnn.pt").write_bytes((files / "cnn.pt").read_bytes())
    result = stage(over_http(f"{url}/cnn.pt"), str(tmp_path / "store"))
    assert result.parity is not None
    assert result.parity["passed"]


def test_declared_format_contradicted_by_the_file(files: Path, tmp_path: Path) -> None:
    spec = deployment(
        "resnet",
        f"file://{files / 'resnet18.torchscript'}",
        [{"name": "image", "shape": [3, 32, 32]}],
    )
    with pytest.raises(errors.FormatMismatchError) as err:
        stage(spec, str(tmp_path / "store"))
    assert str(err.value) == (
        "format is pytorch, but resnet18.torchscript is a TorchScript archive (torch.jit.save); set format: torchscript"
    )
    weights = deployment(
        "mlp", f"file://{files / 'mlp-weights.pt'}", [{"name": "x", "shape": [64]}]
    )
    with pytest.raises(errors.FormatMismatchError, match="holds a state_dict"):
        stage(weights, str(tmp_path / "store"))
    assert_nothing_published(tmp_path / "store")


def test_corrupt_file(files: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "cnn.pt"
    truncated.write_bytes((files / "cnn.pt").read_bytes()[:2000])
    with pytest.raises(errors.CorruptModelError) as err:
        stage(digits_deployment(f"file://{truncated}"), str(tmp_path / "store"))
    assert "cnn.pt" in str(err.value)
    assert err.value.exit_code == 13
    assert_nothing_published(tmp_path / "store")


def test_entrypoint_that_cannot_be_imported_or_does_not_fit(files: Path, tmp_path: Path) -> None:
    def spec(entrypoint: str, **args: Any) -> Any:
        return deployment(
            "mlp",
            f"file://{files / 'mlp-weights.pt'}",
            [{"name": "x", "shape": [64]}],
            model={"format": "state_dict", "entrypoint": entrypoint, "entrypointArgs": args},
        )

    with pytest.raises(errors.EntrypointError, match=r"cannot import no_such_package\.models"):
        stage(spec("no_such_package.models:build"), str(tmp_path / "store"))
    with pytest.raises(errors.EntrypointError, match="has no callable build_nothing"):
        stage(spec("tests.staging.models:build_nothing"), str(tmp_path / "store"))
    with pytest.raises(errors.EntrypointError, match="weights do not fit the module"):
        stage(spec("tests.staging.models:build_mlp", hidden=32), str(tmp_path / "store"))
    assert_nothing_published(tmp_path / "store")


def _tar_with(path: Path, entries: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_archive_entries_escaping_the_destination(
    files: Path, tmp_path: Path, http_root: tuple[Path, str]
) -> None:
    model = (files / "cnn.pt").read_bytes()
    evil_tar = _tar_with(tmp_path / "model.tar", {"cnn.pt": model, "../../escaped.txt": b"pwned"})
    with pytest.raises(errors.UnsafeArchiveError) as err:
        stage(digits_deployment(f"file://{evil_tar}"), str(tmp_path / "store"))
    assert "'../../escaped.txt'" in str(err.value)
    evil_zip = tmp_path / "model.zip"
    with zipfile.ZipFile(evil_zip, "w") as archive:
        archive.writestr("cnn.pt", model)
        archive.writestr("/etc/cron.d/evil", b"* * * * * root true")
    with pytest.raises(errors.UnsafeArchiveError, match=r"'/etc/cron\.d/evil'"):
        stage(digits_deployment(f"file://{evil_zip}"), str(tmp_path / "store"))
    # Over HTTP, kserve-storage unpacks as it downloads; its refusal is reported as such.
    root, url = http_root
    (root / "model.tar").write_bytes(evil_tar.read_bytes())
    with pytest.raises(errors.UnsafeArchiveError, match=r"escaped\.txt"):
        stage(over_http(f"{url}/model.tar"), str(tmp_path / "store"))
    assert not (tmp_path / "escaped.txt").exists()
    assert_nothing_published(tmp_path / "store")
    # A clean archive is fine.
    good = _tar_with(tmp_path / "good.tar", {"weights/cnn.pt": model, "README": b"digits"})
    assert stage(digits_deployment(f"file://{good}"), str(tmp_path / "store")).cache_hit is False


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modeldeploy", "stage", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        check=False,
        timeout=300,
    )


def test_cli_summary_exit_codes_and_termination_log(files: Path, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    log.touch()
    good = tmp_path / "good.yaml"
    good.write_text(json.dumps(digits_deployment(f"file://{files / 'cnn.pt'}").to_manifest()))
    ok = run_cli(
        str(good),
        "--dest",
        str(tmp_path / "store"),
        "--code-dir",
        str(REPO_ROOT),
        "--termination-log",
        str(log),
    )
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout.strip().splitlines()[-1])
    assert summary["status"] == "Succeeded"
    assert summary["cacheHit"] is False
    assert summary["uri"].startswith(f"file://{tmp_path / 'store'}/digits-")
    assert json.loads(log.read_text()) == summary

    bad = tmp_path / "bad.yaml"
    doc = digits_deployment(f"file://{files / 'resnet18.torchscript'}").to_manifest()
    bad.write_text(json.dumps(doc))
    failed = run_cli(str(bad), "--dest", str(tmp_path / "store"), "--termination-log", str(log))
    assert failed.returncode == errors.FormatMismatchError.exit_code
    assert json.loads(log.read_text())["reason"] == "FormatMismatch"

    doc["spec"]["rollout"] = {"steps": [{"weight": 50}, {"weight": 10}]}
    bad.write_text(json.dumps(doc))
    invalid = run_cli(str(bad), "--dest", str(tmp_path / "store"), "--termination-log", str(log))
    assert invalid.returncode == 3
    assert (
        "spec.rollout.steps[1].weight: must be greater than 50"
        in json.loads(invalid.stdout)["message"]
    )


def test_termination_log_stays_under_4k(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.touch()
    write_termination_log(
        {"status": "Failed", "reason": "ParityCheckFailed", "message": "x" * 10_000}, log
    )
    text = log.read_text()
    assert len(text.encode()) <= 4000
    assert json.loads(text)["message"].endswith("…(truncated)")
    write_termination_log({"status": "Succeeded"}, tmp_path / "absent")  # no file: nothing written
    assert not (tmp_path / "absent").exists()


def test_labels_that_are_not_one_per_class_are_refused_before_anything_is_stored(
    files: Path, tmp_path: Path
) -> None:
    # Served, this artifact would pass its self-test and answer every request with a 500.
    spec = digits_deployment(
        f"file://{files / 'cnn.pt'}",
        model={"postprocessing": {"type": "classification",
                                  "classification": {"labels": ["zero", "one", "two"]}}},
    )  # fmt: skip
    with pytest.raises(errors.LabelsMismatchError) as err:
        stage(spec, str(tmp_path / "store"))
    assert (
        str(err.value) == "3 class labels, but the model's first output has 10 classes (shape [10])"
    )
    assert err.value.exit_code == 20
    assert_nothing_published(tmp_path / "store")


def test_a_model_that_rejects_the_declared_inputs_exits_with_its_code_and_no_traceback(
    files: Path, tmp_path: Path
) -> None:
    doc = digits_deployment(f"file://{files / 'cnn.pt'}").to_manifest()
    doc["spec"]["model"]["inputs"] = [{"name": "image", "shape": [3, 5, 5]}]  # not 1x8x8
    path = tmp_path / "wrong-shape.yaml"
    path.write_text(json.dumps(doc))
    log = tmp_path / "termination-log"
    log.touch()
    done = run_cli(str(path), "--dest", str(tmp_path / "store"), "--termination-log", str(log))
    assert done.returncode == errors.InputMismatchError.exit_code == 19
    assert "Traceback" not in done.stderr
    summary = json.loads(log.read_text())
    assert summary["reason"] == "InputMismatch"
    assert summary["message"].startswith(
        "the model rejects the declared inputs ([2, 3, 5, 5] torch.float32, batch first): "
    )
    assert_nothing_published(tmp_path / "store")
