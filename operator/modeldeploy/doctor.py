"""``modeldeploy doctor``: is ModelDeploy installed and working on this cluster?

The chart's ``helm test`` runs it in a pod; a person can run it from a laptop. Each check says
what it found in one line. The operator's health is asked of every operator pod, at the path and
port of the pod's own liveness probe, so it checks exactly what the kubelet checks, on every
replica, without DNS or a Service.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from typing import Any

from modeldeploy.api.modeldeployment import GROUP, PLURAL, VERSION

CRD_NAME = f"{PLURAL}.{GROUP}"
KSERVE_CRD = "inferenceservices.serving.kserve.io"


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, whether it is fine, and what was seen."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def _established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def crd_check(crd: dict[str, Any] | None, name: str, version: str | None) -> Check:
    """The CRD ``name`` exists, is Established and (when given) serves ``version``."""
    if crd is None:
        return Check(f"CRD {name}", False, "not installed")
    served = [v["name"] for v in (crd.get("spec") or {}).get("versions") or [] if v.get("served")]
    if not _established(crd):
        return Check(f"CRD {name}", False, "installed but not Established")
    if version is not None and version not in served:
        return Check(f"CRD {name}", False, f"serves {', '.join(served)}, not {version}")
    return Check(f"CRD {name}", True, f"Established, serving {', '.join(served)}")


def probe_url(pod: dict[str, Any]) -> str | None:
    """The URL of the pod's liveness probe (httpGet, port by number or by name); None without
    an IP or an HTTP probe."""
    ip = (pod.get("status") or {}).get("podIP")
    for container in (pod.get("spec") or {}).get("containers") or []:
        get = (container.get("livenessProbe") or {}).get("httpGet")
        if not get or not ip:
            continue
        port = get["port"]
        if isinstance(port, str) and not port.isdigit():
            named = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
            if port not in named:
                return None
            port = named[port]
        scheme = str(get.get("scheme") or "HTTP").lower()
        host = f"[{ip}]" if ":" in ip else ip
        return f"{scheme}://{host}:{port}{get.get('path') or '/'}"
    return None


def health_check(pod: dict[str, Any], timeout: float) -> Check:
    """GET the pod's liveness endpoint; fine on a 2xx."""
    name = f"operator pod {pod['metadata']['name']}"
    url = probe_url(pod)
    if url is None:
        phase = (pod.get("status") or {}).get("phase", "?")
        return Check(name, False, f"no IP or no HTTP liveness probe (phase {phase})")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            code = int(response.status)
    except OSError as err:
        return Check(name, False, f"{url}: {getattr(err, 'reason', err)}")
    return Check(name, 200 <= code < 300, f"{url} answered {code}")


def run_checks(
    api_client: Any, namespace: str, selector: str, runtime: str | None, timeout: float = 5.0
) -> list[Check]:
    """Every check, in the order a person would look: the APIs, the runtime, the operator."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    extensions = client.ApiextensionsV1Api(api_client)

    def crd(name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = api_client.sanitize_for_serialization(
                extensions.read_custom_resource_definition(name)
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return found

    checks = [
        crd_check(crd(CRD_NAME), CRD_NAME, VERSION),
        crd_check(crd(KSERVE_CRD), KSERVE_CRD, None),
    ]
    if runtime:
        try:
            client.CustomObjectsApi(api_client).get_cluster_custom_object(
                "serving.kserve.io", "v1alpha1", "clusterservingruntimes", runtime
            )
            checks.append(Check(f"ClusterServingRuntime {runtime}", True, "installed"))
        except ApiException as err:
            if err.status != 404:
                raise
            checks.append(Check(f"ClusterServingRuntime {runtime}", False, "not installed"))
    pods = client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector=selector)
    found = [api_client.sanitize_for_serialization(p) for p in pods.items]
    if not found:
        checks.append(Check("operator", False, f"no pod labelled {selector} in {namespace}"))
    checks += [health_check(pod, timeout) for pod in found]
    return checks
