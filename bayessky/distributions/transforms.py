"""Invertible pixel-wise map transforms (log10, signed log, standardise) with exact Jacobians.

Each transform is a :class:`torch.distributions.transforms.Transform`, so it composes with
Pyro's ``TransformedDistribution``: a flow trained on ``y = T(x)`` becomes a density on the
physical map ``x`` through

    log p_x(x) = log p_y(T(x)) + sum_pixels log |dT/dx|,

and ``log_abs_det_jacobian(x, y)`` returns the per-pixel term (``event_dim = 0``).

Serialisation: ``t.to_config()`` gives a JSON-able dict (a list of dicts for a composition) and
:func:`transform_from_config` rebuilds it. A model card stores the list applied in order,
physical map -> network space, e.g. ``[{"name": "log10"}, {"name": "standardise", "mean": 8.1,
"std": 0.6}]`` (HIGlow's preprocessing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.distributions import constraints
from torch.distributions.transforms import ComposeTransform, Transform

__all__ = [
    "Log10Transform",
    "SignedLogTransform",
    "StandardiseTransform",
    "Compose",
    "compose",
    "transform_to_config",
    "transform_from_config",
    "parse_transform_names",
]

_LN10 = math.log(10.0)


def _param(value, x: torch.Tensor) -> torch.Tensor:
    """A stored scalar/array parameter on the dtype and device of the input."""
    return torch.as_tensor(value, dtype=x.dtype, device=x.device)


def _jsonable(value):
    """A float or a nested list, whichever the stored parameter is."""
    t = torch.as_tensor(value, dtype=torch.float64)
    return float(t) if t.ndim == 0 else t.tolist()


class Log10Transform(Transform):
    r"""y = log10(x) on positive maps (HI intensity, dust).

    log |dy/dx| = -ln(x) - ln(ln 10), per pixel.

    Example:
        >>> t = Log10Transform()
        >>> t(torch.tensor([1e8])).item()
        8.0
    """

    domain = constraints.positive
    codomain = constraints.real
    bijective = True
    sign = +1

    def __init__(self, cache_size: int = 0):
        super().__init__(cache_size=cache_size)

    def __eq__(self, other):
        return isinstance(other, Log10Transform)

    def _call(self, x):
        return torch.log10(x)

    def _inverse(self, y):
        return torch.pow(torch.as_tensor(10.0, dtype=y.dtype, device=y.device), y)

    def log_abs_det_jacobian(self, x, y):
        return -torch.log(x) - math.log(_LN10)

    def with_cache(self, cache_size: int = 1):
        return Log10Transform(cache_size=cache_size)

    def to_config(self) -> dict:
        return {"name": "log10"}


class SignedLogTransform(Transform):
    r"""y = sign(x) ln(|x| / sigma + 1): the cosmikyu normalisation of signed maps.

    Linear (slope 1/sigma) for |x| << sigma, logarithmic beyond; inverse
    x = sign(y) sigma (exp|y| - 1); log |dy/dx| = -ln(|x| + sigma).

    Arguments:
        sigma: positive scale (map units) where the transform turns from linear to log.

    Example:
        >>> t = SignedLogTransform(2.0)
        >>> round(t(torch.tensor([-2.0])).item(), 6)
        -0.693147
    """

    domain = constraints.real
    codomain = constraints.real
    bijective = True
    sign = +1

    def __init__(self, sigma: float, cache_size: int = 0):
        super().__init__(cache_size=cache_size)
        sigma = float(sigma)
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma: must be a positive finite number, got {sigma!r}")
        self.sigma = sigma

    def __eq__(self, other):
        return isinstance(other, SignedLogTransform) and other.sigma == self.sigma

    def _call(self, x):
        return torch.sign(x) * torch.log1p(x.abs() / self.sigma)

    def _inverse(self, y):
        return torch.sign(y) * self.sigma * torch.expm1(y.abs())

    def log_abs_det_jacobian(self, x, y):
        return -torch.log(x.abs() + self.sigma)

    def with_cache(self, cache_size: int = 1):
        return SignedLogTransform(self.sigma, cache_size=cache_size)

    def to_config(self) -> dict:
        return {"name": "signed_log", "sigma": self.sigma}


class StandardiseTransform(Transform):
    r"""y = (x - mean) / std, with scalar or broadcastable per-channel ``mean`` and ``std``.

    log |dy/dx| = -ln(std) per pixel.

    Arguments:
        mean: float or array broadcastable against the maps (e.g. shape (C, 1, 1)).
        std: positive float or array of the same kind.

    Example:
        >>> t = StandardiseTransform(8.0, 0.5)
        >>> t(torch.tensor([9.0])).item()
        2.0
    """

    domain = constraints.real
    codomain = constraints.real
    bijective = True
    sign = +1

    def __init__(self, mean, std, cache_size: int = 0):
        super().__init__(cache_size=cache_size)
        mean_t = torch.as_tensor(mean, dtype=torch.float64)
        std_t = torch.as_tensor(std, dtype=torch.float64)
        if not torch.isfinite(mean_t).all():
            raise ValueError(f"mean: must be finite, got {_jsonable(mean_t)!r}")
        if not (torch.isfinite(std_t).all() and (std_t > 0).all()):
            raise ValueError(f"std: must be positive and finite, got {_jsonable(std_t)!r}")
        self.mean = mean_t
        self.std = std_t

    @classmethod
    def fit(cls, x, dims: Sequence[int] | None = None) -> StandardiseTransform:
        """Mean and standard deviation of ``x`` over ``dims`` (all axes by default), in float64."""
        t = torch.as_tensor(x).detach().to(torch.float64)
        if dims is None:
            return cls(float(t.mean()), float(t.std(unbiased=False)))
        dims = tuple(dims)
        return cls(t.mean(dim=dims, keepdim=True).squeeze(0),
                   t.std(dim=dims, unbiased=False, keepdim=True).squeeze(0))

    def __eq__(self, other):
        return (isinstance(other, StandardiseTransform) and self.mean.shape == other.mean.shape
                and self.std.shape == other.std.shape and bool(torch.equal(self.mean, other.mean))
                and bool(torch.equal(self.std, other.std)))

    def _call(self, x):
        return (x - _param(self.mean, x)) / _param(self.std, x)

    def _inverse(self, y):
        return y * _param(self.std, y) + _param(self.mean, y)

    def log_abs_det_jacobian(self, x, y):
        return (-torch.log(_param(self.std, x))).expand(torch.broadcast_shapes(x.shape, self.std.shape))

    def with_cache(self, cache_size: int = 1):
        return StandardiseTransform(self.mean, self.std, cache_size=cache_size)

    def to_config(self) -> dict:
        return {"name": "standardise", "mean": _jsonable(self.mean), "std": _jsonable(self.std)}


class Compose(ComposeTransform):
    """:class:`ComposeTransform` that serialises to the list of its parts' configs."""

    def to_config(self) -> list[dict]:
        return transform_to_config(self)

    def with_cache(self, cache_size: int = 1):
        return Compose(list(self.parts), cache_size=cache_size)


