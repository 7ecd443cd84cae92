"""Test support: a real kube-apiserver + etcd control plane (see :mod:`.controlplane`)."""

from modeldeploy.testing.controlplane import (
    Assets,
    Cluster,
    ControlPlane,
    ControlPlaneError,
    ExistingCluster,
)

__all__ = ["Assets", "Cluster", "ControlPlane", "ControlPlaneError", "ExistingCluster"]
