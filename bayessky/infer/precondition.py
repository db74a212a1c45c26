r"""Preconditioning a flat potential by a fixed linear change of variables, for any sampler.

A sampler that sees the potential ``U(x)`` of a model (:func:`bayessky.infer.potential`) through

.. math::
    x = x_0 + T z, \qquad U_z(z) = U(x_0 + T z) - \log|\det T|,

samples ``z``, and maps every draw back, ``x = x_0 + T z``, draws from exactly the same target:
``exp(-U_z)`` is the density of ``z`` when ``x ~ exp(-U)`` (the ``-log|det T|`` is a constant
and only keeps ``U_z`` a normalised-density potential). Nothing about the sampler changes; what
changes is the geometry it meets. A Euclidean HMC/NUTS with unit mass in ``z`` is HMC in ``x``
with mass matrix ``M = (T T^T)^{-1}``, so the ideal ``T`` is a square root of the posterior
covariance: then ``z`` is white, one step size fits every direction and trajectories are short.
NUTS still adapts its own (diagonal or dense) mass matrix on top, in ``z``.

What a field model already knows gives such a ``T`` without a warm-up:

* ``"fourier"`` -- a map site whose prior is a stationary Gaussian field
  (:class:`~bayessky.distributions.GaussianRandomField`, per-mode spectrum ``S``) has a covariance
  diagonal in Fourier space, ``C = F^{-1} \mathrm{diag}(S) F``. If the site is observed through a
  white :class:`~bayessky.distributions.MapNormal` (``d = M (s + n)``, the site itself as its
  mean) with precision ``q = <1[M > 0] / sigma^2>`` (pixel average), the posterior of a
  fully observed map is diagonal in Fourier space too, with per-mode variance

  .. math:: W_k = \frac{S_k}{1 + S_k q},

  and ``T = F^{-1} \mathrm{diag}(\sqrt W) F`` is its exact square root (the Wiener posterior with
  ``M = 1``); with a mask or inhomogeneous noise it is the Fourier-diagonal part of the posterior
  precision, an approximation (still an exact change of variables). Without such a likelihood,
  ``W = S``: the prior whitened. Computed with real FFTs, ``T x = irfft2(\sqrt{W} rfft2(x))``
  (``W(k) = W(-k)`` makes ``T`` real and symmetric), ``\log|\det T| = \tfrac12 \sum_k \log W_k``.
* ``"diagonal"`` -- the same sites scaled pixel by pixel,
  ``T = \mathrm{diag}((\overline{S^{-1}} + 1[M > 0] / \sigma^2)^{-1/2})``: the diagonal of the
  Gaussian posterior precision (``\overline{S^{-1}}`` the prior precision's diagonal, the mean of
  ``1/S_k``). It gives NUTS's first warm-up window the right pixel scales, masked pixels included.
* a :class:`Preconditioner` of your own: :class:`FourierPreconditioner` with a spectrum you know
  (e.g. a Gaussian approximation of a non-Gaussian prior), :class:`DiagonalPreconditioner`, or a
  subclass defining :meth:`~Preconditioner.forward`, :meth:`~Preconditioner.inverse` and
  :attr:`~Preconditioner.log_abs_det`.

Engines take it as ``precondition=`` (:func:`bayessky.infer.nuts` with ``backend="fast"``). Any
other engine on a flat potential uses :func:`precondition`: it returns a
:class:`PreconditionedPotential`, a batched potential ``(B, D) -> (B,)`` in ``z`` with
``to_x`` / ``to_z`` for the starting points and the draws.

Sites the preconditioner does not name keep the identity. A site's unconstrained coordinates are
its own values here (a Gaussian field has real support), so ``T`` acts on the model's map itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import pyro
import pyro.poutine as poutine
import torch
from torch import Tensor

from ..distributions import GaussianRandomField, MapNormal

__all__ = [
    "Preconditioner", "DiagonalPreconditioner", "DensePreconditioner", "FourierPreconditioner",
    "PreconditionedPotential", "precondition", "laplace", "from_model", "resolve",
]


class Preconditioner:
    r"""A linear change of variables ``x = x0 + T z`` of flat vectors (B, D).

    Subclasses define :meth:`apply` (``T z``), :meth:`solve` (``T^{-1} x``) and
    :attr:`log_abs_det` (``log|det T|``, a constant). ``shift`` is ``x0`` (D,) (default 0).
    """

    dim: int
    log_abs_det: float

    def __init__(self, dim: int, shift: Tensor | None = None):
        self.dim = int(dim)
        self.shift = None if shift is None else torch.as_tensor(shift).reshape(-1)
        if self.shift is not None and self.shift.numel() != self.dim:
            raise ValueError(f"shift: expected {self.dim} values, got {self.shift.numel()}")

    def apply(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def solve(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, z: Tensor) -> Tensor:
        """``x = x0 + T z``, (..., D) -> (..., D)."""
        x = self.apply(z)
        return x if self.shift is None else x + self.shift.to(x)

    def inverse(self, x: Tensor) -> Tensor:
        """``z = T^{-1} (x - x0)``, (..., D) -> (..., D)."""
        if self.shift is not None:
            x = x - self.shift.to(x)
        return self.solve(x)


class DiagonalPreconditioner(Preconditioner):
    """``x = x0 + s * z``: a fixed diagonal mass matrix ``M = diag(s^-2)``.

    Arguments:
        scale: (D,) positive scales ``s`` (the expected posterior standard deviations).
        shift: optional (D,) centre ``x0``.
    """

    def __init__(self, scale, shift: Tensor | None = None):
        scale = torch.as_tensor(scale).reshape(-1)
        if not bool(torch.isfinite(scale).all()) or not bool((scale > 0).all()):
            raise ValueError("scale: must be finite and > 0 everywhere")
        super().__init__(scale.numel(), shift)
        self.scale = scale
        self.log_abs_det = float(torch.log(scale.double()).sum())

    def apply(self, z: Tensor) -> Tensor:
        return z * self.scale.to(z)

    def solve(self, x: Tensor) -> Tensor:
        return x / self.scale.to(x)


class DensePreconditioner(Preconditioner):
    """``x = x0 + L z`` with ``L`` the Cholesky factor of a covariance ``C = L L^T``: a fixed dense
    mass matrix ``M = C^{-1}``.

    Arguments:
        covariance: (D, D) symmetric positive-definite covariance (the expected posterior one).
        shift: optional (D,) centre ``x0``.
    """

    def __init__(self, covariance, shift: Tensor | None = None):
        c = torch.as_tensor(covariance)
        if c.ndim != 2 or c.shape[0] != c.shape[1]:
            raise ValueError(f"covariance: expected a square (D, D) matrix, got shape {tuple(c.shape)}")
        if not bool(torch.isfinite(c).all()):
            raise ValueError("covariance: must be finite")
        chol, info = torch.linalg.cholesky_ex(0.5 * (c + c.mT))
        if int(info) != 0:
            raise ValueError("covariance: not positive definite")
        super().__init__(c.shape[0], shift)
        self.chol = chol
        self.log_abs_det = float(torch.log(torch.diagonal(chol).double()).sum())

    def apply(self, z: Tensor) -> Tensor:
        return z @ self.chol.to(z).mT

    def solve(self, x: Tensor) -> Tensor:
        b = x.reshape(-1, self.dim).mT
        return torch.linalg.solve_triangular(self.chol.to(x), b, upper=False).mT.reshape(x.shape)


class FourierPreconditioner(Preconditioner):
    r"""``T = F^{-1} \mathrm{diag}(\sqrt W) F`` on a map block of the flat vector, identity elsewhere.

    Arguments:
        variance: (ny, nx) per-mode variance ``W_k > 0`` on the full DFT grid (``fftfreq``
            order, the convention of :class:`~bayessky.distributions.GaussianRandomField`: a map
            ``x = T z`` with white ``z`` has ``E|fft2(x)_k|^2 = N W_k``); must satisfy
            ``W(k) = W(-k)``.
        dim: length D of the flat vector (default ``ny * nx``: the map is the whole vector).
        offset: index of the map's first pixel in the flat vector (row-major).
        shift: optional (D,) centre ``x0``.
        scale: optional (D,) diagonal scales for the coordinates outside the map (default 1).
    """

    def __init__(self, variance, dim: int | None = None, offset: int = 0, shift: Tensor | None = None):
        w = torch.as_tensor(variance)
        if not w.is_floating_point():
            w = w.to(torch.get_default_dtype())
        if w.ndim != 2:
            raise ValueError(f"variance: expected a (ny, nx) per-mode grid, got shape {tuple(w.shape)}")
        if not bool(torch.isfinite(w).all()) or not bool((w > 0).all()):
            raise ValueError("variance: must be finite and > 0 on every mode")
        mirror = torch.roll(torch.flip(w, (-2, -1)), shifts=(1, 1), dims=(-2, -1))
        if not torch.allclose(w, mirror, rtol=1e-6, atol=0.0):
            raise ValueError("variance: must satisfy W(k) = W(-k) (the spectrum of a real field)")
        self.shape = tuple(w.shape)
        n = w.numel()
        dim = n if dim is None else int(dim)
        if not 0 <= offset <= dim - n:
            raise ValueError(f"offset: the map ({n} pixels at {offset}) does not fit a vector of {dim}")
        super().__init__(dim, shift)
        self.offset = int(offset)
        self.variance = w
        # on the rfft half plane: W(k) = W(-k) lets irfft2(sqrt(W) rfft2(x)) stand for the full
        # complex operator (and keeps T real and symmetric)
        self._root = w[:, : w.shape[1] // 2 + 1].sqrt()
        self.log_abs_det = 0.5 * float(torch.log(w.double()).sum())

    def _map(self, v: Tensor, factor: Tensor) -> Tensor:
        a, b = self.offset, self.offset + self.variance.numel()
        block = v[..., a:b].reshape(*v.shape[:-1], *self.shape)
        out = torch.fft.irfft2(torch.fft.rfft2(block) * factor.to(v.dtype), s=self.shape)
        out = out.reshape(*v.shape[:-1], b - a)
        if a == 0 and b == v.shape[-1]:
            return out
        return torch.cat([v[..., :a], out, v[..., b:]], dim=-1)

    def apply(self, z: Tensor) -> Tensor:
        return self._map(z, self._root.to(z.device))

    def solve(self, x: Tensor) -> Tensor:
        return self._map(x, 1.0 / self._root.to(x.device))


class _Composite(Preconditioner):
    """Blocks of different preconditioners on disjoint coordinate ranges (identity elsewhere)."""

    def __init__(self, dim: int, blocks: list[tuple[int, Preconditioner]]):
        super().__init__(dim)
        self.blocks = sorted(blocks, key=lambda b: b[0])
        self.log_abs_det = sum(p.log_abs_det for _, p in self.blocks)

    def _each(self, v: Tensor, method: str) -> Tensor:
        parts, at = [], 0
        for start, p in self.blocks:
            parts += [v[..., at:start], getattr(p, method)(v[..., start:start + p.dim])]
            at = start + p.dim
        parts.append(v[..., at:])
        return torch.cat(parts, dim=-1)

    def apply(self, z: Tensor) -> Tensor:
        return self._each(z, "forward")

    def solve(self, x: Tensor) -> Tensor:
        return self._each(x, "inverse")


class PreconditionedPotential:
    r"""``U_z(z) = U(x0 + T z) - log|det T|`` for a batched potential ``U`` (B, D) -> (B,).

    ``to_x`` maps draws back, ``to_z`` maps starting points in. Differentiable in ``z``.
    """

    def __init__(self, potential: Callable[[Tensor], Tensor], preconditioner: Preconditioner):
        self.potential = potential
        self.preconditioner = preconditioner
        self.log_abs_det = float(preconditioner.log_abs_det)

    def __call__(self, z: Tensor) -> Tensor:
        return self.potential(self.preconditioner.forward(z)) - self.log_abs_det

    def to_x(self, z: Tensor) -> Tensor:
        return self.preconditioner.forward(z)

    def to_z(self, x: Tensor) -> Tensor:
        return self.preconditioner.inverse(x)


def precondition(potential: Callable[[Tensor], Tensor], preconditioner: Preconditioner
                 ) -> PreconditionedPotential:
    """The potential in the preconditioned coordinates ``z`` (see the module docstring)."""
    if not isinstance(preconditioner, Preconditioner):
        raise TypeError(f"preconditioner: expected a Preconditioner, got {type(preconditioner).__name__}")
    dim = getattr(potential, "dim", None)
    if dim is not None and int(dim) != preconditioner.dim:
        raise ValueError(f"preconditioner: acts on {preconditioner.dim} coordinates, the potential "
                         f"has {dim}")
    return PreconditionedPotential(potential, preconditioner)


def laplace(potential: Callable[[Tensor], Tensor], x0: Tensor, *, max_dim: int = 256) -> DensePreconditioner:
    r"""The Laplace approximation at ``x0`` (a mode, e.g. the MAP) as a :class:`DensePreconditioner`:
    ``C = H^{-1}``, ``H`` the Hessian of the batched potential ``U`` (B, D) -> (B,) at ``x0`` (D,).

    ``H`` comes from central differences of the autograd gradient, all ``2 D`` rows
    ``x0 \pm h_i e_i`` in one batched call, twice: first with ``h = 10^{-2}``, then with ``h_i`` a
    quarter of the first pass's ``\sqrt{C_{ii}}``. Differences over a fraction of the posterior
    width, rather than second derivatives at a point, see the curvature a sampler meets even
    where the potential is only piecewise smooth (a ReLU network's log-likelihood), and stay far
    above float32 round-off. A Hessian that is not positive definite (``x0`` not at a mode) is
    refused. Its cost is ``2 D`` gradients per pass, so ``D`` is capped by ``max_dim``.
    """
    x0 = torch.as_tensor(x0).detach().reshape(-1)
    dim = x0.numel()
    if dim > max_dim:
        raise ValueError(f"precondition='laplace': {dim} unconstrained coordinates is more than "
                         f"max_dim={max_dim} (a dense Hessian costs 2 D gradients); use 'fourier' "
                         "or 'diagonal'")
    eye = torch.eye(dim, dtype=x0.dtype, device=x0.device)

    def hessian(h: Tensor) -> Tensor:
        rows = torch.cat([x0 + h[:, None] * eye, x0 - h[:, None] * eye]).requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(potential(rows).sum(), rows)
        hess = (g[:dim] - g[dim:]) / (2 * h[:, None])
        return 0.5 * (hess + hess.mT)

    h = torch.full((dim,), 1e-2, dtype=x0.dtype, device=x0.device)
    for attempt in range(2):
        hess = hessian(h)
        if not bool(torch.isfinite(hess).all()):
            raise ValueError("precondition='laplace': the potential's Hessian at the start is not finite")
        chol, info = torch.linalg.cholesky_ex(hess)
        if int(info) != 0:
            raise ValueError("precondition='laplace': the Hessian at the start is not positive definite "
                             "(start at a mode: init_strategy='map')")
        cov = torch.cholesky_inverse(chol)
        if attempt == 0:
            h = (0.25 * torch.diagonal(cov).sqrt()).clamp(1e-4, 1.0)
    return DensePreconditioner(cov, shift=x0)


# -- from what a model knows ---------------------------------------------------------------------
def _trace(model, args, kwargs, condition: Mapping[str, Tensor] | None = None):
    fn = model if condition is None else poutine.condition(model, data=dict(condition))
    with pyro.validation_enabled(False), torch.no_grad():
        return poutine.trace(fn).get_trace(*args, **kwargs)


def _data_precision(model, args, kwargs, tr, name: str) -> Tensor | None:
    r"""Per-pixel precision ``1[M > 0] / sigma^2`` that a :class:`MapNormal` observation adds to the
    latent map ``name``, when that observation's mean *is* the map up to a constant (``loc = s + c``);
    None otherwise (then the prior alone sets the scales).

    The link is found by perturbing the site: a second trace with ``s + delta`` must move every
    observed MapNormal's ``loc`` by exactly ``delta``.
    """
    value = tr.nodes[name]["value"]
    gen = torch.Generator().manual_seed(0)
    delta = torch.randn(value.shape, generator=gen, dtype=value.dtype).to(value.device)
    delta = delta * (1e-3 * (1.0 + float(value.abs().max())))
    tr2 = _trace(model, args, kwargs, {name: value + delta, **{
        k: s["value"] for k, s in tr.nodes.items()
        if s["type"] == "sample" and not s["is_observed"] and k != name}})
    total = None
    for k, s in tr.nodes.items():
        if s["type"] != "sample" or not s["is_observed"] or not isinstance(s["fn"], MapNormal):
            continue
        fn, fn2 = s["fn"], tr2.nodes[k]["fn"]
        if fn.loc.shape[-2:] != value.shape[-2:] or fn.loc.numel() != value.numel():
            continue
        moved = (fn2.loc - fn.loc).reshape(value.shape)
        tol = 1e-4 * float(delta.abs().max()) + 1e-6 * float(fn.loc.abs().max())
        if float((moved - delta).abs().max()) > tol:
            continue
        observed = torch.ones_like(fn.loc) if fn.mask is None else (fn.mask > 0).to(fn.loc.dtype)
        prec = (observed / fn.sigma**2).reshape(value.shape)
        total = prec if total is None else total + prec
    return total


def from_model(kind: str, model: Callable, args=(), kwargs=None, *, names, shapes,
               data_precision: bool = True) -> Preconditioner:
    r"""The ``"fourier"`` or ``"diagonal"`` preconditioner of a model's flat potential.

    Arguments:
        kind: ``"fourier"`` or ``"diagonal"`` (see the module docstring).
        model, args, kwargs: the Pyro model and its arguments.
        names, shapes: the flat potential's latent site names (in order) and their unconstrained
            shapes (``Potential.names`` / ``Potential.shapes``).
        data_precision: combine the prior spectrum with a white MapNormal observing the site
            (``W = S / (1 + S q)``); False: the prior alone (``W = S``).

    Raises ValueError when no latent site has a :class:`GaussianRandomField` prior.
    """
    if kind not in ("fourier", "diagonal"):
        raise ValueError(f"precondition: expected 'fourier', 'diagonal', 'laplace' or a Preconditioner, "
                         f"got {kind!r}")
    kwargs = dict(kwargs or {})
    tr = _trace(model, args, kwargs)
    dim = sum(math.prod(shapes[k]) for k in names)
    blocks, at = [], 0
    for k in names:
        size = math.prod(shapes[k])
        node = tr.nodes.get(k)
        fn = None if node is None else node["fn"]
        while hasattr(fn, "base_dist") and not isinstance(fn, GaussianRandomField):
            fn = fn.base_dist  # Independent / masked wrappers around the field
        if isinstance(fn, GaussianRandomField) and fn.spectrum.numel() == size:
            s = fn.spectrum.detach().to(node["value"].dtype)
            prec = _data_precision(model, args, kwargs, tr, k) if data_precision else None
            if kind == "fourier":
                q = 0.0 if prec is None else float(prec.mean())
                blocks.append((at, FourierPreconditioner(s / (1.0 + s * q))))
            else:
                diag = (1.0 / s).mean() + (0.0 if prec is None else prec)
                blocks.append((at, DiagonalPreconditioner(diag.expand(s.shape).rsqrt().reshape(-1))))
        at += size
    if not blocks:
        raise ValueError(f"precondition={kind!r}: no latent site has a GaussianRandomField prior "
                         f"(sites {list(names)}); pass a FourierPreconditioner with the spectrum "
                         "you know instead")
    if len(blocks) == 1 and blocks[0][0] == 0 and blocks[0][1].dim == dim:
        return blocks[0][1]
    return _Composite(dim, blocks)


def resolve(spec, model: Callable, args, kwargs, *, names, shapes, potential=None, start=None,
            name: str = "precondition") -> Preconditioner | None:
    """``precondition=`` of an engine -> a :class:`Preconditioner` (or None).

    ``"laplace"`` needs the engine's flat ``potential`` and the chains' common ``start`` (D,).
    """
    if spec is None:
        return None
    if isinstance(spec, Preconditioner):
        return spec
    if isinstance(spec, str) and spec == "laplace":
        if potential is None or start is None:
            raise ValueError(f"{name}: 'laplace' needs the engine's potential and start point")
        return laplace(potential, start)
    if isinstance(spec, str):
        return from_model(spec, model, args, kwargs, names=names, shapes=shapes)
    raise TypeError(f"{name}: precondition must be None, 'fourier', 'diagonal', 'laplace' or a "
                    "Preconditioner, "
                    f"got {type(spec).__name__}")
