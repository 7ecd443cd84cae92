"""The operator, shared by every namespace, reads what tenants produce with a bound: a golden
file's bomb, a huge or hostile Prometheus answer (issue 16, item 1 and part of item 2).

Each test is the attack it stops, against the real readers: the artifact store's folder
reader, the golden-sample reader the operator and the runtime share, and ``prometheus_value``
against a real HTTP server on loopback that plays a tenant's "Prometheus".
"""

from __future__ import annotations

import http.server
import io
import json
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modeldeploy.artifacts.golden import GOLDEN_MAX_BYTES, golden_arrays
from modeldeploy.artifacts.manifest import (
    MANIFEST,
    ArtifactError,
    ArtifactManifest,
    GoldenRecord,
    ModelFile,
    Signature,
    Tensor,
)
from modeldeploy.artifacts.store import StoreError
from modeldeploy.controller.analysis import load_golden
from modeldeploy.controller.prometheus_client import MAX_BYTES as PROMETHEUS_MAX_BYTES
from modeldeploy.controller.prometheus_client import PrometheusClient

MIB = 1024 * 1024


def npy_bomb(path: Path, declared: int) -> None:
    """A ``golden.npz`` whose one array declares ``declared`` float32 zeros: a few hundred KB
    compressed, ``4 * declared`` bytes once decompressed."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (declared,)}
    )
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("input:image.npy", "w", force_zip64=True) as member,
    ):
        member.write(header.getvalue())
        zeros = bytes(MIB)
        for _ in range(declared * 4 // MIB):
            member.write(zeros)


def artifact_with(store: Path, golden: Path) -> None:
    folder = store / "digits-0123456789abcdef0123" / "digits"
    folder.mkdir(parents=True)
    manifest = ArtifactManifest(
        name="digits",
        signature=Signature(
            inputs=[Tensor(name="image", datatype="FP32", shape=[-1, 64])],
            outputs=[Tensor(name="output", datatype="FP32", shape=[-1, 10])],
        ),
        golden=GoldenRecord(file="golden.npz", count=4),
        model=ModelFile(sha256="sha256:" + "0" * 64, size_bytes=0),
    )
    (folder / MANIFEST).write_text(manifest.dumps())
    golden.rename(folder / "golden.npz")


def test_a_golden_deflate_bomb_is_refused_for_what_it_declares_without_decompressing(
    tmp_path: Path,
) -> None:
    bomb = tmp_path / "bomb.npz"
    npy_bomb(bomb, declared=256 * MIB // 4)  # 256 MiB of zeros
    assert bomb.stat().st_size < 2 * MIB
    store = tmp_path / "store"
    artifact_with(store, bomb)
    # In a process of its own, to read its peak memory: the operator's path, store to arrays.
    probe = f"""
import resource, sys
from modeldeploy.controller.analysis import load_golden
from modeldeploy.artifacts.manifest import ArtifactError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_golden("file://{store}", "digits-0123456789abcdef0123", "digits")
except ArtifactError as err:
    print("refused:", err)
