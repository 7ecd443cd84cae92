"""Test support: a real kube-apiserver + etcd control plane (see :mod:`.controlplane`)."""

from modeldeploy.testing.controlplane import Assets, ControlPlane, ControlPlaneError

__all__ = ["Assets", "ControlPlane", "ControlPlaneError"]
