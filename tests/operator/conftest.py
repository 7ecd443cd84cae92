"""The operator against the real control plane, with the local executor playing kubelet and
KServe. One executor for the session; each test starts its own operator, scoped to the test's
namespace, so that killing or reconfiguring it disturbs no other test."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.support import Assets
from tests.support.controlplane import REPO_ROOT
from tests.support.processes import LocalStack
from tests.support.prometheus import Prometheus, file_targets

MD = ("modeldeploy.io", "v1alpha1", "modeldeployments")
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")


def digits_spec(**overrides: Any) -> dict[str, Any]:
    """examples/digits-cpu.yaml's spec, with ``overrides`` merged in section by section."""
    import yaml

    spec: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples" / "digits-cpu.yaml").read_text())[
        "spec"
    ]
    for section, values in overrides.items():
        spec[section] = {**spec.get(section, {}), **values}
    return spec


class Kube:
    """What the tests read and write, with waiting built in."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace

    def create(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
                "metadata": {"name": name}, "spec": spec}  # fmt: skip
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            *MD[:2], self.namespace, MD[2], body
        )
        return result

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            *MD[:2], self.namespace, MD[2], name, {"spec": spec}
        )

    def _read(self, kind: tuple[str, str, str], name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                *kind[:2], self.namespace, kind[2], name
            )
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise
        return found

    def get(self, name: str) -> dict[str, Any] | None:
        return self._read(MD, name)

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        body = self.get(name) or {}
        for cond in (body.get("status") or {}).get("conditions") or []:
            if cond["type"] == kind:
                return dict(cond)
        return {}

    def isvc(self, name: str) -> dict[str, Any] | None:
        return self._read(ISVC, name)

    def jobs(self, name: str) -> list[dict[str, Any]]:
        found = self.batch.list_namespaced_job(
            self.namespace, label_selector=f"modeldeploy.io/deployment={name}"
        )
        return [client.ApiClient().sanitize_for_serialization(j) for j in found.items]

    def pods(self, job: str) -> list[Any]:
        return list(
            self.core.list_namespaced_pod(
                self.namespace, label_selector=f"batch.kubernetes.io/job-name={job}"
            ).items
        )

    def events(self, name: str) -> list[tuple[str, str]]:
        """(type, reason) of the Events about ``name``, oldest first."""
        events = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        ).items
        ordered = sorted(events, key=lambda e: e.metadata.creation_timestamp)
        return [(e.type, e.reason) for e in ordered]

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last status:\n{self._dump()}")
            time.sleep(0.25)

    def wait_condition(
        self, name: str, kind: str, status: str, reason: str | None = None, timeout: float = 120.0
    ) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            cond = self.condition(name, kind)
            ok = cond.get("status") == status and (reason is None or cond.get("reason") == reason)
            return cond if ok else None

        found: dict[str, Any] = self.wait(f"{kind}={status} ({reason})", matches, timeout)
        return found

    def _dump(self) -> str:
        items = self.custom.list_namespaced_custom_object(*MD[:2], self.namespace, MD[2])["items"]
        return json.dumps([i.get("status") for i in items], indent=1)[:6000]


@pytest.fixture(scope="module")
def prometheus(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = Prometheus.start(
        Assets.provide(),
        tmp_path_factory.mktemp("prometheus"),
        file_targets(stack.workdir / "executor" / "prometheus-targets.json"),
    )
    yield server.url
    server.stop()
