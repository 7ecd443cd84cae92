"""A Node for the scheduler to bind pods to: registered as a kubelet registers itself, with
allocatable CPU, memory and a configurable ``nvidia.com/gpu`` count and GPU product label (what
the NVIDIA device plugin and GPU feature discovery would report).

The node's InternalIP is its pod bridge's address (``network.py``): what pods reach the node at.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from kubernetes import client

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


@dataclass(frozen=True)
class NodeShape:
    name: str = "node-0"
    cpu: str = "16"
    memory: str = "64Gi"
    pods: str = "110"
    gpus: int = 0
    gpu_product: str | None = None


def get_node(shape: NodeShape) -> dict[str, Any]:
    """The Node object, as a kubelet creates it on registration."""
    labels = {"kubernetes.io/hostname": shape.name, "kubernetes.io/os": "linux",
              "kubernetes.io/arch": "amd64"}  # fmt: skip
    if shape.gpu_product:
        labels[GPU_PRODUCT_LABEL] = shape.gpu_product
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": shape.name, "labels": labels}}


def get_node_status(
    shape: NodeShape, now: datetime.datetime, address: str = "127.0.0.1"
) -> dict[str, Any]:
    """Its status: capacity, allocatable and a Ready condition, as the kubelet reports them."""
    resources = {"cpu": shape.cpu, "memory": shape.memory, "pods": shape.pods}
    if shape.gpus:
        resources[GPU_RESOURCE] = str(shape.gpus)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "registered by the test node agent",
        "lastHeartbeatTime": stamp,
        "lastTransitionTime": stamp,
    }
    addresses = [
        {"type": "InternalIP", "address": address},
        {"type": "Hostname", "address": shape.name},
    ]
    return {
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [ready],
            "addresses": addresses,
        }
    }


def register(api: client.ApiClient, shape: NodeShape, address: str = "127.0.0.1") -> None:
    """Create the Node, report its status (a create ignores the status), then clear the
    ``node.kubernetes.io/not-ready`` taint the API server's TaintNodesByCondition admission put
    on it: the node lifecycle controller would, once the node reports Ready, and it is off here
    (``tests/support/controllers.py``)."""
    core = client.CoreV1Api(api)
    core.create_node(get_node(shape))
    now = datetime.datetime.now(datetime.UTC)
    core.patch_node_status(shape.name, get_node_status(shape, now, address))
    core.patch_node(shape.name, {"spec": {"taints": None}})
