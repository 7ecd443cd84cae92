"""The content key covers the code a spec names (``spec.model.code``): fetch hashes the mounted
ConfigMap's files, as the kubelet lays them out (``..data`` links into a timestamped folder), so
the same weights built by other code never hit the first build's cache."""

from __future__ import annotations

from pathlib import Path

from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.staging.prepare import code_digest, prepare


def config_map_volume(root: Path, files: dict[str, str]) -> Path:
    """A folder laid out as the kubelet writes a ConfigMap volume."""
    data = root / "..2026_11_30_12_00_00.1"
    for name, text in files.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text(text)
    (root / "..data").symlink_to(data.name)
    for top in {name.split("/")[0] for name in files}:
        (root / top).symlink_to(f"..data/{top}")
    return root


def deployment(uri: str) -> ModelDeployment:
    return ModelDeployment.model_validate({
        "apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "m", "namespace": "ml"},
        "spec": {"model": {"uri": uri, "format": "state_dict", "entrypoint": "pkg.mod:build",
                           "code": {"configMap": "code"},
                           "inputs": [{"name": "x", "shape": [4]}]}},
    })  # fmt: skip


def test_the_digest_is_of_the_files_and_ignores_the_kubelets_bookkeeping(tmp_path: Path) -> None:
    one = config_map_volume(tmp_path / "one", {"pkg/mod.py": "A = 1\n", "pkg/__init__.py": ""})
    same = config_map_volume(tmp_path / "same", {"pkg/mod.py": "A = 1\n", "pkg/__init__.py": ""})
    other = config_map_volume(tmp_path / "other", {"pkg/mod.py": "A = 2\n", "pkg/__init__.py": ""})
    moved = config_map_volume(tmp_path / "moved", {"pkg/mod2.py": "A = 1\n", "pkg/__init__.py": ""})
    assert code_digest(one) == code_digest(same)  # other timestamps, same files
    assert code_digest(one) != code_digest(other)
    assert code_digest(one) != code_digest(moved)


def test_other_code_under_the_same_config_map_name_is_another_content_key(tmp_path: Path) -> None:
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"not read by fetch beyond its digest")
    spec = deployment(f"file://{weights}")
    first = config_map_volume(tmp_path / "first", {"pkg/mod.py": "def build(): ...\n"})
    second = config_map_volume(tmp_path / "second", {"pkg/mod.py": "def build(): return 1\n"})
    store = str(tmp_path / "store")
    keys = {
        prepare(spec, store, tmp_path / "a", first).key,
        prepare(spec, store, tmp_path / "b", first).key,
        prepare(spec, store, tmp_path / "c", second).key,
    }
    assert len(keys) == 2
