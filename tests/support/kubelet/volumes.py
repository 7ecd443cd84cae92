"""A pod's volumes as host folders, as the kubelet's volume plugins provide them:

- ``emptyDir``: a folder of the pod's own, mode 0777 as the kubelet makes it;
- ``persistentVolumeClaim``: the bound PersistentVolume's ``hostPath`` or ``local`` path (the
  plugins a single node has), read-only when the pod's volume says so;
- ``hostPath``: the path;
- ``configMap`` and ``secret``: their keys written as files (``items`` place keys at paths);
- ``projected``: a bound service-account token from the TokenRequest API (audience and expiry
  as asked), ``configMap`` and ``downwardAPI`` (``metadata.*``) sources, as the kubelet
  projects ``kube-api-access-*``.

The token is fetched once at start; a pod that outlives its expiry would need the kubelet's
refresh, which the stand-in does not do (a token asked for lasts an hour at least).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client


class VolumeError(RuntimeError):
    """A volume cannot be set up; the pod's container waits with this message."""


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool

    def spec(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "readOnly": self.read_only}


def _write(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o644)


def _keyed(data: dict[str, bytes], items: list[dict[str, Any]] | None) -> dict[str, bytes]:
    if not items:
        return data
    return {item["path"]: data[item["key"]] for item in items if item["key"] in data}


def _field(pod: dict[str, Any], path: str) -> str:
    meta = pod["metadata"]
    if path.startswith("metadata.labels") or path.startswith("metadata.annotations"):
        group = path.split(".")[1]
        if path == f"metadata.{group}":
            return "\n".join(f'{k}="{v}"' for k, v in sorted((meta.get(group) or {}).items()))
        key = path[len(f"metadata.{group}['") : -2]
        return str((meta.get(group) or {}).get(key, ""))
    return str(meta.get(path.removeprefix("metadata."), ""))


class Volumes:
    def __init__(self, core: client.CoreV1Api, pod: dict[str, Any], home: Path) -> None:
        self.core, self.pod, self.home = core, pod, home
        self.namespace = pod["metadata"]["namespace"]
        self.paths: dict[str, tuple[Path, bool]] = {}

    def set_up(self) -> None:
        """Every volume of the pod, before any container starts (as the kubelet waits for all
        of them to be attached and mounted)."""
        for volume in self.pod["spec"].get("volumes") or []:
            self.paths[volume["name"]] = self._provide(volume)

    def mounts(self, container: dict[str, Any]) -> list[Mount]:
        found = []
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in self.paths:
                raise VolumeError(f'volumeMount "{mount["name"]}" names no volume of the pod')
            source, volume_read_only = self.paths[mount["name"]]
            if mount.get("subPath"):
                source = source / mount["subPath"]
                if not source.exists():  # the kubelet creates a missing subPath folder
                    source.mkdir(parents=True, mode=0o777)
            read_only = bool(mount.get("readOnly")) or volume_read_only
            found.append(Mount(str(source), mount["mountPath"], read_only))
        return found

    def _folder(self, name: str) -> Path:
        folder = self.home / "volumes" / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _provide(self, volume: dict[str, Any]) -> tuple[Path, bool]:
        name = volume["name"]
        if "emptyDir" in volume:
            folder = self._folder(name)
            folder.chmod(0o777)
            return folder, False
        if "hostPath" in volume:
            return Path(volume["hostPath"]["path"]), False
        if claim := volume.get("persistentVolumeClaim"):
            return self._claim(claim["claimName"]), bool(claim.get("readOnly"))
        if source := volume.get("configMap"):
            data = self._config_map(source["name"], bool(source.get("optional")))
            _write(self._folder(name), _keyed(data, source.get("items")))
            return self._folder(name), True
        if source := volume.get("secret"):
            data = self._secret(source["secretName"], bool(source.get("optional")))
            _write(self._folder(name), _keyed(data, source.get("items")))
            return self._folder(name), True
        if projected := volume.get("projected"):
            files: dict[str, bytes] = {}
            for part in projected.get("sources") or []:
                files.update(self._projected(part))
            _write(self._folder(name), files)
            return self._folder(name), True
        raise VolumeError(f'volume "{name}": the node agent has no plugin for {sorted(volume)}')

    def _claim(self, claim_name: str) -> Path:
        claim = self.core.read_namespaced_persistent_volume_claim(claim_name, self.namespace)
        if not claim.spec.volume_name or (claim.status and claim.status.phase != "Bound"):
            raise VolumeError(f'persistentvolumeclaim "{claim_name}" is not bound')
        volume = self.core.read_persistent_volume(claim.spec.volume_name).spec
        source = volume.host_path or volume.local
        if source is None:
            raise VolumeError(
                f'persistentvolume "{claim.spec.volume_name}": only hostPath and local volumes '
                "can be mounted on this node"
            )
        path = Path(source.path)
        path.mkdir(parents=True, exist_ok=True)  # hostPath type DirectoryOrCreate
        return path

    def _read(self, kind: str, name: str, optional: bool) -> Any:
        """The ConfigMap or Secret, or None when it is missing and optional."""
        read = (self.core.read_namespaced_config_map if kind == "configmap"
                else self.core.read_namespaced_secret)  # fmt: skip
        try:
            return read(name, self.namespace)
        except client.ApiException as err:
            if err.status == 404 and optional:
                return None
            raise VolumeError(f'{kind} "{name}": {err.reason}') from err

    def _config_map(self, name: str, optional: bool) -> dict[str, bytes]:
        found = self._read("configmap", name, optional)
        if found is None:
            return {}
        data = {k: v.encode() for k, v in (found.data or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (found.binary_data or {}).items()})
        return data

    def _secret(self, name: str, optional: bool) -> dict[str, bytes]:
        found = self._read("secret", name, optional)
        if found is None:
            return {}
        return {k: base64.b64decode(v) for k, v in (found.data or {}).items()}

    def _projected(self, part: dict[str, Any]) -> dict[str, bytes]:
        if token := part.get("serviceAccountToken"):
            return {token["path"]: self._token(token).encode()}
        if source := part.get("configMap"):
            data = self._config_map(source["name"], bool(source.get("optional")))
            return _keyed(data, source.get("items"))
        if source := part.get("secret"):
            return _keyed(self._secret(source["name"], bool(source.get("optional"))),
                          source.get("items"))  # fmt: skip
        if source := part.get("downwardAPI"):
            return {item["path"]: _field(self.pod, item["fieldRef"]["fieldPath"]).encode()
                    for item in source.get("items") or [] if "fieldRef" in item}  # fmt: skip
        raise VolumeError(f"projected source {sorted(part)} is not supported on this node")

    def _token(self, token: dict[str, Any]) -> str:
        """A token bound to this pod, as the kubelet asks for one."""
        meta, spec = self.pod["metadata"], self.pod["spec"]
        account = spec.get("serviceAccountName") or "default"
        request = {"spec": {
            "audiences": [token["audience"]] if token.get("audience") else None,
            "expirationSeconds": int(token.get("expirationSeconds") or 3607),
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                               "uid": meta["uid"]},
        }}  # fmt: skip
        made = self.core.create_namespaced_service_account_token(account, self.namespace, request)
        return str(made.status.token)
