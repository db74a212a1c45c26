"""Argument checks shared by the engines: one-line errors that name the argument.

Pyro's own errors for bad engine arguments come late and deep (a negative HMC step size loops
forever, a NaN start reads "Model specification seems incorrect"), so every engine checks its
options here first.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch

from ._model import ModelInfo, inspect_model, preserved_rng

__all__ = ["check_int", "check_positive", "check_seed", "model_info", "explain_data_errors"]

_SEED_MAX = 2**32 - 1  # numpy's legacy seeding (pyro.set_rng_seed) takes [0, 2**32 - 1]


def check_int(name: str, arg: str, v, minimum: int = 1) -> int:
    """``v`` as an int >= ``minimum``; numpy integers pass, bools and floats do not."""
    if not isinstance(v, numbers.Integral) or isinstance(v, (bool, np.bool_)) or v < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name}: {arg} must be {what}, got {v!r}")
    return int(v)


def check_positive(name: str, arg: str, v, *, optional: bool = False) -> float | None:
    """``v`` as a finite float > 0 (``None`` passes when ``optional``)."""
    if v is None and optional:
        return None
    ok = isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
    if not ok or not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name}: {arg} must be finite and > 0{' (or None)' if optional else ''}, "
                         f"got {v!r}")
    return float(v)


def check_seed(name: str, seed) -> int | None:
    """``None`` or an int in [0, 2**32 - 1], the range every seeded generator accepts."""
    if seed is None:
        return None
    if (not isinstance(seed, numbers.Integral) or isinstance(seed, (bool, np.bool_))
            or not 0 <= seed <= _SEED_MAX):
        raise ValueError(f"{name}: seed must be None or an integer in [0, 2**32 - 1], got {seed!r}")
    return int(seed)


def model_info(model: Callable, args, kwargs) -> ModelInfo:
    """The model's sites from one prototype run that leaves the global RNG states untouched.

    Why: the engines run under ``seeded(seed)``; an extra model run for argument checks must not
    shift the random stream, or the same seed would give different draws than before.
    """
    with preserved_rng():
        return inspect_model(model, tuple(args), dict(kwargs or {}))


def _nonfinite_args(model: Callable, args) -> list[tuple[str, int]]:
    """(argument name, NaN/inf count) of the floating tensors / arrays among positional args."""
    try:
        params = [p.name for p in inspect.signature(model).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    out = []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor) and (a.is_floating_point() or a.is_complex()):
            n = int((~torch.isfinite(a.detach())).sum())
        elif isinstance(a, np.ndarray) and a.dtype.kind in "fc":
            n = int((~np.isfinite(a)).sum())
        else:
            continue
        if n:
            out.append((params[i] if i < len(params) else f"args[{i}]", n))
    return out


@contextmanager
def explain_data_errors(name: str, model: Callable, args):
    """Re-raise a failure of the model as a one-line error when its data hold NaN/inf.

    Checked only after a failure, never up front: NaN fill values in masked pixels are legitimate
    (``MapNormal`` ignores them where the mask is 0), so only a model that fails on its data is
    told that the data are the likely cause.
    """
    try:
        yield
    except (ValueError, RuntimeError, AssertionError) as err:
        bad = _nonfinite_args(model, args)
        if not bad:
            raise
        arg, n = bad[0]
        first = (str(err).strip().splitlines() or [""])[0][:150]
        raise ValueError(f"{name}: {arg}: contains {n} NaN/inf values and the model failed on them "
                         f"({type(err).__name__}: {first})") from err
