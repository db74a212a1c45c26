"""ArviZ 0.x / 1.x compatibility: build InferenceData with ``az.from_dict``, add extra groups.

ArviZ 0.x takes groups as keywords (``from_dict(posterior=..., sample_stats=...)``) and returns an
``InferenceData``; ArviZ 1.x takes one mapping ``{group: {var: array}}`` and returns an xarray
``DataTree``. Both keep ``idata.posterior`` etc., so the rest of bayessky only goes through here.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping

import numpy as np

__all__ = ["from_dict", "add_group", "group_names", "get_group"]


def _az():
    with warnings.catch_warnings():
        # ArviZ 0.2x prints a FutureWarning about its 1.0 refactor on import.
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az


def _legacy() -> bool:
    return "posterior" in inspect.signature(_az().from_dict).parameters


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def from_dict(groups: Mapping[str, Mapping[str, object]], attrs: Mapping | None = None):
    """InferenceData from ``{group: {var: array}}``; sample groups have leading (chain, draw).

    Empty groups are dropped; tensors become numpy arrays.
    """
    az = _az()
    clean = {
        g: {k: _to_numpy(v) for k, v in d.items()} for g, d in groups.items() if d
    }
    attrs = dict(attrs or {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if _legacy():
            return az.from_dict(**clean, attrs=attrs)
        return az.from_dict(clean, attrs=attrs)


def add_group(idata, name: str, data: Mapping[str, object], dims: Mapping[str, list] | None = None):
    """Attach a non-sample group (no chain/draw dims), e.g. an optimiser's loss trace."""
    import xarray as xr

    dims = dict(dims or {})
    ds = xr.Dataset({k: (dims.get(k, [f"{k}_dim_{i}" for i in range(np.ndim(v))]), _to_numpy(v))
                     for k, v in data.items()})
    with warnings.catch_warnings():
        # ArviZ 0.x warns that a custom group is outside its schema; that is intended here.
        warnings.simplefilter("ignore", UserWarning)
        if hasattr(idata, "add_groups"):
            idata.add_groups({name: ds})
        else:  # ArviZ 1.x DataTree
            idata[name] = xr.DataTree(ds)
    return idata


def group_names(idata) -> list[str]:
    """Names of the groups of an InferenceData (0.x) or DataTree (1.x)."""
    if hasattr(idata, "groups") and callable(idata.groups):
        return list(idata.groups())
    return list(idata.children)


def get_group(idata, name: str):
    """One group as an ``xarray.Dataset``."""
    g = idata[name] if not hasattr(idata, "add_groups") else getattr(idata, name)
    return g.to_dataset() if hasattr(g, "to_dataset") else g
