"""The package layering of bayessky, checked by walking every import in the source (ast).

Rules (README, "How it fits together"):

1. A package imports only packages below it in the data flow (``LAYERS``, lowest first; packages
   on one line are independent of each other). The root helpers ``bayessky._validate``,
   ``bayessky._lazy`` and ``bayessky.atomic`` import no package and may be used by all.
2. No private name crosses a package: ``from bayessky.x import _y`` or an import of a private
   module ``bayessky.x._m`` is allowed only inside ``bayessky.x`` itself (and the root helpers
   inside ``bayessky``). Benchmarks, examples and the inference scripts use public names only.
3. No import cycle between modules, counting imports inside functions too.
4. Every package folder is listed in pyproject.toml (the wheel is built from that list).

Imports inside functions count: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "bayessky"

# lowest first; a tuple is one layer of mutually independent packages
LAYERS: list[tuple[str, ...]] = [
    ("sky",),
    ("physics",),
    ("data", "stats"),
    ("nn",),
    ("distributions",),
    ("priors",),
    ("families",),
    ("models",),
    ("infer",),
    ("survey",),
    ("train",),
    ("plot",),
    ("cli",),
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
ROOT_HELPERS = {"_validate", "_lazy", "atomic"}  # bayessky/<name>.py, below every package
FACADE = {"__init__", "__main__"}  # bayessky/__init__.py (load_prior) and python -m bayessky


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules(root: Path) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted((root / "bayessky").rglob("*.py"))}


def _imports(path: Path, module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) for every import statement, at any depth."""
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append((alias.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [a.name for a in node.names], node.lineno))
    return out


def _package(module: str) -> str | None:
    """The first-level package of a bayessky module (None for the root modules)."""
    parts = module.split(".")
    if parts[0] != "bayessky" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in RANK or (PKG / parts[1]).is_dir() else None


