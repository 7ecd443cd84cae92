"""Test support: a real kube-apiserver + etcd control plane (see :mod:`.controlplane`)."""

from tests.support.controlplane import (
    Assets,
    Cluster,
    ControlPlane,
    ControlPlaneError,
    ExistingCluster,
)

__all__ = ["Assets", "Cluster", "ControlPlane", "ControlPlaneError", "ExistingCluster"]
