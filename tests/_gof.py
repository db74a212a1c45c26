"""Pyro's nearest-neighbour goodness-of-fit test with the p-value taken from scipy.

Pyro's ``auto_goodness_of_fit`` bins exp(-n p(x) V(r_nn)) into n^(1/3) bins and runs Pearson's
chi^2 test, but its own ``chi2sf`` is wrong in the tail (pyro 1.9.2: chi^2 = 300 on 20 dof gives
0.9997, scipy 8e-52; chi^2 near 1000 gives 1.0), so a grossly wrong sampler or density passes.
The statistic here is Pyro's, term by term; only the survival function is scipy's.
"""

from __future__ import annotations

from math import gamma, pi

import numpy as np
import torch
from scipy import stats
from scipy.spatial import cKDTree


def nn_gof(samples: torch.Tensor, log_p: torch.Tensor) -> float:
    """p-value that ``samples`` (n, ...) were drawn from the density exp(``log_p``) (n,)."""
    x = samples.detach().cpu().reshape(samples.shape[0], -1).double().numpy()
    n, d = x.shape
    r = cKDTree(x).query(x, k=2)[0][:, 1]
    expo = n * np.exp(log_p.detach().cpu().double().numpy()) * r**d * pi ** (d / 2) / gamma(d / 2 + 1)
    bins = int(round(n ** 0.333))
    counts = np.bincount(np.minimum((np.exp(-expo) * bins).astype(int), bins - 1), minlength=bins)
    return float(stats.chisquare(counts).pvalue)
