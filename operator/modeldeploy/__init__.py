"""ModelDeploy: a Kubernetes-native serving operator for trained models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("modeldeploy")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
