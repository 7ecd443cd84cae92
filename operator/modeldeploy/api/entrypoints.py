"""Which ``state_dict`` entrypoints may run in a staging Job: an allow-list of module prefixes.

An entrypoint is ``pkg.module:factory``, imported and called inside the staging pod. Without a
list, a spec could name any importable callable, ``os:system`` with ``entrypointArgs:
{command: ...}`` among them. The operator's config holds the list; the operator refuses a spec
outside it before any Job exists, and passes it to the Job, where staging checks it again before
importing anything. ``modeldeploy stage`` on a laptop, without the variable, allows any.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

ENV = "MODELDEPLOY_ENTRYPOINT_MODULES"
"""Comma-separated module prefixes, set on the staging Job by the operator."""

DEFAULT_MODULES = ("torchvision.models", "timm", "transformers")
"""The model zoos whose factories build a module from keyword arguments and nothing else."""


def module_of(entrypoint: str) -> str:
    return entrypoint.partition(":")[0]


def allowed(entrypoint: str, modules: Sequence[str]) -> bool:
    """``entrypoint``'s module is one of ``modules`` or inside one of them (``timm`` allows
    ``timm.models``, not ``timmy``)."""
    module = module_of(entrypoint)
    return any(module == m or module.startswith(m + ".") for m in modules)


def from_env(env: dict[str, str] | None = None) -> tuple[str, ...] | None:
    """The allow-list the operator passed, or None when staging runs without one."""
    value = (os.environ if env is None else env).get(ENV)
    return None if value is None else parse(value)


def parse(value: str) -> tuple[str, ...]:
    """``"a.b, c"`` → ``("a.b", "c")``."""
    return tuple(m.strip() for m in value.split(",") if m.strip())


def refusal(entrypoint: str, modules: Sequence[str]) -> str:
    return (
        f"entrypoint {entrypoint}: module {module_of(entrypoint)} is not in the allow-list "
        f"({', '.join(modules) or 'empty'}); the operator's entrypointModules setting decides "
        "which modules a staging Job may import"
    )
