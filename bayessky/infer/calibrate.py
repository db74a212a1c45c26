r"""Simulation-based calibration (SBC) and expected coverage for any engine.

Convention: the model takes the data as its FIRST argument, ``model(data)``, observes it when
``data`` is a value and samples it (prior predictive) when ``data is None``. Bind any other
arguments first (``functools.partial``).

For m = 1..M: theta_m, d_m ~ p(theta) p(d | theta) from the model itself
(``pyro.infer.Predictive``); the engine returns posterior draws given d_m; the rank of theta_m
among L draws thinned evenly from them is uniform on {0, ..., L} for every parameter when the
engine samples the exact posterior (Talts et al. 2018, "Validating Bayesian inference algorithms
with simulation-based calibration", arXiv:1804.06788). The expected coverage of central
credible intervals at level q equals q for a calibrated posterior (as sbi reports it).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import Predictive
from tqdm.auto import tqdm

from ._compat import get_group
from ._model import inspect_model, seeded

__all__ = ["sbc", "SBCResult", "plot_ranks", "plot_coverage", "find_data_site"]

LEVELS = (0.5, 0.68, 0.9, 0.95)


@dataclass
class SBCResult:
    """Outcome of :func:`sbc`.

    Attributes:
        ranks: ``{name: (M, *shape)}`` integer ranks in {0, ..., num_draws}.
        truths: ``{name: (M, *shape)}`` the parameters the data sets were drawn with.
        num_draws: L, the number of thinned posterior draws each rank is taken among.
        coverage: ``{level: {name: (*shape)}}`` fraction of data sets whose central ``level``
            credible interval (from all draws) contains the truth.
    """

    ranks: dict[str, np.ndarray]
    truths: dict[str, np.ndarray]
    num_draws: int
    coverage: dict[float, dict[str, np.ndarray]]
    levels: tuple[float, ...] = LEVELS
    meta: dict = field(default_factory=dict)

    @property
    def num_datasets(self) -> int:
        return int(next(iter(self.ranks.values())).shape[0])

    def coverage_std(self, level: float) -> float:
        """Binomial standard error of an empirical coverage at ``level`` over M data sets."""
        return float(np.sqrt(level * (1 - level) / self.num_datasets))

    def uniformity(self, bins: int | None = None, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
        """p-values of uniformity per parameter element: chi-square on the rank histogram and KS.

        The histogram groups the L + 1 rank values into ``bins`` contiguous bins (default: about
        M / 10 expected per bin, between 2 and L + 1), with expected counts proportional to the
        ranks each bin holds. The KS test uses ranks spread uniformly within their unit cell,
        u = (rank + U(0, 1)) / (L + 1), which is exactly U(0, 1) under calibration.
        """
        from scipy import stats

        L, M = self.num_draws, self.num_datasets
        b = bins or int(np.clip(M // 10, 2, L + 1))
        groups = np.array_split(np.arange(L + 1), b)
        which = np.empty(L + 1, dtype=int)
        for i, g in enumerate(groups):
            which[g] = i
        expected = M * np.array([len(g) for g in groups]) / (L + 1)
        rng = np.random.default_rng(seed)
        out = {}
        for name, r in self.ranks.items():
            flat = r.reshape(M, -1)
            chi_p = np.empty(flat.shape[1])
            ks_p = np.empty(flat.shape[1])
            for j in range(flat.shape[1]):
                counts = np.bincount(which[flat[:, j]], minlength=b)
                chi = float(((counts - expected) ** 2 / expected).sum())
                chi_p[j] = stats.chi2.sf(chi, b - 1)
                u = (flat[:, j] + rng.random(M)) / (L + 1)
                ks_p[j] = stats.kstest(u, "uniform").pvalue
            out[name] = {"chi2_pvalue": chi_p.reshape(r.shape[1:]), "ks_pvalue": ks_p.reshape(r.shape[1:])}
        return out


def find_data_site(model: Callable, data_site: str | None = None) -> str:
    """Name of the site that observes ``data`` (tries each sampled site of ``model(None)``)."""
    with pyro.validation_enabled(False), poutine.block():
        tr = poutine.trace(model).get_trace(None)
    sampled = [n for n, s in tr.nodes.items() if s["type"] == "sample" and not s["is_observed"]]
    if data_site is not None:
        if data_site not in sampled:
            raise ValueError(f"data_site: {data_site!r} is not sampled by model(None) (sites: {sampled})")
        return data_site
    for name in reversed(sampled):
        try:
            with pyro.validation_enabled(False), poutine.block():
                t2 = poutine.trace(model).get_trace(tr.nodes[name]["value"])
        except Exception:  # noqa: BLE001 - wrong shape for this candidate: try the next
            continue
        node = t2.nodes.get(name)
        if node is not None and node["is_observed"]:
            return name
    raise ValueError("model: found no site that observes the data; the model must take data as its "
                     "first argument, observe it when given and sample it when data is None")


def _posterior_draws(idata, name) -> np.ndarray:
    post = get_group(idata, "posterior")
    if name not in post:
        raise ValueError(f"engine: returned no posterior draws for {name!r}")
    v = np.asarray(post[name].values)
    return v.reshape(v.shape[0] * v.shape[1], *v.shape[2:])


def sbc(
    model: Callable,
    engine: Callable,
    num_datasets: int = 100,
    num_draws: int = 99,
    *,
    params: Sequence[str] | None = None,
    levels: Sequence[float] = LEVELS,
    data_site: str | None = None,
    seed: int = 0,
    progress_bar: bool = False,
) -> SBCResult:
    r"""Simulation-based calibration of ``engine`` on ``model``.

    Arguments:
        model: ``model(data)`` (see module docstring).
        engine: ``engine(model, data) -> InferenceData``, e.g.
            ``lambda m, d: bayessky.infer.nuts(m, d, num_samples=200, warmup_steps=200,
            progress_bar=False)``; it must return draws of the checked latent sites.
        num_datasets: M prior-predictive data sets.
        num_draws: L, posterior draws (thinned evenly from the engine's) each rank is taken among.
        params: latent sites to check (default: all latent sites); vector sites are checked per
            element.
        levels: central credible-interval levels for the expected coverage.
        data_site: the site observing the data (found automatically if omitted).
        seed: seeds the prior-predictive simulations (engines take their own seeds).

    Returns:
        :class:`SBCResult` (ranks, truths, coverage; ``.uniformity()`` for the tests).
    """
    for arg, v in (("num_datasets", num_datasets), ("num_draws", num_draws)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"sbc: {arg} must be a positive integer, got {v!r}")
    levels = tuple(float(q) for q in levels)
    if any(not 0 < q < 1 for q in levels):
        raise ValueError(f"sbc: levels must lie in (0, 1), got {list(levels)}")
    if not callable(engine):
        raise ValueError(f"sbc: engine must be a callable (model, data) -> InferenceData, got {engine!r}")
    site = find_data_site(model, data_site)
    info = inspect_model(model, (None,))
    latent = [n for n in info.latent if n != site]
    params = list(latent if params is None else params)
    bad = [p for p in params if p not in latent]
    if bad:
        raise ValueError(f"sbc: params {bad} are not latent sites of the model (latent: {latent})")
    with seeded(seed), torch.no_grad():
        prior = Predictive(model, num_samples=num_datasets, return_sites=params + [site],
                           parallel=False)(None)
    truths = {p: prior[p].detach().cpu().numpy().reshape(num_datasets, *info.sites[p].shape)
              for p in params}
    ranks = {p: np.empty((num_datasets, *info.sites[p].shape), dtype=int) for p in params}
    cover = {q: {p: np.zeros(info.sites[p].shape) for p in params} for q in levels}
    n_total = None
    for m in tqdm(range(num_datasets), desc="sbc", disable=not progress_bar):
        data = prior[site][m].reshape(info.sites[site].shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a divergence warning per data set is noise here
            idata = engine(model, data)
        for p in params:
            draws = _posterior_draws(idata, p)
            n_total = draws.shape[0]
            if n_total < num_draws:
                raise ValueError(f"sbc: engine returned {n_total} draws, fewer than num_draws={num_draws}")
            idx = np.linspace(0, n_total - 1, num_draws).round().astype(int)
            ranks[p][m] = (draws[idx] < truths[p][m]).sum(0)
            for q in levels:
                lo, hi = np.quantile(draws, [(1 - q) / 2, (1 + q) / 2], axis=0)
                cover[q][p] += (lo <= truths[p][m]) & (truths[p][m] <= hi)
    coverage = {q: {p: c / num_datasets for p, c in d.items()} for q, d in cover.items()}
    return SBCResult(ranks, truths, num_draws, coverage, levels,
                     {"data_site": site, "draws_per_fit": n_total})


def _labels(result: SBCResult, params, max_panels: int):
    out = []
    for p in params or result.ranks:
        shape = result.ranks[p].shape[1:]
        for idx in np.ndindex(*shape):
            out.append((p, idx, p if not shape else f"{p}{list(idx)}"))
            if len(out) >= max_panels:
                return out
    return out


def plot_ranks(result: SBCResult, params: Sequence[str] | None = None, bins: int | None = None,
               max_panels: int = 12):
    """Rank histograms with the 99 % band of a uniform histogram (binomial), one panel per parameter."""
    import matplotlib.pyplot as plt
    from scipy import stats

    L, M = result.num_draws, result.num_datasets
    b = bins or int(np.clip(M // 10, 2, L + 1))
    panels = _labels(result, params, max_panels)
    ncol = min(4, len(panels))
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False)
    edges = np.linspace(-0.5, L + 0.5, b + 1)
    p_bin = 1.0 / b
    lo, hi = stats.binom.ppf([0.005, 0.995], M, p_bin)
    for ax, (p, idx, label) in zip(axes.flat, panels):
        r = result.ranks[p].reshape(M, -1)[:, np.ravel_multi_index(idx, result.ranks[p].shape[1:])
                                              if idx else 0]
        ax.axhspan(lo, hi, color="0.85", label="99 % uniform band")
        ax.hist(r, bins=edges, color="C0", alpha=0.8)
        ax.set_title(label)
        ax.set_xlabel("rank")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    axes[0, 0].legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return fig


def plot_coverage(result: SBCResult, params: Sequence[str] | None = None, max_panels: int = 12):
    """Empirical vs nominal coverage of central credible intervals with binomial +-2 sigma bars."""
    import matplotlib.pyplot as plt

    levels = np.asarray(result.levels)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], color="k", lw=1, label="calibrated")
    err = 2 * np.sqrt(levels * (1 - levels) / result.num_datasets)
    for i, (p, idx, label) in enumerate(_labels(result, params, max_panels)):
        emp = np.array([result.coverage[q][p][idx] for q in result.levels])
        ax.errorbar(levels + 0.004 * i, emp, yerr=err, fmt="o", ms=3, label=label)
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
