r"""Isokinetic (microcanonical) dynamics for a batch of chains: the velocity map, the integrators,
the partial velocity refresh, and the autocorrelation times that tune the decoherence length.

The dynamics run in whitened coordinates ``y = x / sigma`` (``sigma`` (D,) the diagonal
preconditioner) with a unit velocity ``u`` (|u| = 1):

.. math:: \dot y = u, \qquad \dot u = -(I - u u^T)\, \nabla_y U / (d - 1).

Over a time ``eps`` with the gradient held fixed, the velocity equation has the closed-form
solution (Ver Steeg & Galstyan 2021; Robnik et al. 2023, eq. 16) with ``e = -grad_y U / |grad_y U|``,
``delta = eps |grad_y U| / (d - 1)``, ``zeta = exp(-delta)``:

.. math::
    u' \propto e\,(1 - \zeta)\,(1 + \zeta + (u \cdot e)(1 - \zeta)) + 2 \zeta u, \qquad
    \Delta K = (d - 1)\,\big(\delta - \log 2 + \log(1 + u \cdot e + (1 - u \cdot e)\zeta^2)\big),

``Delta K`` the kinetic-energy change, so that ``Delta E = Delta K + Delta U`` is the energy error
of an integration step: it is the quantity whose variance the unadjusted sampler controls, and
the Metropolis ratio ``exp(-Delta E)`` of the adjusted one (it carries the dynamics' change of
phase-space volume). Integrators alternate this velocity map with drifts ``x += eps sigma u``:

* ``"leapfrog"``: V(eps/2) D(eps) V(eps/2), one gradient per step;
* ``"minimal_norm"``: V(lam eps) D(eps/2) V((1 - 2 lam) eps) D(eps/2) V(lam eps),
  ``lam = 0.1931833``, two gradients per step, a smaller energy error at a given ``eps``
  (Omelyan, Mryglod & Folk 2003; the integrator MCLMC uses by default).

Langevin noise enters as a partial refresh after each step,
``u <- (u + nu z) / |u + nu z|``, ``z ~ N(0, I_d)``, ``nu = sqrt((exp(2 eps / L) - 1) / d)``, which
decorrelates the velocity over a time ``L`` (Robnik & Seljak 2023).

On a CPU the per-chain scalars (norms, cosines, ``zeta``) are computed in numpy on zero-copy
views, where numpy's dispatch on a few numbers is several times cheaper than torch's, and the
(chains, D) work is a fixed list of fused torch operations (two dot products and one
``addcmul`` per velocity map: the new velocity's norm is known in closed form).

References:
    Microcanonical Hamiltonian Monte Carlo (Robnik, De Luca, Silverstein & Seljak, 2023, JMLR),
    https://arxiv.org/abs/2212.08549
    Fluctuation without dissipation: Microcanonical Langevin Monte Carlo (Robnik & Seljak, 2023),
    https://arxiv.org/abs/2303.18221
    Hamiltonian dynamics with non-Newtonian momentum for rapid sampling (Ver Steeg & Galstyan,
    2021), https://arxiv.org/abs/2111.02434
    Symplectic analytically integrable decomposition algorithms (Omelyan, Mryglod & Folk, 2003),
    Computer Physics Communications 151, 272
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["Isokinetic", "INTEGRATORS", "refresh", "random_direction", "autocorrelation_time"]

_LAMBDA = 0.1931833275037836  # the minimal-norm integrator's coefficient (Omelyan et al. 2003)
INTEGRATORS = {"minimal_norm": 2, "leapfrog": 1}  # name -> gradient calls per step


class Isokinetic:
    """One deterministic isokinetic integration step for all chains at once.

    Arguments:
        grad: ``x (C, D) -> (U (C,), dU/dx (C, D))``, one batched call.
        sigma: (D,) diagonal preconditioner (posterior standard deviations), or None for 1.
        integrator: ``"minimal_norm"`` or ``"leapfrog"``.
        host: per-chain scalars in numpy (CPU) rather than torch.
    """

    def __init__(self, grad: Callable[[Tensor], tuple[Tensor, Tensor]], dim: int,
                 sigma: Tensor | None, integrator: str, host: bool):
        if integrator not in INTEGRATORS:
            raise ValueError(f"integrator: expected one of {sorted(INTEGRATORS)}, got {integrator!r}")
        self.grad, self.dim, self.sigma = grad, dim, sigma
        self.integrator, self.host = integrator, host
        self.xp = np if host else torch
        self.log2 = math.log(2.0)

    def whiten(self, g: Tensor) -> Tensor:
        """dU/dx (C, D) -> dU/dy = sigma * dU/dx."""
        return g if self.sigma is None else g * self.sigma

    def _scalars(self, t: Tensor):
        return t.numpy() if self.host else t

    def _coefficients(self, like: Tensor):
        """Host buffers (2, C, 1) for the velocity map's two coefficients, seen by torch without a
        copy per call (numpy writes into them, torch reads them as (C, 1) columns)."""
        key = (like.dtype, like.shape[0])
        if getattr(self, "_buf_key", None) != key:
            self._buf_key = key
            self._buf = torch.empty(2, like.shape[0], 1, dtype=like.dtype).numpy()
            t = torch.from_numpy(self._buf)
            self._buf_t = (t[0], t[1])
        return self._buf, self._buf_t

    def turn(self, u: Tensor, gy: Tensor, eps: float) -> tuple[Tensor, object, object]:
        """Velocity map over time ``eps`` with whitened gradient ``gy``; returns
        (u', Delta K (C,), |gy|^2 (C,)) -- the last one's finiteness flags a bad gradient."""
        g2 = torch.linalg.vecdot(gy, gy)
        ug = torch.linalg.vecdot(u, gy)
        if not self.host:
            return self._turn_device(u, gy, eps, g2, ug)
        g2, ug = g2.numpy(), ug.numpy()
        gn = np.sqrt(g2)
        m_inv = -1.0 / np.maximum(gn, np.finfo(gn.dtype).tiny)  # a zero gradient turns nothing
        ue = ug * m_inv  # cosine between u and the force direction e = -gy / |gy|
        delta = gn * (eps / (self.dim - 1))
        zeta = np.exp(-delta)
        omz = 1.0 - zeta
        a = omz * (1.0 + zeta + ue * omz) * m_inv  # u' ~ a gy + b u
        b = 2.0 * zeta
        # |b u + a gy| with |u| = 1: no reduction over D is needed to normalise
        r = 1.0 / np.sqrt(b * b + 2.0 * a * b * ug + a * a * g2)
        buf, (b_col, a_col) = self._coefficients(u)
        np.multiply(b, r, out=buf[0, :, 0])
        np.multiply(a, r, out=buf[1, :, 0])
        u_new = torch.addcmul(u * b_col, gy, a_col)
        dk = (self.dim - 1) * (delta - self.log2 + np.log(1.0 + ue + (1.0 - ue) * zeta * zeta))
        return u_new, dk, g2

    def _turn_device(self, u, gy, eps, g2, ug):
        """:meth:`turn` with the per-chain scalars as torch tensors (accelerators)."""
        gn = g2.sqrt()
        m_inv = -1.0 / gn.clamp_min(torch.finfo(gn.dtype).tiny)
        ue = ug * m_inv
        delta = gn * (eps / (self.dim - 1))
        zeta = torch.exp(-delta)
        omz = 1.0 - zeta
        a = omz * (1.0 + zeta + ue * omz) * m_inv
        b = 2.0 * zeta
        r = torch.rsqrt(b * b + 2.0 * a * b * ug + a * a * g2)
        u_new = torch.addcmul(u * (b * r).unsqueeze(-1), gy, (a * r).unsqueeze(-1))
        dk = (self.dim - 1) * (delta - self.log2 + torch.log(1.0 + ue + (1.0 - ue) * zeta * zeta))
        return u_new, dk, g2

    def drift(self, x: Tensor, u: Tensor, eps: float) -> Tensor:
        return torch.add(x, u, alpha=eps) if self.sigma is None else torch.addcmul(x, u, eps * self.sigma)

    def step(self, x: Tensor, u: Tensor, U, g: Tensor, gy: Tensor, eps: float):
        """One step from (x, u, U, grad U, whitened grad); returns the new state, the step's
        kinetic-energy change (C,) and a (C,) mask of chains whose potential or gradient went
        non-finite (their rows are garbage; the caller restores them)."""
        xp = self.xp
        bad = None
        if self.integrator == "leapfrog":
            u, dk, _ = self.turn(u, gy, 0.5 * eps)
            x = self.drift(x, u, eps)
            U, g = self.grad(x)
            U = self._scalars(U)
            gy = self.whiten(g)
            u, dk2, g2 = self.turn(u, gy, 0.5 * eps)
            dk = dk + dk2
            bad = ~xp.isfinite(U + g2)
        else:
            start = (x, u, U, g, gy)
            u, dk, _ = self.turn(u, gy, _LAMBDA * eps)
            x = self.drift(x, u, 0.5 * eps)
            U, g = self.grad(x)
            U = self._scalars(U)
            gy = self.whiten(g)
            u, dk2, g2 = self.turn(u, gy, (1 - 2 * _LAMBDA) * eps)
            bad = ~xp.isfinite(U + g2)
            if bad.any():  # keep non-finite values away from the model: park those rows at the start
                x, u, U, g, gy = self.restore(bad, (x, u, U, g, gy), start)
            x = self.drift(x, u, 0.5 * eps)
            U, g = self.grad(x)
            U = self._scalars(U)
            gy = self.whiten(g)
            u, dk3, g2 = self.turn(u, gy, _LAMBDA * eps)
            dk = dk + dk2 + dk3
            bad = bad | ~xp.isfinite(U + g2)
        return x, u, U, g, gy, dk, bad


    def restore(self, rows, new: tuple, old: tuple) -> tuple:
        """``new`` with the chains in ``rows`` (C,) bool replaced by ``old`` (tensors (C, D) or
        per-chain scalars)."""
        xp = self.xp
        mask = (torch.from_numpy(rows) if self.host else rows).unsqueeze(-1)
        out = []
        for a, b in zip(new, old):
            if isinstance(a, Tensor) and a.ndim == 2:
                out.append(torch.where(mask, b, a))
            else:
                out.append(xp.where(rows, b, a))
        return tuple(out)


def refresh(u: Tensor, z: Tensor, nu: float) -> Tensor:
    """Partial refresh ``(u + nu z) / |u + nu z|`` of unit velocities (C, D)."""
    w = torch.add(u, z, alpha=nu)
    return w / torch.linalg.vector_norm(w, dim=-1, keepdim=True)


def refresh_rate(eps: float, L: float, dim: int) -> float:
    """``nu = sqrt((exp(2 eps / L) - 1) / d)``: velocity decorrelation over a time ``L``."""
    return math.sqrt(math.expm1(2.0 * eps / L) / dim) if math.isfinite(L) else 0.0


def random_direction(z: Tensor) -> Tensor:
    """Uniform unit vectors from standard normals (C, D)."""
    return z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)


def autocorrelation_time(x: np.ndarray) -> np.ndarray:
    """Integrated autocorrelation time per coordinate of draws ``x`` (chains, n, D), in steps.

    Multi-chain autocovariances by FFT, combined as in the split-free bulk ESS of Vehtari et al.
    (2021) with Geyer's initial monotone sequence: ``tau = -1 + 2 sum_k P_k`` over the pair sums
    ``P_k = rho_2k + rho_2k+1`` up to the first negative one, made monotone. ``ESS = chains n / tau``.
    """
    c, n, d = x.shape
    xc = x - x.mean(1, keepdims=True)
    f = np.fft.rfft(xc, n=2 * n, axis=1)
    acov = np.fft.irfft(f * np.conj(f), n=2 * n, axis=1)[:, :n] / n  # (c, n, d), biased
    w = acov[:, 0].mean(0) * n / max(n - 1, 1)
    var_plus = w * (n - 1) / n + (x.mean(1).var(0, ddof=1) if c > 1 else 0.0)
    var_plus = np.where(var_plus > 0, var_plus, 1.0)
    rho = 1.0 - (w - acov.mean(0)) / var_plus  # (n, d)
    m = n // 2
    pairs = rho[0:2 * m:2] + rho[1:2 * m:2]  # (m, d)
    cut = np.argmax(pairs < 0, axis=0)
    cut = np.where((pairs < 0).any(0), cut, m)
    pairs = np.minimum.accumulate(np.where(pairs > 0, pairs, 0.0), axis=0)
    keep = np.arange(m)[:, None] < cut[None, :]
    tau = -1.0 + 2.0 * np.where(keep, pairs, 0.0).sum(0)
    return np.maximum(tau, 1.0 / math.log10(max(c * n, 10)))
