"""Context handling shared by the conditional flows: stored physical bounds and [-1, 1] scaling."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._validate import as_tensor

__all__ = ["register_bounds", "scale", "as_context", "per_sample"]


def register_bounds(module: nn.Module, dim: int, low: Sequence[float] | None,
                    high: Sequence[float] | None) -> None:
    """Store ``context_low`` / ``context_high`` (d,) buffers (default [-1, 1]: no scaling)."""
    # on the CPU whatever the default device: the check below reads the values, which a network
    # built on the meta device (nn.registry.count_parameters) does not have
    dt, cpu = torch.get_default_dtype(), torch.device("cpu")
    lo = (torch.full((dim,), -1.0, dtype=dt, device=cpu) if low is None
          else torch.as_tensor(low, dtype=dt, device=cpu).reshape(-1))
    hi = (torch.full((dim,), 1.0, dtype=dt, device=cpu) if high is None
          else torch.as_tensor(high, dtype=dt, device=cpu).reshape(-1))
    if lo.shape != (dim,) or hi.shape != (dim,):
        raise ValueError(f"context_low/context_high: expected {dim} values each, got {lo.tolist()} "
                         f"and {hi.tolist()}")
    if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all() and (hi > lo).all()):
        raise ValueError(f"context_high: must be finite and exceed context_low, got low={lo.tolist()} "
                         f"high={hi.tolist()}")
    module.register_buffer("context_low", lo)
    module.register_buffer("context_high", hi)


def scale(module: nn.Module, c: torch.Tensor) -> torch.Tensor:
    """Physical context -> [-1, 1] over the stored bounds (affine, so gradients pass through)."""
    return (c - module.context_low) * (2.0 / (module.context_high - module.context_low)) - 1.0


def as_context(context, dim: int, ref: torch.Tensor) -> torch.Tensor | None:
    """Validate a context (..., d) for a flow with ``dim`` context values (0: unconditional)."""
    if not dim:
        if context is not None:
            raise ValueError("context: this flow is unconditional, got a context")
        return None
    if context is None:
        raise ValueError(f"context: this flow is conditional, expected shape (..., {dim})")
    c = as_tensor(context, "context", dtype=ref.dtype, device=ref.device)
    if c.ndim == 0 or c.shape[-1] != dim:
        raise ValueError(f"context: expected shape (..., {dim}), got {tuple(c.shape)}")
    return c


def per_sample(c: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """A sampling context: (d,) shared by all n draws, or (n, d) one per draw -> (n, d)."""
    if c is None:
        return None
    if c.ndim == 1:
        return c.expand(n, -1)
    if c.shape != (n, c.shape[-1]):
        raise ValueError(f"context: expected shape ({c.shape[-1]},) or ({n}, {c.shape[-1]}), "
                         f"got {tuple(c.shape)}")
    return c
