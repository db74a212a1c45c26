"""Numpy-or-torch in, the same out: the statistics accept either and answer in kind."""

from __future__ import annotations

import numpy as np
import torch

from .._validate import check_map

__all__ = ["to_tensor", "like_input"]


def to_tensor(x, name: str, *, min_ndim: int = 2) -> tuple[torch.Tensor, bool]:
    """Validated floating tensor for ``x`` and whether ``x`` was a numpy array (or array-like)."""
    is_numpy = not isinstance(x, torch.Tensor)
    t = check_map(x, name, min_ndim=min_ndim)
    if not t.is_floating_point():
        t = t.to(torch.float64 if is_numpy else torch.get_default_dtype())
    return t, is_numpy


def like_input(is_numpy: bool, *values):
    """Convert tensors back to numpy arrays when the input was numpy; tuples stay tuples."""
    if not is_numpy:
        return values if len(values) > 1 else values[0]
    out = tuple(v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for v in values)
    return out if len(out) > 1 else out[0]
