"""One tenant's artifacts are not another's (issue 16, item 4): the same model in two
namespaces is staged twice, each copy under its own namespace's prefix of the store, with no
cache hit across them; deleting one ModelDeployment releases only its own namespace's copies.
Against the real API server, with real staging Jobs run by the executor."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from tests.operator.conftest import Kube, digits_spec


def store_keys(store: Path) -> set[str]:
    return (
        {p.name for p in store.iterdir() if not p.name.startswith(".")} if store.exists() else set()
    )


def test_each_namespace_stages_its_own_copy_and_deleting_releases_only_its_own(
    kube: Kube,
    start_operator,  # type: ignore[no-untyped-def]
    store_dir: Path,
    api_client: client.ApiClient,
    namespace: str,
    second_namespace: str,
) -> None:
    other = Kube(api_client, second_namespace)
    other_dir = store_dir.parent / second_namespace
    start_operator(namespaces=[namespace, second_namespace])
    kube.create("digits", digits_spec())
    kube.wait_condition("digits", "Ready", "True")
    key = kube.get("digits")["status"]["artifact"]["key"]  # type: ignore[index]
    assert key in store_keys(store_dir)
    assert (store_dir / ".owners" / key / f"{namespace}.digits").exists()

    # The same model and options in another namespace: the same content key, but no cache hit
    # on the first namespace's artifact. It is staged again, under its own prefix.
    other.create("digits", digits_spec())
    staged = other.wait_condition("digits", "ArtifactReady", "True", "Staged", timeout=180)
    assert key in staged["message"]
    assert other.get("digits")["status"]["artifact"]["uri"].endswith(f"/{second_namespace}/{key}")  # type: ignore[index]
    assert key in store_keys(other_dir)
    assert not (store_dir / ".owners" / key / f"{second_namespace}.digits").exists()

    # A spec change leaves a second artifact, in the first namespace only.
    kube.patch_spec("digits", {"serving": {"batching": {"maxBatchSize": 4}}})
    kube.wait(
        "the second artifact",
        lambda: kube.get("digits")["status"]["artifact"]["key"] != key,  # type: ignore[index]
        timeout=180,
    )
    second_key = kube.get("digits")["status"]["artifact"]["key"]  # type: ignore[index]
    assert {key, second_key} <= store_keys(store_dir)
    assert second_key not in store_keys(other_dir)

    # Deleting the first removes both of its artifacts; the other namespace's copy stays.
    kube.custom.delete_namespaced_custom_object(
        "modeldeploy.io", "v1alpha1", namespace, "modeldeployments", "digits"
    )
    kube.wait("the ModelDeployment to be gone", lambda: kube.get("digits") is None)
    assert not {key, second_key} & store_keys(store_dir)
    assert key in store_keys(other_dir)
    kube.wait("its InferenceService to be collected", lambda: kube.isvc("digits") is None)
    assert other.isvc("digits") is not None

    # Deleting the other removes its copy too.
    other.custom.delete_namespaced_custom_object(
        "modeldeploy.io", "v1alpha1", second_namespace, "modeldeployments", "digits"
    )
    other.wait("the second ModelDeployment to be gone", lambda: other.get("digits") is None)
    assert key not in store_keys(other_dir)
