"""Which layer may import which, read from the source (ast), so a shortcut across a boundary
fails here rather than in a review:
- the artifact contract (``modeldeploy.artifacts``) depends on none of its writers or readers;
- the operator (``controller``) and the runtime read artifacts through it, never through
  ``staging``, whose image alone loads pickles;
- the runtime does not import the operator, nor the operator the runtime;
- the test doubles (``tests.support``: the control plane, the local executor, the demo) are not
  part of the package at all, so ``pip install modeldeploy`` ships only the product, and no
  module of it imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "modeldeploy"

FORBIDDEN = {
    "artifacts": ("staging", "controller", "runtime"),
    "api": ("staging", "controller", "runtime", "artifacts"),
    "controller": ("staging", "runtime"),
    "runtime": ("staging", "controller"),
    "staging": ("controller", "runtime"),
}


def imported(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_only_what_it_may(layer: str) -> None:
    files = sorted((PACKAGE / layer).glob("*.py"))
    assert files, layer
    crossings = [
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in files
        for module in sorted(imported(path))
        for other in FORBIDDEN[layer]
        if module == f"modeldeploy.{other}" or module.startswith(f"modeldeploy.{other}.")
    ]
    assert crossings == []


def test_the_package_ships_no_test_doubles_and_imports_none() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert modules
    doubles = [
        str(p.relative_to(PACKAGE))
        for p in modules
        if p.stem in ("executor", "controlplane", "demo")
    ]
    reaching = [
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in modules
        for module in sorted(imported(path))
        if module == "tests" or module.startswith("tests.")
    ]
    assert (doubles, reaching) == ([], [])


def loaded(modules: str, roots: tuple[str, ...]) -> list[str]:
    """The modules under ``roots`` that importing ``modules`` (comma-separated) loads, in a
    fresh interpreter."""
    import subprocess
    import sys

    probe = (
        f"import sys, {modules}; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {roots!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return list(ast.literal_eval(result.stdout))


def test_the_staging_steps_that_hold_the_store_never_load_torch() -> None:
    """``fetch`` and ``publish`` run with the store's credentials; neither may import the
    machinery that unpickles models (and both start in a fraction of the time)."""
    modules = "modeldeploy.staging.prepare, modeldeploy.staging.publish, modeldeploy.cli"
    assert loaded(modules, ("torch", "onnxruntime")) == []


def test_the_operator_loads_no_numpy_until_a_rollout_needs_it() -> None:
    """numpy (and tritonclient) cost memory in every operator; only the canary analysis needs
    them, and imports them then. The manifest's drift profile is plain models, not numpy."""
    modules = "modeldeploy.controller.handlers, modeldeploy.controller.engine, modeldeploy.artifacts.manifest"
    assert loaded(modules, ("numpy", "tritonclient")) == []