print("grew_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert f"more than {GOLDEN_MAX_BYTES}" in done.stdout
    assert "268435456 bytes" in done.stdout  # the size it declared, named
    grew = int(done.stdout.split("grew_kb")[1])
    assert grew < 32 * 1024, done.stdout  # not a quarter GiB: nothing was decompressed


def test_a_golden_file_too_large_to_be_samples_is_never_read_whole(tmp_path: Path) -> None:
    store = tmp_path / "store"
    big = tmp_path / "big.npz"
    big.write_bytes(b"\0" * (GOLDEN_MAX_BYTES + 1))
    artifact_with(store, big)
    with pytest.raises(StoreError, match=f"larger than {GOLDEN_MAX_BYTES} bytes"):
        load_golden(f"file://{store}", "digits-0123456789abcdef0123", "digits")


def test_golden_arrays_refuse_objects_many_arrays_and_truncation() -> None:
    objects = io.BytesIO()
    with zipfile.ZipFile(objects, "w") as archive, archive.open("input:x.npy", "w") as member:
        np.lib.format.write_array_header_1_0(
            member, {"descr": "|O", "fortran_order": False, "shape": (2,)}
        )
    with pytest.raises(ArtifactError, match="holds Python objects"):
        golden_arrays(io.BytesIO(objects.getvalue()))

    many = io.BytesIO()
    np.savez(many, **{f"input:x{i}": np.zeros(1) for i in range(65)})
    with pytest.raises(ArtifactError, match="holds 65 arrays, more than 64"):
        golden_arrays(io.BytesIO(many.getvalue()))

    short = io.BytesIO()
    with zipfile.ZipFile(short, "w") as archive, archive.open("input:x.npy", "w") as member:
        np.lib.format.write_array_header_1_0(
            member, {"descr": "<f4", "fortran_order": False, "shape": (100,)}
        )
        member.write(b"\0" * 8)
    with pytest.raises(ArtifactError, match="cut short"):
        golden_arrays(io.BytesIO(short.getvalue()))

    fine = io.BytesIO()
    expected = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.savez_compressed(fine, **{"input:x": expected, "output:y": np.asfortranarray(expected)})
    inputs, outputs = golden_arrays(io.BytesIO(fine.getvalue()))
    np.testing.assert_array_equal(inputs["x"], expected)
    np.testing.assert_array_equal(outputs["y"], expected)


class Hostile(http.server.BaseHTTPRequestHandler):
    """A tenant's "Prometheus": an endless answer, or an error carrying a secret."""

    def do_GET(self) -> None:
        self.send_response(200)  # an error with 200, so the body is read, not refused by urllib
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        if "huge" in self.path:
            chunk = b" " * MIB
            try:
                for _ in range(64):  # 64 MiB unless the reader hangs up first
                    self.wfile.write(chunk)
                    type(self).sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        secret = "AWS_SECRET_ACCESS_KEY=" + "s" * 5000
        body = {"status": "error", "errorType": "bad_data", "error": secret, "data": secret}
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args: object) -> None:
        pass

    sent = 0


@pytest.fixture
def hostile() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_huge_prometheus_answer_is_cut_off_at_the_cap(hostile: str) -> None:
    Hostile.sent = 0
    with pytest.raises(RuntimeError, match=f"larger than {PROMETHEUS_MAX_BYTES} bytes"):
        PrometheusClient(f"{hostile}/huge").value("up", timeout=10)
    assert Hostile.sent < 16 * MIB  # the reader hung up; it did not take the 64 MiB


def test_what_a_tenants_prometheus_answers_is_not_copied_into_status(hostile: str) -> None:
    with pytest.raises(RuntimeError, match=r"Prometheus answered an error \(bad_data\)") as refused:
        PrometheusClient(hostile).value("up", timeout=10)
    assert "AWS_SECRET" not in str(refused.value)
    assert len(str(refused.value)) < 100


class HostileCanary(http.server.BaseHTTPRequestHandler):
    """A tenant's model answering the golden request without end, or with a secret in an
    error."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        if "secret" in self.path:
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"error": "AWS_SECRET_ACCESS_KEY=" + "s" * 5000}).encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Inference-Header-Content-Length", "2")
        self.end_headers()
        chunk = b"\0" * MIB
        try:
            for _ in range(64):
                self.wfile.write(chunk)
                type(self).sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: object) -> None:
        pass

    sent = 0


def test_a_canary_answering_the_golden_request_without_end_is_cut_off_at_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modeldeploy.controller import analysis

    monkeypatch.setattr(analysis, "ANSWER_MAX_BYTES", MIB)
    golden = analysis.Golden(
        {"x": np.zeros((1, 4), np.float32)}, {"y": np.zeros((1, 2), np.float32)}, 1e-3, 1e-3
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HostileCanary)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        HostileCanary.sent = 0
        with pytest.raises(ValueError, match=f"over {MIB} bytes; not read"):
            analysis.live_parity(url, "digits", golden, timeout=10)
        assert HostileCanary.sent < 16 * MIB  # the reader hung up; it did not take 64 MiB
        with pytest.raises(ValueError, match="HTTP 500") as refused:
            analysis.live_parity(f"{url}/secret", "digits", golden, timeout=10)
        assert str(refused.value) == "the canary answered HTTP 500 to the golden request"
    finally:
        server.shutdown()
