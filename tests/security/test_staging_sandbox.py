"""What a tenant's source can make the staging pod read or write (issue 16, "Also"): symbolic
links that lead out of the source, and archives too large or too many-membered to unpack. Each
is refused by ``modeldeploy stage`` itself, before anything is read through the link or
unpacked, with the UnsafeArchive reason."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from modeldeploy.staging import errors
from modeldeploy.staging.stage import stage
from tests.runtime import graphs
from tests.staging.conftest import deployment

pytestmark = pytest.mark.staging  # stages or trains models with PyTorch in its tests


def onnx_spec(uri: str):  # type: ignore[no-untyped-def]
    return deployment(
        "dtypes",
        uri,
        [{"name": f"in_{t.lower()}", "shape": [graphs.WIDTH], "dtype": t} for t in graphs.DTYPES],
        model={"format": "onnx"},
    )


def test_a_pvc_source_that_links_out_of_its_claim_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "elsewhere" / "token.onnx"  # what the link leads to: outside the claim
    secret.parent.mkdir()
    graphs.dtypes(secret)
    claim = tmp_path / "pvc" / "models"
    (claim / "team").mkdir(parents=True)
    (claim / "team" / "model.onnx").symlink_to(secret)
    (claim / "linked-dir").symlink_to(secret.parent, target_is_directory=True)
    monkeypatch.setenv("MODELDEPLOY_PVC_ROOT", str(tmp_path / "pvc"))
    with pytest.raises(errors.UnsafeArchiveError, match=r"team/model\.onnx is a symbolic link"):
        stage(onnx_spec("pvc://models/team/model.onnx"), str(tmp_path / "store"))
    with pytest.raises(errors.UnsafeArchiveError, match=r"models/linked-dir is a symbolic link"):
        stage(onnx_spec("pvc://models/linked-dir/token.onnx"), str(tmp_path / "store"))
    # The same file, really in the claim, stages.
    graphs.dtypes(claim / "team" / "real.onnx")
    assert stage(onnx_spec("pvc://models/team/real.onnx"), str(tmp_path / "store")).uri


def test_a_link_inside_a_source_folder_or_archive_is_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    graphs.dtypes(folder / "model.onnx")
    (folder / "environ.txt").symlink_to("/proc/self/environ")
    with pytest.raises(
        errors.UnsafeArchiveError, match=r"symbolic links are not followed: environ\.txt"
    ):
        stage(onnx_spec(f"file://{folder}"), str(tmp_path / "store"))
    # In an archive, a link pointing out is refused before unpacking.
    archive = tmp_path / "linked.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(folder / "model.onnx", arcname="model.onnx")
        link = tarfile.TarInfo("labels.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "/proc/self/environ"
        tar.addfile(link)
    with pytest.raises(errors.UnsafeArchiveError, match=r"'labels\.txt'"):
        stage(onnx_spec(f"file://{archive}"), str(tmp_path / "store"))


def test_an_archive_over_the_entry_or_size_cap_is_refused_from_its_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = graphs.dtypes(tmp_path / "model.onnx").read_bytes()
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as archive:
        archive.writestr("model.onnx", model)
        for i in range(30):
            archive.writestr(f"junk/{i}", b"")
    monkeypatch.setenv("MODELDEPLOY_ARCHIVE_MAX_ENTRIES", "20")
    with pytest.raises(errors.UnsafeArchiveError, match="has more than 20 entries, the limit"):
        stage(onnx_spec(f"file://{many}"), str(tmp_path / "store"))
    # A tar whose index declares a member of 5 GiB: refused for what it declares; the member's
    # data is not even there, so unpacking would have failed differently.
    bomb = tmp_path / "bomb.tar"
    with tarfile.open(bomb, "w") as tar:
        info = tarfile.TarInfo("model.onnx")
        info.size = len(model)
        tar.addfile(info, io.BytesIO(model))
    with tarfile.open(bomb, "a") as tar:
        huge = tarfile.TarInfo("weights.bin")
        huge.size = 5 << 30
        tar.addfile(huge)  # header only
    monkeypatch.setenv("MODELDEPLOY_ARCHIVE_MAX_ENTRIES", "10000")
    monkeypatch.setenv("MODELDEPLOY_ARCHIVE_MAX_BYTES", str(1 << 30))
    with pytest.raises(
        errors.UnsafeArchiveError, match=r"unpacks to \d+ bytes; the limit is 1073741824"
    ):
        stage(onnx_spec(f"file://{bomb}"), str(tmp_path / "store"))


def test_the_staging_pod_gets_a_network_policy_and_the_runtime_class_the_operator_names() -> None:
    from modeldeploy.controller.config import OperatorConfig
    from modeldeploy.controller.reconcile import plan
    from tests.unit.test_controller import NOW, body_of, example, observed

    config = OperatorConfig(
        artifact_store="pvc://artifacts/store",
        staging_egress=("10.96.0.0/12:9000", "0.0.0.0/0:443"),
        staging_runtime_class="gvisor",
    )
    result = plan(observed(body_of(example())), config, NOW)
    assert result.create_job is not None
    policy = result.create_network_policy
    assert policy is not None
    pod = result.create_job["spec"]["template"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == []
    assert policy["spec"]["egress"][1:] == [
        {
            "to": [{"ipBlock": {"cidr": "10.96.0.0/12"}}],
            "ports": [{"protocol": "TCP", "port": 9000}],
        },
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]},
    ]
    assert pod["spec"]["runtimeClassName"] == "gvisor"
    # Off, or without a runtime class: neither.
    plain = plan(
        observed(body_of(example())),
        OperatorConfig(artifact_store="pvc://artifacts/store", staging_network_policy=False),
        NOW,
    )
    assert plain.create_network_policy is None
    assert plain.create_job is not None
    assert "runtimeClassName" not in plain.create_job["spec"]["template"]["spec"]
    with pytest.raises(ValueError, match="use CIDR or CIDR:port"):
        OperatorConfig(staging_egress=("s3.example.com:443",))
