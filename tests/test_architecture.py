"""The package's shape, checked: imports point one way (solver <- sweep.solvers <- sweep.spec <-
store <- engine <- adapt <- monitor <- commands), the solver knows nothing of the sweep layer,
Dask's private modules are never imported, and the lazy re-exports of each package resolve to what
they name."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# layer of each part of sweep/ (a module may import its own layer and lower ones)
LAYERS = {
    "solvers": 1,
    "spec": 2,
    "store": 3,
    "engine": 4,
    "adapt": 5,
    "monitor": 6,
    "commands": 7,
    "cli": 7,
}
BOTTOM = 0  # sweep/errors.py, config.py, provenance.py, units.py, machine.py, codec.py, ...


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "sweep":
        return None
    return LAYERS.get(parts[1], BOTTOM) if len(parts) > 1 else BOTTOM


def _imports(path: Path, package: str) -> list[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append(name)
            out += [f"{name}.{a.name}" for a in node.names]  # "from . import check" names a module
    return out


def _modules(folder: str) -> list[tuple[Path, str, str]]:
    """(path, module name, its package) of every module under ``folder``."""
    out = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        name = ".".join(parts)
        out.append((path, name, name if is_pkg else ".".join(parts[:-1])))
    return out


@pytest.mark.parametrize("path, module, package", _modules("sweep"), ids=lambda v: str(v))
def test_architecture_sweep_imports_point_one_way(path: Path, module: str, package: str) -> None:
    if module == "sweep":  # the public face: re-exports the API of every layer (lazily)
        return
    own = _layer(module)
    assert own is not None
    upward = sorted({m for m in _imports(path, package) if (layer := _layer(m)) is not None and layer > own})
    assert not upward, f"{module} (layer {own}) imports a higher layer: {upward}"


@pytest.mark.parametrize("path, module, package", _modules("solver"), ids=lambda v: str(v))
def test_architecture_solver_knows_nothing_of_the_sweep_layer(path: Path, module: str, package: str) -> None:
    bad = sorted({m for m in _imports(path, package) if m.split(".")[0] in ("sweep", "dask", "distributed")})
    assert not bad, f"{module} imports {bad}"


def test_architecture_no_private_dask_modules() -> None:
    for folder in ("sweep", "solver"):
        for path, module, package in _modules(folder):
            private = [
                m
                for m in _imports(path, package)
                if m.split(".")[0] in ("dask", "distributed") and any(p.startswith("_") for p in m.split("."))
            ]
            assert not private, f"{module} imports private Dask modules {private}"


@pytest.mark.parametrize(
    "package", ["sweep", "sweep.solvers", "sweep.spec", "sweep.store", "sweep.engine", "sweep.monitor"]
)
def test_architecture_lazy_reexports_resolve_and_are_listed(package: str) -> None:
    mod = importlib.import_module(package)
    assert set(mod.__all__) <= set(dir(mod))
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{package}.{name}"
    with pytest.raises(AttributeError):
        mod.no_such_name  # noqa: B018 - the attribute access is the test


def test_architecture_sweep_lists_its_api() -> None:
    import sweep

    for name in ("run_sweep", "SweepOptions", "SweepResult", "open_results", "Store", "load_packages"):
        assert name in dir(sweep) and name in sweep.__all__
    assert sweep.run_sweep.__module__ == "sweep.engine.sweep"
