"""Forward models of the data, as importable Pyro models: what ``bayessky run NAME`` runs.

A model module defines ``model(data, **options)`` (a Pyro model observing ``data``) and may define
``guide`` (for SVI), ``grid`` (axes for the grid engine, or a function of the options returning
them), ``DEFAULTS`` (engine settings), ``MAP_SITE`` (the site holding a reconstructed map) and
``NOISE_OPTION`` (the name of its noise-rms option, set per map by ``bayessky run --noise``).
Its docstring writes the model as the papers do; its first line is what ``bayessky models``
prints. A user's model script (``inference/*.py``) follows the same contract.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MODELS", "load_model", "describe"]

# name -> module (relative to this package); add a line when you add a model
MODELS: dict[str, str] = {
    "hi_parameters": ".hi_parameters",
    "dust_inpainting": ".dust_inpainting",
    "blob_inpainting": ".blob_inpainting",
    "cmb_lensing": ".cmb_lensing",
}


def load_model(name: str) -> ModuleType:
    """The packaged model module ``name`` (a key of :data:`MODELS`)."""
    if name not in MODELS:
        known = ", ".join(sorted(MODELS)) or "none"
        raise ValueError(f"model: no packaged model named {name!r} (known: {known})")
    return importlib.import_module(MODELS[name], __name__)


def describe() -> dict[str, str]:
    """``{name: first line of the module docstring}`` for every packaged model."""
    out = {}
    for name in sorted(MODELS):
        doc = (load_model(name).__doc__ or "").strip()
        out[name] = doc.splitlines()[0] if doc else ""
    return out
