"""Load a PyTorch model the way it was saved. The only place untrusted pickles are unpickled.

This module runs inside the staging Job (or on the user's own machine via ``modeldeploy stage``),
never in the operator. ``pytorch`` (a pickled ``nn.Module``) needs ``weights_only=False``, which
can run arbitrary code from the file; ``state_dict`` loads with ``weights_only=True`` and builds
the module from trusted code named by the entrypoint.
"""

from __future__ import annotations

import importlib
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modeldeploy.api import entrypoints
from modeldeploy.api.model import ModelFormat
from modeldeploy.staging.errors import CorruptModelError, EntrypointError, FormatMismatchError

if TYPE_CHECKING:
    import torch


def sniff_format(path: Path) -> ModelFormat | None:
    """What the file's bytes say it is: TorchScript and torch.save archives are zip files with
    tell-tale entries; ONNX is a protobuf that parses as a ModelProto. None when unknown."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any("/code/" in n or n.endswith("constants.pkl") for n in names):
            return ModelFormat.TORCHSCRIPT
        if any(n.endswith("data.pkl") for n in names):
            return ModelFormat.PYTORCH  # a torch.save archive: module or state_dict
        return None
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        if model.graph.node:
            return ModelFormat.ONNX
    except Exception:
        pass
    return None


_SAVED_WITH = {
    ModelFormat.TORCHSCRIPT: "a TorchScript archive (torch.jit.save); set format: torchscript",
    ModelFormat.ONNX: "an ONNX model; set format: onnx",
    ModelFormat.PYTORCH: "a torch.save archive; set format: pytorch or state_dict",
}


def check_declared_format(path: Path, declared: ModelFormat) -> None:
    """Refuse a file whose bytes contradict the declared format, saying what it really is."""
    found = sniff_format(path)
    torch_save = {ModelFormat.PYTORCH, ModelFormat.STATE_DICT}
    if found is None:
        raise CorruptModelError(
            f"{path.name} is not a TorchScript, torch.save or ONNX file (declared format: "
            f"{declared}); the file may be truncated or corrupt"
        )
    if found == declared or (found == ModelFormat.PYTORCH and declared in torch_save):
        return
    raise FormatMismatchError(f"format is {declared}, but {path.name} is {_SAVED_WITH[found]}")


def _import_factory(entrypoint: str, code_dir: Path | None) -> Any:
    modules = entrypoints.from_env()
    if modules is not None and not entrypoints.allowed(entrypoint, modules):
        raise EntrypointError(entrypoints.refusal(entrypoint, modules))  # before any import
    module_name, _, attr = entrypoint.partition(":")
    if code_dir is not None and str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise EntrypointError(
            f"entrypoint {entrypoint}: cannot import {module_name}: {err}"
        ) from err
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise EntrypointError(f"entrypoint {entrypoint}: {module_name} has no callable {attr}")
    return factory


def _load_state_dict(
    path: Path, entrypoint: str, args: Mapping[str, Any], code_dir: Path | None
) -> torch.nn.Module:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CorruptModelError(
            f"{path.name}: cannot load as a state_dict with weights_only=True: {err}"
        ) from err
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise FormatMismatchError(
            f"format is state_dict, but {path.name} holds a {type(state).__name__}, not a mapping of tensors"
        )
    factory = _import_factory(entrypoint, code_dir)
    try:
        module = factory(**args)
    except Exception as err:
        raise EntrypointError(f"entrypoint {entrypoint}({dict(args)}) failed: {err}") from err
    if not isinstance(module, torch.nn.Module):
        raise EntrypointError(
            f"entrypoint {entrypoint} returned a {type(module).__name__}, not an nn.Module"
        )
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise EntrypointError(f"weights do not fit the module {entrypoint} builds: {err}") from err
    if result.missing_keys or result.unexpected_keys:
        raise EntrypointError(
            f"weights do not fit the module {entrypoint} builds: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return module


def load_torch(
    path: Path,
    declared: ModelFormat,
    entrypoint: str | None = None,
    entrypoint_args: Mapping[str, Any] | None = None,
    code_dir: Path | None = None,
) -> torch.nn.Module:
    """The source model in eval mode, on CPU."""
    import torch

    check_declared_format(path, declared)
    module: Any
    if declared == ModelFormat.TORCHSCRIPT:
        try:
            module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        except Exception as err:
            raise CorruptModelError(f"{path.name}: torch.jit.load failed: {err}") from err
    elif declared == ModelFormat.STATE_DICT:
        if not entrypoint:
            raise EntrypointError("format state_dict needs an entrypoint (pkg.module:factory)")
        module = _load_state_dict(path, entrypoint, entrypoint_args or {}, code_dir)
    elif declared == ModelFormat.PYTORCH:
        if code_dir is not None and str(code_dir) not in sys.path:
            sys.path.insert(0, str(code_dir))  # the pickled module's class must be importable
        try:
            module = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:
            raise CorruptModelError(f"{path.name}: torch.load failed: {err}") from err
        if isinstance(module, Mapping):
            raise FormatMismatchError(
                f"format is pytorch, but {path.name} holds a state_dict (a mapping of tensors); "
                "set format: state_dict and an entrypoint"
            )
        if not isinstance(module, torch.nn.Module):
            raise FormatMismatchError(
                f"format is pytorch, but {path.name} holds a {type(module).__name__}, not an nn.Module"
            )
    else:
        raise FormatMismatchError(f"format {declared} is not a PyTorch format")
    module.eval()
    return module  # type: ignore[no-any-return]
