"""Warm-up adaptation for NUTS, batched over chains: dual averaging, Welford, Stan's windows.

Everything here follows Stan (reference manual, "HMC algorithm parameters") and NumPyro
(``numpyro.infer.hmc_util``) so that a bayessky warm-up and a NumPyro warm-up with the same
settings end in the same place:

* the step size is tuned by Nesterov dual averaging (Hoffman & Gelman 2014, section 3.2) towards
  a target mean acceptance statistic, with ``gamma = 0.05, t0 = 10, kappa = 0.75`` and the
  proximal centre ``mu = log(10 eps_0)``;
* the inverse mass matrix is the regularised sample covariance of the draws of each *slow*
  window, ``(n / (n + 5)) Sigma + 1e-3 (5 / (n + 5)) I``, accumulated with Welford's algorithm;
* the windows are Stan's: a 75-step initial buffer, slow windows 25, 50, 100, ... and a 50-step
  terminal buffer (15% / 75% / 10% of the warm-up when it is shorter than 150 steps).

Every state carries a leading chain axis: each chain adapts its own step size and mass matrix.
"""

from __future__ import annotations

import math

import torch

__all__ = ["adaptation_schedule", "DualAveraging", "Welford"]


def adaptation_schedule(num_steps: int) -> list[tuple[int, int]]:
    """Stan's warm-up windows as inclusive ``(start, end)`` iteration pairs.

    The first window is the initial fast buffer, the last the terminal buffer, those in between
    the slow windows at whose ends the mass matrix is updated. Fewer than 20 steps give a single
    window (step size only), as in Stan and NumPyro.

    Example:
        >>> adaptation_schedule(500)
        [(0, 74), (75, 99), (100, 149), (150, 249), (250, 449), (450, 499)]
    """
    if num_steps <= 0:
        return []
    if num_steps < 20:
        return [(0, num_steps - 1)]
    start, end, window = 75, 50, 25
    if start + end + window > num_steps:
        start = int(0.15 * num_steps)
        end = int(0.1 * num_steps)
        window = num_steps - start - end
    schedule = [(0, start - 1)]
    end_start = num_steps - end
    next_start, next_size = start, window
    while next_start < end_start:
        cur_start, cur_size = next_start, next_size
        # A window that would leave less than twice its size before the terminal buffer
        # swallows the rest, so slow windows only grow.
        if 3 * cur_size <= end_start - cur_start:
            next_size = 2 * cur_size
        else:
            cur_size = end_start - cur_start
        next_start = cur_start + cur_size
        schedule.append((cur_start, next_start - 1))
    schedule.append((end_start, num_steps - 1))
    return schedule


class DualAveraging:
    r"""Nesterov dual averaging of ``log eps`` towards a target acceptance, one per chain.

    With :math:`h_t = \delta - \alpha_t` (target minus observed acceptance),

    .. math::
        \bar h_t = (1 - \tfrac{1}{t + t_0}) \bar h_{t-1} + \tfrac{h_t}{t + t_0}, \quad
        x_t = \mu - \tfrac{\sqrt t}{\gamma} \bar h_t, \quad
        \bar x_t = t^{-\kappa} x_t + (1 - t^{-\kappa}) \bar x_{t-1}.

    ``x_t`` is the step size used during warm-up and ``exp(x_bar)`` the one kept afterwards.

    Arguments:
        prox_center: :math:`\mu`, shape (chains,).
        gamma, t0, kappa: the usual constants (Hoffman & Gelman 2014, section 3.2).

    References:
        The No-U-Turn Sampler (Hoffman & Gelman, 2014), https://arxiv.org/abs/1111.4246
    """

    def __init__(self, prox_center: torch.Tensor, gamma: float = 0.05, t0: float = 10.0,
                 kappa: float = 0.75):
        self.gamma, self.t0, self.kappa = gamma, t0, kappa
        self.reset(prox_center)

    def reset(self, prox_center: torch.Tensor) -> None:
        self.mu = prox_center.clone()
        self.x = torch.zeros_like(prox_center)
        self.x_avg = torch.zeros_like(prox_center)
        self.h_avg = torch.zeros_like(prox_center)
        self.t = 0

    def update(self, accept_prob: torch.Tensor, target: float) -> torch.Tensor:
        """One step with the observed mean acceptance (chains,); returns ``x_t = log eps``."""
        self.t += 1
        t = self.t
        eta = 1.0 / (t + self.t0)
        self.h_avg = (1 - eta) * self.h_avg + eta * (target - accept_prob)
        self.x = self.mu - (math.sqrt(t) / self.gamma) * self.h_avg
        w = t ** (-self.kappa)
        self.x_avg = w * self.x + (1 - w) * self.x_avg
        return self.x


class Welford:
    """Running mean and (co)variance of draws, batched over chains (Welford 1962).

    Arguments:
        chains, dim: shape of one draw, (chains, dim).
        dense: keep the full (chains, dim, dim) covariance instead of the diagonal.
        device, dtype: where the accumulators live.
    """

    def __init__(self, chains: int, dim: int, dense: bool, device=None, dtype=None):
        self.dense = dense
        self.mean = torch.zeros(chains, dim, device=device, dtype=dtype)
        shape = (chains, dim, dim) if dense else (chains, dim)
        self.m2 = torch.zeros(shape, device=device, dtype=dtype)
        self.n = 0

    def reset(self) -> None:
        self.mean.zero_()
        self.m2.zero_()
        self.n = 0

    def update(self, x: torch.Tensor) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        if self.dense:
            self.m2 += delta.unsqueeze(-1) * (x - self.mean).unsqueeze(-2)
        else:
            self.m2 += delta * (x - self.mean)

    def covariance(self, regularize: bool = True) -> torch.Tensor:
        """Sample (co)variance; with ``regularize``, Stan's shrinkage towards ``1e-3 I``."""
        n = self.n
        cov = self.m2 / max(n - 1, 1)
        if self.dense:
            cov = 0.5 * (cov + cov.mT)  # float round-off makes m2 slightly asymmetric
        if regularize:
            cov = cov * (n / (n + 5.0))
            shrink = 1e-3 * 5.0 / (n + 5.0)
            if self.dense:
                cov = cov + shrink * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
            else:
                cov = cov + shrink
        return cov