def compose(*transforms: Transform) -> Compose:
    """Apply ``transforms`` left to right (``compose(Log10Transform(), std)(x) = std(log10 x)``)."""
    parts: list[Transform] = []
    for t in transforms:
        parts.extend(t.parts if isinstance(t, ComposeTransform) else [t])
    return Compose(parts)


_BUILDERS = {
    "log10": lambda c: Log10Transform(),
    "signed_log": lambda c: SignedLogTransform(c["sigma"]),
    "standardise": lambda c: StandardiseTransform(c["mean"], c["std"]),
}


def transform_to_config(t: Transform) -> list[dict]:
    """The JSON-able list of configs of ``t`` (flattening compositions)."""
    if isinstance(t, ComposeTransform):
        out: list[dict] = []
        for part in t.parts:
            out.extend(transform_to_config(part))
        return out
    if not hasattr(t, "to_config"):
        raise TypeError(f"transform: {type(t).__name__} has no to_config(); use bayessky.data transforms")
    return [t.to_config()]


def transform_from_config(config: Sequence[dict] | dict | None) -> Compose:
    """Rebuild a transform from :func:`transform_to_config` output (``None`` or ``[]``: identity)."""
    if config is None:
        config = []
    if isinstance(config, dict):
        config = [config]
    parts = []
    for i, c in enumerate(config):
        if not isinstance(c, dict) or "name" not in c:
            raise ValueError(f"transform[{i}]: expected a dict with a 'name', got {c!r}")
        if c["name"] not in _BUILDERS:
            raise ValueError(f"transform[{i}]: unknown transform {c['name']!r} "
                             f"(known: {', '.join(sorted(_BUILDERS))})")
        try:
            parts.append(_BUILDERS[c["name"]](c))
        except KeyError as err:
            raise ValueError(f"transform[{i}]: {c['name']!r} is missing key {err.args[0]!r}") from None
    return Compose(parts)


def parse_transform_names(spec: str) -> list[str]:
    """Split a command-line list such as ``"log10,standardise"`` and check each name."""
    names = [s.strip() for s in spec.split(",") if s.strip() and s.strip() != "none"]
    for n in names:
        if n not in _BUILDERS:
            raise ValueError(f"transform: unknown name {n!r} (known: {', '.join(sorted(_BUILDERS))}, none)")
    return names
