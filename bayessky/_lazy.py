"""Lazy attribute loading for package ``__init__`` files.

Sub-packages export names from many modules; importing them all eagerly would pull in healpy,
arviz and matplotlib on ``import bayessky``. PEP 562 ``__getattr__`` defers each import to first
use while keeping ``from bayessky.physics import lens`` working.
"""

from __future__ import annotations

import importlib


def lazy_exports(package: str, table: dict[str, str]):
    """Return a module ``__getattr__`` resolving ``name`` from ``table[name]`` (a sub-module)."""

    def __getattr__(name: str):
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        mod = importlib.import_module(table[name], package)
        return mod if table[name].lstrip(".") == name else getattr(mod, name)

    return __getattr__
