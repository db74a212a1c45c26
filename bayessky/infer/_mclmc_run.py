r"""Tuning and sampling loops of MCLMC (unadjusted) and MAMS (Metropolis-adjusted) on a batched
flat potential ``U (C, D) -> (C,)``; the dynamics are in :mod:`bayessky.infer._isokinetic`.

Unadjusted warm-up, ``W`` integration steps (Robnik et al. 2023, section 4; the scheme of
BlackJAX's ``mclmc_find_L_and_step_size``):

1. ``0.3 W`` steps from the start with ``L = sqrt(d)``: the step size follows the energy error.
   The energy change per step has ``Var[Delta E] / d ~ c eps^6``; every step gives an estimate
   ``xi / eps^6`` of ``c``, ``xi = Delta E^2 / (d Var_target)``, averaged with an exponential
   memory of ~150 steps and weights ``exp(-(log xi)^2 / (2 (6 * 1.5)^2))`` that discount steps far
   from the target; ``eps = (mean)^(-1/6)``. A non-finite step is undone and caps ``eps`` at 0.8
   times its value.
2. ``0.3 W`` steps: the same, accumulating the step-size-weighted mean and variance of ``x``.
   Then the diagonal preconditioner ``sigma = sqrt(var)`` (``L = sqrt(d)`` in the whitened
   coordinates; without preconditioning ``L = sqrt(sum var)``) and ``0.1 W`` steps to re-tune eps.
3. ``0.3 W`` steps at fixed eps: ``L = 0.4 eps mean_i tau_i`` from the integrated autocorrelation
   times ``tau_i`` (in steps) of the coordinates.

Step size, ``L`` and preconditioner are shared by the chains and estimated from all of them
together (C times the draws of one chain; all chains then advance with the same scalars, so a
batch needs no masking). Adjusted warm-up: the first half of the iterations is the unadjusted
warm-up above (integration steps: burn-in, preconditioner, ``L``); the second half are MAMS
transitions: a quarter tune the step size by dual averaging toward ``target_accept``, a quarter
measure the autocorrelation times ``tau`` (in transitions) of MAMS itself and lengthen the
trajectory to ``L <- max(L, 0.4 L mean tau)``.

A MAMS transition (Robnik, Cohn-Gordon & Seljak 2025): a fresh uniform velocity, ``n`` steps of
the isokinetic integrator, accepted with probability ``min(1, exp(-Delta E))``, ``Delta E`` the
trajectory's total energy error; ``n`` is drawn uniformly from ``1 .. 2 round(L / eps) - 1`` at
every transition (mean ``L / eps``, shared by the chains) to avoid resonant trajectory lengths.

References:
    Microcanonical Hamiltonian Monte Carlo (Robnik, De Luca, Silverstein & Seljak, 2023, JMLR),
    https://arxiv.org/abs/2212.08549
    Metropolis Adjusted Microcanonical Hamiltonian Monte Carlo (Robnik, Cohn-Gordon & Seljak,
    2025), https://arxiv.org/abs/2503.01707
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ._adaptation import DualAveraging
from ._isokinetic import (
    INTEGRATORS,
    Isokinetic,
    autocorrelation_time,
    random_direction,
    refresh,
    refresh_rate,
)
from .fast_nuts import _Gradient

__all__ = ["run"]

_MAX_DELTA_ENERGY = 1000.0  # a MAMS trajectory with a larger energy error counts as divergent
_NOISE_BLOCK = 32  # normal draws are made this many steps at a time (one call, not 32)


def _host(a) -> np.ndarray:
    return a if isinstance(a, np.ndarray) else a.detach().cpu().numpy()


class _Noise:
    """The run's random numbers: (C, D) normals from one torch generator, drawn in blocks, and
    scalars (MH uniforms, trajectory lengths) from a numpy generator, both from ``seed``."""

    def __init__(self, seed: int, shape: tuple[int, int], dtype, device):
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(int(seed))
        self.np = np.random.default_rng(np.random.SeedSequence(int(seed)).spawn(1)[0])
        self.shape, self.kw = shape, {"dtype": dtype, "device": device}
        self.block, self.i = None, _NOISE_BLOCK

    def normal(self) -> Tensor:
        if self.i == _NOISE_BLOCK:
            self.block = torch.randn((_NOISE_BLOCK, *self.shape), generator=self.gen, **self.kw)
            self.i = 0
        self.i += 1
        return self.block[self.i - 1]


class _State:
    __slots__ = ("x", "u", "U", "g", "gy")

    def __init__(self, x, u, U, g, gy):
        self.x, self.u, self.U, self.g, self.gy = x, u, U, g, gy

    def parts(self):
        return self.x, self.u, self.U, self.g, self.gy


class _EnergyStepSize:
    """Step size from the energy error per step (see the module docstring, stage 1)."""

    def __init__(self, eps: float, dim: int, target: float, n_eff: int = 150, trust: float = 1.5):
        self.eps, self.dim, self.target = eps, dim, target
        self.decay = (n_eff - 1.0) / (n_eff + 1.0)
        self.width = 6.0 * trust
        self.reset()

    def reset(self) -> None:
        self.num = self.den = 0.0
        self.eps_max = math.inf

    def update(self, d_energy: np.ndarray, bad: np.ndarray) -> float:
        if bad.any():
            self.eps_max = 0.8 * self.eps
        de = d_energy[~bad].astype(np.float64)
        xi = de * de / (self.dim * self.target) + 1e-8
        w = np.exp(-0.5 * (np.log(xi) / self.width) ** 2)
        self.num = self.decay * self.num + float((w * xi).sum()) / self.eps**6
        self.den = self.decay * self.den + float(w.sum())
        if self.den > 0 and self.num > 0:
            self.eps = (self.num / self.den) ** (-1.0 / 6.0)
        self.eps = min(self.eps, self.eps_max)
        return self.eps


class _Sampler:
    def __init__(self, potential_fn, x0: Tensor, seed: int, integrator: str):
        chains, dim = x0.shape
        if dim < 2:
            raise ValueError("mclmc: the isokinetic dynamics need at least 2 dimensions, the model "
                             f"has {dim}")
        self.chains, self.dim = chains, dim
        self.kw = {"dtype": x0.dtype, "device": x0.device}
        self.grad = _Gradient(potential_fn, chains)
        host = x0.device.type == "cpu" and x0.dtype in (torch.float32, torch.float64)
        self.kern = Isokinetic(self.grad, dim, None, integrator, host)
        self.noise = _Noise(seed, (chains, dim), **self.kw)
        self.grads_per_step = INTEGRATORS[integrator]
        U, g = self.grad(x0)
        bad = ~(torch.isfinite(U) & torch.isfinite(g).all(-1))
        if bad.any():
            raise ValueError(f"initial_params: potential or gradient not finite for chains "
                             f"{bad.nonzero().flatten().tolist()}")
        U = U.numpy() if host else U
        self.state = _State(x0, random_direction(self.noise.normal()), U, g, g)
        self.n_grad = 1

    @property
    def sigma(self):
        return self.kern.sigma

    def set_sigma(self, sigma: Tensor | None) -> None:
        self.kern.sigma = sigma
        s = self.state
        s.gy = self.kern.whiten(s.g)

    # -- one unadjusted step ---------------------------------------------------------------
    def step(self, eps: float, nu: float):
        """One integration step and partial refresh; returns (Delta E (C,), bad (C,))."""
        s, kern = self.state, self.kern
        z = self.noise.normal()
        x, u, U, g, gy, dk, bad = kern.step(*s.parts(), eps)
        self.n_grad += self.grads_per_step
        d_energy = dk + U - s.U
        bad = bad | ~kern.xp.isfinite(d_energy)
        if bad.any():  # undo the step for those chains, with a new direction
            x, u, U, g, gy = kern.restore(bad, (x, u, U, g, gy), (s.x, random_direction(z), s.U, s.g, s.gy))
        self.state = _State(x, refresh(u, z, nu) if nu > 0 else u, U, g, gy)
        return _host(d_energy), _host(bad)

    # -- one MAMS transition ------------------------------------------------------------------
    def transition(self, eps: float, n_steps: int):
        """Fresh velocity, ``n_steps`` integration steps, Metropolis accept/reject per chain.
        Returns (Delta E, acceptance probability, accepted, diverging), each (C,) numpy."""
        s0, kern = self.state, self.kern
        u0 = random_direction(self.noise.normal())
        start = (s0.x, u0, s0.U, s0.g, s0.gy)
        x, u, U, g, gy = start
        dk_sum = 0.0
        failed = np.zeros(self.chains, dtype=bool)
        for _ in range(n_steps):
            x, u, U, g, gy, dk, bad = kern.step(x, u, U, g, gy, eps)
            self.n_grad += self.grads_per_step
            dk_sum = dk_sum + dk
            if bad.any():  # rejected whatever follows; parked at the start, away from NaNs
                failed |= _host(bad)
                x, u, U, g, gy = kern.restore(bad, (x, u, U, g, gy), start)
        d_energy = _host(dk_sum + U - s0.U).astype(np.float64)
        d_energy = np.where(failed | ~np.isfinite(d_energy), np.inf, d_energy)
        accept_prob = np.exp(np.minimum(0.0, -d_energy))
        accepted = self.noise.np.random(self.chains) < accept_prob
        diverging = ~np.isfinite(d_energy) | (d_energy > _MAX_DELTA_ENERGY)
        if accepted.all():
            self.state = _State(x, u, U, g, gy)
        elif accepted.any():
            rows = ~accepted if kern.host else torch.from_numpy(~accepted).to(self.kw["device"])
            self.state = _State(*kern.restore(rows, (x, u, U, g, gy), s0.parts()))
        return d_energy, accept_prob, accepted, diverging


def _tau_mean(draws: Tensor, chunk: int = 512) -> float:
    """Mean over coordinates of the autocorrelation time of draws (n, C, D), in steps."""
    taus = []
    for lo in range(0, draws.shape[-1], chunk):
        block = draws[:, :, lo:lo + chunk].detach().cpu().double().numpy().transpose(1, 0, 2)
        taus.append(autocorrelation_time(block))
    tau = np.concatenate(taus)
    tau = tau[np.isfinite(tau)]
    return float(tau.mean()) if tau.size else math.nan


def _bar(progress_bar: bool, total: int):
    if not progress_bar:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="warmup")


def _tune_unadjusted(sm: _Sampler, steps: int, eps: float, L: float | None, target: float,
                     precondition: bool, bar) -> tuple[float, float]:
    """The unadjusted warm-up (stages 1-3 of the module docstring); returns (eps, L)."""
    d = sm.dim
    n1, n2 = round(0.3 * steps), round(0.3 * steps)
    n2b = round(0.1 * steps) if precondition else 0
    n3 = steps - n1 - n2 - n2b
    L_fixed = L is not None
    L = L if L_fixed else math.sqrt(d)
    ctl = _EnergyStepSize(eps, d, target)
    s1 = torch.zeros(d, dtype=torch.float64, device=sm.kw["device"])
    s2 = torch.zeros_like(s1)
    weight = 0.0

    def advance(n, collect=False):
        nonlocal weight, s1, s2
        for _ in range(n):
            e = ctl.eps
            d_energy, bad = sm.step(e, refresh_rate(e, L, d))
            ctl.update(d_energy, bad)
            if collect:
                x = sm.state.x.double()
                s1 += e * x.sum(0)
                s2 += e * (x * x).sum(0)
                weight += e * sm.chains
            if bar is not None:
                bar.update(1)

    advance(n1)
    advance(n2, collect=True)
    if n2 > 1 and weight > 0:
        mean = s1 / weight
        var = (s2 / weight - mean * mean).clamp_min(0)
        var = torch.where(var > 0, var, var[var > 0].min() if (var > 0).any() else torch.ones_like(var))
        if precondition:
            sm.set_sigma(var.sqrt().to(sm.kw["dtype"]))
            L = L if L_fixed else math.sqrt(d)
            ctl.reset()
            advance(n2b)
        elif not L_fixed:
            L = math.sqrt(float(var.sum()))
    if n3 >= 20 and not L_fixed:
        draws = torch.empty(n3, sm.chains, d, **sm.kw)
        for i in range(n3):
            sm.step(ctl.eps, refresh_rate(ctl.eps, L, d))
            draws[i] = sm.state.x
            if bar is not None:
                bar.update(1)
        tau = _tau_mean(draws)
        if math.isfinite(tau):
            L = 0.4 * ctl.eps * tau
    else:
        advance(n3)
    return ctl.eps, L


def _tune_adjusted(sm: _Sampler, steps: int, eps: float, L: float, target_accept: float, bar) -> float:
    """Dual averaging of the MAMS step size toward ``target_accept`` (pooled over chains)."""
    da = DualAveraging(torch.tensor([math.log(2.0 * eps)], dtype=torch.float64))
    for t in range(steps):
        n = _num_steps(sm, eps, L)
        _, prob, _, _ = sm.transition(eps, n)
        log_eps = da.update(torch.tensor([float(np.mean(prob))], dtype=torch.float64), target_accept)
        eps = float(torch.exp(da.x_avg if t == steps - 1 else log_eps))
        if bar is not None:
            bar.update(1)
    return eps


def _tune_mams_length(sm: _Sampler, steps: int, eps: float, L: float, bar) -> float:
    """MAMS trajectory length from its own draws: ``L <- 0.4 L mean_i tau_i`` (``tau_i`` the
    autocorrelation times in transitions, ``L`` the mean integration time of one), the fixed
    point of the unadjusted rule ``0.4 eps tau_steps``; never shorter than the unadjusted ``L``,
    whose nearly-fully-refreshed short steps would make MAMS a random walk."""
    if steps < 20:
        for _ in range(steps):
            sm.transition(eps, _num_steps(sm, eps, L))
            if bar is not None:
                bar.update(1)
        return L
    draws = torch.empty(steps, sm.chains, sm.dim, **sm.kw)
    for i in range(steps):
        sm.transition(eps, _num_steps(sm, eps, L))
        draws[i] = sm.state.x
        if bar is not None:
            bar.update(1)
    tau = _tau_mean(draws)
    return max(L, 0.4 * L * tau) if math.isfinite(tau) else L


# Cap on the mean number of integration steps of one MAMS trajectory (as NUTS caps its tree depth):
# where the tuned L / eps is huge (a funnel's neck sets a tiny eps) one transition would otherwise cost
# thousands of gradients. The count is drawn independently of the state, so MAMS stays exact.
MAX_MEAN_STEPS = 32


def _num_steps(sm: _Sampler, eps: float, L: float) -> int:
    mean = min(MAX_MEAN_STEPS, max(1, int(round(L / eps)))) if math.isfinite(L / eps) else 1
    return int(sm.noise.np.integers(1, 2 * mean)) if mean > 1 else 1


def run(potential_fn: Callable[[Tensor], Tensor], x0: Tensor, num_samples: int, warmup_steps: int, *,
        adjusted: bool, integrator: str, seed: int, step_size: float | None, L: float | None,
        desired_energy_var: float, diagonal_preconditioning: bool, target_accept: float,
        thinning: int, progress_bar: bool) -> dict:
    """Warm-up and sampling; returns numpy arrays: ``samples`` (C, S, D) and per-draw stats
    (C, S) plus the tuned ``step_size``, ``L`` and ``sigma`` (D,) and the gradient count."""
    with torch.no_grad(), np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        sm = _Sampler(potential_fn, x0.detach().clone(), seed, integrator)
        C, D = sm.chains, sm.dim
        eps = float(step_size) if step_size is not None else 0.25 * math.sqrt(D)
        warm_u = (warmup_steps + 1) // 2 if adjusted else warmup_steps
        warm_a = warmup_steps - warm_u
        per_draw = 1 if adjusted else thinning
        bar = _bar(progress_bar, warmup_steps + num_samples * per_draw)
        try:
            if warm_u > 0:
                eps, L = _tune_unadjusted(sm, warm_u, eps, L, desired_energy_var,
                                          diagonal_preconditioning, bar)
            L = math.sqrt(D) if L is None else float(L)
            if adjusted and warm_a > 0:
                n_da = (warm_a + 1) // 2
                eps = _tune_adjusted(sm, n_da, eps, L, target_accept, bar)
                L = _tune_mams_length(sm, warm_a - n_da, eps, L, bar)
            n_warm = sm.n_grad
            if bar is not None:
                bar.set_description("sample")
            samples = torch.empty(C, num_samples, D, **sm.kw)
            stats = {k: np.zeros((C, num_samples), dtype=dt) for k, dt in (
                ("energy_change", np.float64), ("diverging", bool), ("lp", np.float64),
                ("n_steps", np.int64))}
            if adjusted:
                stats["acceptance_rate"] = np.zeros((C, num_samples))
            nu = refresh_rate(eps, L, D)
            for i in range(num_samples):
                if adjusted:
                    n = _num_steps(sm, eps, L)
                    d_energy, prob, _, div = sm.transition(eps, n)
                    stats["acceptance_rate"][:, i] = prob
                else:
                    n, div = thinning, np.zeros(C, dtype=bool)
                    for _ in range(thinning):
                        d_energy, bad = sm.step(eps, nu)
                        div |= bad
                    d_energy = np.where(div, np.nan, d_energy)
                samples[:, i] = sm.state.x
                stats["energy_change"][:, i] = d_energy
                stats["diverging"][:, i] = div
                stats["lp"][:, i] = -_host(sm.state.U)
                stats["n_steps"][:, i] = n
                if bar is not None:
                    bar.update(per_draw)
        finally:
            if bar is not None:
                bar.close()
    sigma = sm.sigma
    return {"samples": samples, **stats, "step_size": eps, "L": L,
            "sigma": None if sigma is None else _host(sigma),
            "gradient_calls": sm.n_grad, "gradient_calls_warmup": n_warm}
