"""A container's environment, as the kubelet builds it: the image's ENV, then ``envFrom``
(ConfigMaps and Secrets, with their prefix), then ``env`` (values, ``$(VAR)`` references to
earlier ones, and ``valueFrom`` field, resource, ConfigMap and Secret references), with
``HOSTNAME`` and the ``kubernetes`` Service's ``KUBERNETES_SERVICE_*`` variables.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from kubernetes import client

from tests.support.kubelet import images

_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(value: str, env: dict[str, str]) -> str:
    """``$(VAR)`` becomes VAR's value when it is defined, ``$$`` a ``$``; the rest is kept."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(one, value)


def _pod_field(pod: dict[str, Any], path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    fields = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
    }
    if path in fields:
        return str(fields[path])
    for group in ("labels", "annotations"):
        prefix = f"metadata.{group}['"
        if path.startswith(prefix):
            return str((meta.get(group) or {}).get(path[len(prefix) : -2], ""))
    raise ValueError(f"fieldRef {path} is not supported")


def build(core: client.CoreV1Api, pod: dict[str, Any], container: dict[str, Any],
          image: images.Image) -> dict[str, str]:  # fmt: skip
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {"PATH": images.path(), **dict(image.env)}
    env["HOSTNAME"] = pod["metadata"]["name"]
    kubernetes = core.read_namespaced_service("kubernetes", "default").spec
    env["KUBERNETES_SERVICE_HOST"] = kubernetes.cluster_ip
    env["KUBERNETES_SERVICE_PORT"] = str(kubernetes.ports[0].port)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        if ref := source.get("configMapRef"):
            data = core.read_namespaced_config_map(ref["name"], namespace).data or {}
            env.update({prefix + k: v for k, v in data.items()})
        if ref := source.get("secretRef"):
            raw = core.read_namespaced_secret(ref["name"], namespace).data or {}
            env.update({prefix + k: base64.b64decode(v).decode() for k, v in raw.items()})
    for var in container.get("env") or []:
        if "valueFrom" not in var:
            env[var["name"]] = expand(str(var.get("value", "")), env)
            continue
        source = var["valueFrom"]
        if ref := source.get("fieldRef"):
            env[var["name"]] = _pod_field(pod, ref["fieldPath"])
        elif ref := source.get("configMapKeyRef"):
            data = core.read_namespaced_config_map(ref["name"], namespace).data or {}
            env[var["name"]] = data[ref["key"]]
        elif ref := source.get("secretKeyRef"):
            raw = core.read_namespaced_secret(ref["name"], namespace).data or {}
            env[var["name"]] = base64.b64decode(raw[ref["key"]]).decode()
        elif ref := source.get("resourceFieldRef"):
            resources = container.get("resources") or {}
            kind, name = ref["resource"].split(".", 1)
            env[var["name"]] = str((resources.get(kind) or {}).get(name, "0"))
    return env