def _root_module(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "bayessky" and len(parts) == 2 and _package(module) is None:
        return parts[1]
    return None


def _resolve(target: str, names: list[str], modules: dict[str, Path]) -> list[str]:
    """The bayessky modules an import statement loads (``from pkg import sub`` loads pkg.sub)."""
    if not (target == "bayessky" or target.startswith("bayessky.")):
        return []
    hits = [target] if target in modules else []
    hits += [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
    return hits


def test_every_package_sits_in_a_layer():
    packages = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages - set(RANK) == set(), "add the new package to LAYERS (and the README's list)"


def layer_violations(root: Path) -> list[str]:
    modules = _modules(root)
    bad = []
    for module, path in modules.items():
        own = _package(module)
        root_mod = _root_module(module)
        if own is None and (root_mod in FACADE or module == "bayessky"):
            continue  # the facade re-exports load_prior; python -m bayessky runs the CLI
        for target, names, line in _imports(path, module):
            for dep in _resolve(target, names, modules):
                dep_pkg = _package(dep)
                if own is None:  # a root helper imports no package
                    if dep_pkg is not None or _root_module(dep) not in ROOT_HELPERS | {None}:
                        bad.append(f"{path.relative_to(root)}:{line}: root helper imports {dep}")
                    continue
                if dep_pkg is None:
                    if _root_module(dep) not in ROOT_HELPERS and dep != "bayessky":
                        bad.append(f"{path.relative_to(root)}:{line}: imports the facade module {dep}")
                    # the facade's names (load_prior) come from priors; __version__ is for all
                    facade_names = [n for n in names if f"bayessky.{n}" not in modules and n != "__version__"]
                    if dep == "bayessky" and facade_names and RANK[own] <= RANK["priors"]:
                        bad.append(f"{path.relative_to(root)}:{line}: {own} imports {facade_names} from "
                                   "the bayessky facade (they live in priors, which is not below it)")
                    continue
                if dep_pkg != own and RANK[dep_pkg] >= RANK[own]:
                    bad.append(f"{path.relative_to(root)}:{line}: {own} imports {dep} "
                               f"({dep_pkg} is not below {own})")
    return bad


def test_packages_import_only_lower_layers():
    assert layer_violations(ROOT) == []


def _private_crossings(path: Path, module: str | None, root: Path) -> list[str]:
    own = _package(module) if module else None
    bad = []
    imports = _imports(path, module or "__outside__")
    for target, names, line in imports:
        if not (target == "bayessky" or target.startswith("bayessky.")):
            continue
        inside_bayessky = module is not None
        tgt_pkg = _package(target) if target != "bayessky" else None
        same_pkg = inside_bayessky and tgt_pkg is not None and tgt_pkg == own
        parts = target.split(".")
        private_part = next((p for p in parts[1:] if p.startswith("_") and p != "__init__"), None)
        if private_part:
            helper = len(parts) == 2 and private_part in ROOT_HELPERS
            if not same_pkg and not (helper and inside_bayessky):
                bad.append(f"{path.relative_to(root)}:{line}: imports private module {target}")
        for name in names:
            helper = target == "bayessky" and inside_bayessky and name in ROOT_HELPERS
            if name.startswith("_") and not name.startswith("__") and not same_pkg and not helper:
                bad.append(f"{path.relative_to(root)}:{line}: imports private name {target}.{name}")
    return bad


def private_violations(root: Path) -> list[str]:
    bad = []
    for module, path in _modules(root).items():
        bad += _private_crossings(path, module, root)
    for folder in ("benchmarks", "examples", "inference"):
        for path in sorted((root / folder).glob("*.py")):
            bad += _private_crossings(path, None, root)
    return bad


def test_no_private_name_crosses_a_package():
    assert private_violations(ROOT) == []


def import_cycles(root: Path) -> list[list[str]]:
    modules = _modules(root)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for target, names, _ in _imports(path, module):
            for dep in _resolve(target, names, modules):
                if dep != module and not module.startswith(dep + "."):
                    graph[module].add(dep)
    # Tarjan's strongly connected components; a component with > 1 module is a cycle
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            # a package's __init__ importing its own submodules lazily is not a cycle of logic
            real = [c for c in comp if not any(o != c and o.startswith(c + ".") for o in comp)]
            if len(real) > 1:
                cycles.append(sorted(comp))

    import sys

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycle_between_modules():
    assert import_cycles(ROOT) == []


def test_pyproject_lists_every_package():
    text = (ROOT / "pyproject.toml").read_text()
    listed = set(re.findall(r'"(bayessky(?:\.[a-z_]+)*)"', text.split("packages = [", 1)[1].split("]", 1)[0]))
    folders = {_module_name(p.parent, ROOT) for p in PKG.rglob("__init__.py")}
    assert folders - listed == set(), "list the new package in pyproject.toml [tool.setuptools] packages"


@pytest.mark.parametrize("case", ["upward", "private", "cycle"])
def test_the_checks_catch_violations(tmp_path, case):
    """Negative controls: a planted violation of each rule is reported, on a copy of the package."""
    import shutil

    shutil.copytree(PKG, tmp_path / "bayessky", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("benchmarks", "examples", "inference"):
        (tmp_path / folder).mkdir()
    if case == "upward":
        (tmp_path / "bayessky" / "sky" / "bad.py").write_text("from ..infer import nuts\n")
        assert any("sky imports bayessky.infer" in v for v in layer_violations(tmp_path))
    elif case == "private":
        (tmp_path / "benchmarks" / "bad.py").write_text("from bayessky.infer._model import FlatPotential\n")
        assert any("private module bayessky.infer._model" in v for v in private_violations(tmp_path))
    else:
        (tmp_path / "bayessky" / "sky" / "cyc_a.py").write_text("def f():\n    from . import cyc_b\n")
        (tmp_path / "bayessky" / "sky" / "cyc_b.py").write_text("from .cyc_a import f\n")
        assert ["bayessky.sky.cyc_a", "bayessky.sky.cyc_b"] in import_cycles(tmp_path)
