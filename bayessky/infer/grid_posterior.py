r"""Grid posterior: the model's log joint on the outer product of parameter axes, batched.

For axes theta_1 (n_1 values), ..., theta_d (n_d values) naming ALL latent sites of a model, the
unnormalised log posterior at every grid point is

    log p(theta, d) = sum_{prior sites} log p(theta_i) + sum_{observed, factor sites} log p(d | theta)

evaluated by running the model once per chunk of grid points with the site values carrying a
leading batch dimension (see :mod:`bayessky.infer._model`). Each grid point stands for the cell
around it (Voronoi cells per axis: boundaries at mid-points, end cells symmetric), so the
normalised weights are

    w_j = p(theta_j, d) V_j / sum_k p(theta_k, d) V_k,      V_j = prod_i width_i(j),

which for evenly spaced axes is just the normalised density. ``log_evidence`` is the same
midpoint-rule quadrature, log sum_j p(theta_j, d) V_j.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy.special import logsumexp

from .._validate import device_dtype
from ._checks import check_positive
from ._forked import can_fork, run_forked, usable_cores
from ._model import BatchEvaluator

__all__ = ["grid", "GridPosterior"]


def _cell_widths(v: np.ndarray) -> np.ndarray:
    if len(v) == 1:
        return np.ones(1)
    mids = 0.5 * (v[1:] + v[:-1])
    lo = np.concatenate([[v[0] - (mids[0] - v[0])], mids])
    hi = np.concatenate([mids, [v[-1] + (v[-1] - mids[-1])]])
    return hi - lo


class GridPosterior:
    r"""Posterior on a rectangular grid, one per map of a stack.

    Attributes:
        axes: ``{name: values (n_i,)}`` in axis order.
        log_prior, log_likelihood: (M, n_1, ..., n_d) arrays (M maps; M = 1 for one data set).
        stacked: whether the data were a stack (then per-map results keep the leading M).

    Arguments:
        axes, log_prior, log_likelihood: as above; ``stacked``: see above.
    """

    def __init__(self, axes: Mapping[str, np.ndarray], log_prior: np.ndarray,
                 log_likelihood: np.ndarray, stacked: bool = False):
        self.axes = {k: np.asarray(v, dtype=float) for k, v in axes.items()}
        self.log_prior = np.asarray(log_prior, dtype=float)
        self.log_likelihood = np.asarray(log_likelihood, dtype=float)
        self.stacked = stacked
        self.names = list(self.axes)
        self.shape = tuple(len(v) for v in self.axes.values())
        widths = [_cell_widths(v) for v in self.axes.values()]
        self.cell_volume = np.ones(self.shape)
        for i, w in enumerate(widths):
            self.cell_volume = self.cell_volume * w.reshape([-1 if j == i else 1 for j in range(len(widths))])
        self.widths = dict(zip(self.names, widths))
        lj = self.log_prior + self.log_likelihood + np.log(self.cell_volume)
        lj = np.where(np.isnan(lj), -np.inf, lj)
        flat = lj.reshape(lj.shape[0], -1)
        self._log_evidence = logsumexp(flat, axis=1)
        if not np.all(np.isfinite(self._log_evidence)):
            bad = np.flatnonzero(~np.isfinite(self._log_evidence)).tolist()
            raise ValueError(f"grid: the posterior is zero (or infinite) at every grid point for map(s) "
                             f"{bad[:5]}; widen the grid or check the prior support")
        self._w = np.exp(flat - self._log_evidence[:, None]).reshape(lj.shape)

    def _out(self, a):
        return a if self.stacked else a[0]

    # -- weights and moments -------------------------------------------------------------------
    @property
    def weights(self) -> np.ndarray:
        """Normalised posterior mass per grid point, (M, *shape) or (*shape); sums to 1 per map."""
        return self._out(self._w)

    @property
    def log_evidence(self):
        """log p(data) by midpoint-rule quadrature over the grid, (M,) or scalar."""
        return self._out(self._log_evidence)

    def marginal(self, name: str, density: bool = False) -> np.ndarray:
        """1-D marginal mass per grid value of axis ``name`` (or density = mass / cell width)."""
        if name not in self.axes:
            raise KeyError(f"name: {name!r} is not a grid axis ({self.names})")
        i = self.names.index(name)
        other = tuple(1 + j for j in range(len(self.names)) if j != i)
        m = self._w.sum(axis=other)
        return self._out(m / self.widths[name] if density else m)

    def _grids(self):
        return np.meshgrid(*self.axes.values(), indexing="ij")

    @property
    def mean(self) -> dict[str, np.ndarray]:
        """Posterior mean of each axis (the MMSE estimate), (M,) or scalar per name."""
        return {k: self._out((self._w * g).reshape(self._w.shape[0], -1).sum(-1))
                for k, g in zip(self.names, self._grids())}

    mmse = mean

    @property
    def std(self) -> dict[str, np.ndarray]:
        """Posterior standard deviation of each axis (grid quadrature; no within-cell variance)."""
        out = {}
        mean = {k: (self._w * g).reshape(self._w.shape[0], -1).sum(-1)
                for k, g in zip(self.names, self._grids())}
        for k, g in zip(self.names, self._grids()):
            m = mean[k].reshape((-1,) + (1,) * len(self.shape))
            var = (self._w * (g - m) ** 2).reshape(self._w.shape[0], -1).sum(-1)
            out[k] = self._out(np.sqrt(var))
        return out

    @property
    def map_estimate(self) -> dict[str, np.ndarray]:
        """The grid point of highest posterior mass per map."""
        idx = self._w.reshape(self._w.shape[0], -1).argmax(-1)
        sub = np.unravel_index(idx, self.shape)
        return {k: self._out(self.axes[k][s]) for k, s in zip(self.names, sub)}

    # -- credible regions ------------------------------------------------------------------------
    @property
    def density(self) -> np.ndarray:
        """Posterior density at the grid points (mass / cell volume), (M, *shape) or (*shape)."""
        return self._out(self._w / self.cell_volume)

    def contour_levels(self, levels: Sequence[float] = (0.68, 0.95)) -> np.ndarray:
        """Density thresholds t_q of the highest-posterior-density regions, (M, L) or (L,).

        The region {density >= t_q} is the smallest set of grid cells, taken in order of decreasing
        density, whose mass reaches q; draw it with ``contour(axes..., density, levels=t_q)``.
        """
        levels = np.asarray(levels, dtype=float)
        if levels.ndim != 1 or np.any((levels <= 0) | (levels >= 1)):
            raise ValueError(f"levels: expected probabilities in (0, 1), got {levels.tolist()}")
        dens = (self._w / self.cell_volume).reshape(self._w.shape[0], -1)
        mass = self._w.reshape(self._w.shape[0], -1)
        out = np.empty((dens.shape[0], len(levels)))
        for m in range(dens.shape[0]):
            order = np.argsort(-dens[m], kind="stable")
            cum = np.cumsum(mass[m, order])
            idx = np.minimum(np.searchsorted(cum, levels * cum[-1] - 1e-12), order.size - 1)
            out[m] = dens[m, order[idx]]
        return self._out(out)

    def credible_region(self, level: float = 0.68) -> np.ndarray:
        """Boolean mask of the highest-posterior-density region holding >= ``level`` of the mass."""
        t = np.asarray(self.contour_levels([level])).reshape(-1, 1)[:, 0]
        t = t.reshape((-1,) + (1,) * len(self.shape))
        return self._out(self._w / self.cell_volume >= t)

    # -- samples ---------------------------------------------------------------------------------
    def sample(self, num_samples: int, seed: int | None = 0, jitter: bool = False) -> dict[str, np.ndarray]:
        """Draws {name: (M, num_samples)} from the grid weights.

        With ``jitter=True`` each draw is moved uniformly within its grid cell, turning the
        discrete grid distribution into a piecewise-constant density (the one whose quadrature
        the weights are); without it draws sit on grid values.
        """
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples: must be a positive integer, got {num_samples!r}")
        rng = np.random.default_rng(seed)
        flat = self._w.reshape(self._w.shape[0], -1)
        out = {k: np.empty((flat.shape[0], num_samples)) for k in self.names}
        for m in range(flat.shape[0]):
            p = flat[m] / flat[m].sum()
            idx = rng.choice(p.size, size=num_samples, p=p)
            sub = np.unravel_index(idx, self.shape)
            for k, s in zip(self.names, sub):
                v = self.axes[k][s]
                if jitter:
                    v = v + (rng.random(num_samples) - 0.5) * self.widths[k][s]
                    # cells are centred on grid values except at uneven spacing; keep inside
                out[k][m] = v
        return out

    def to_inference_data(self, num_samples: int = 4000, seed: int | None = 0, jitter: bool = False):
        """InferenceData (one chain of draws from the weights) per map: a list if stacked.

        See :meth:`sample` for ``jitter``. attrs carry the posterior mean/std from quadrature and
        the log evidence.
        """
        from ._compat import from_dict

        draws = self.sample(num_samples, seed, jitter)
        mean, std = self.mean, self.std
        out = []
        for m in range(self._w.shape[0]):
            attrs = {"inference_library": "bayessky", "engine": "grid", "jitter": int(jitter),
                     "log_evidence": float(self._log_evidence[m])}
            for k in self.names:
                attrs[f"grid_mean_{k}"] = float(np.atleast_1d(mean[k])[m])
                attrs[f"grid_std_{k}"] = float(np.atleast_1d(std[k])[m])
            out.append(from_dict({"posterior": {k: draws[k][m][None] for k in self.names}}, attrs=attrs))
        return out if self.stacked else out[0]

    def __repr__(self) -> str:
        ax = ", ".join(f"{k}[{len(v)}]" for k, v in self.axes.items())
        return f"GridPosterior({ax}, maps={self._w.shape[0]})"


def _check_axes(grid_axes) -> dict[str, np.ndarray]:
    if not isinstance(grid_axes, Mapping) or not grid_axes:
        raise ValueError("grid: expected a non-empty dict {site name: 1-D values}")
    out = {}
    for k, v in grid_axes.items():
        a = np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=float)
        if a.ndim != 1 or a.size < 1:
            raise ValueError(f"grid[{k!r}]: expected a non-empty 1-D array, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"grid[{k!r}]: contains {int((~np.isfinite(a)).sum())} non-finite values")
        if a.size > 1 and not np.all(np.diff(a) > 0):
            raise ValueError(f"grid[{k!r}]: values must be strictly increasing")
        out[k] = a
    return out


def _check_budget(v) -> float:
    """``memory_budget_mb`` as a finite float > 0; numeric strings (``--set`` on the CLI) convert."""
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            pass  # refused by name below
    return check_positive("grid", "memory_budget_mb", v)


def _datasets(args, stack: bool) -> list[tuple]:
    """The model arguments of each data set: one, or one per entry of a stack ``args[0]``."""
    if not stack:
        return [tuple(args)]
    if not args:
        raise ValueError("grid: stack=True needs the stack of data sets as first argument")
    ndim = args[0].ndim if hasattr(args[0], "ndim") else np.ndim(args[0])
    if ndim < 2:
        # a 1-D stack would make every number its own data set
        raise ValueError(f"grid: stack=True takes data as a stack (M, ...) of data sets, got "
                         f"data of shape {tuple(np.shape(args[0]))}; use stack=False for one "
                         f"data set (or shape (M, 1) for M scalar observations)")
    if len(args[0]) < 1:
        raise ValueError("grid: stack=True got an empty stack of data sets (M = 0)")
    return [(args[0][m],) + tuple(args[1:]) for m in range(len(args[0]))]


def _check_sites(info, axes: Mapping) -> None:
    """Every latent site has an axis, every axis is a latent site, and all of them are scalars."""
    latent = info.latent
    missing = [k for k in latent if k not in axes]
    if missing:
        raise ValueError(f"grid: latent site(s) {missing} have no grid axis; give values for every "
                         f"latent site or condition them with pyro.poutine.condition")
    extra = [k for k in axes if k not in latent]
    if extra:
        raise ValueError(f"grid: {extra} not latent sample sites of the model (latent sites: {latent})")
    nonscalar = [k for k in axes if info.sites[k].shape != ()]
    if nonscalar:
        raise ValueError(f"grid: site(s) {nonscalar} are not scalar; the grid engine takes scalar sites")


def _values(ev, flat: dict, lo: int, hi: int, with_result: bool = False):
    """Log-prior and log-likelihood (hi - lo,) of grid points ``lo:hi`` in one model call (and the
    model's result, for sizing chunks)."""
    names = list(flat)
    lik_sites = [n for n in ev.info.sites if n not in names]
    res = ev({k: v[lo:hi] for k, v in flat.items()})
    lp = res.total(names).detach()
    ll = res.total(lik_sites).detach() if lik_sites else torch.zeros_like(lp)
    out = (lp.cpu().numpy(), ll.cpu().numpy())
    return out + (res,) if with_result else out


def _chunks(n_points: int, chunk_size: int, probe: int | None) -> list[tuple[int, int]]:
    """A data set's model calls: ``chunk_size`` points each; when the chunks were sized by a
    probe, the probe's points first and then a quarter chunk (the first chunk after the probe is
    timed alone before the rest is shared among processes, see :func:`_run_items`: a short one
    leaves less to run alone). Every data set of a stack, and every process count, gets the same
    boundaries, so a map's numbers do not depend on either (batched kernels may round
    differently for another batch size)."""
    bounds = [(0, probe), (probe, min(n_points, probe + max(1, chunk_size // 4)))] if probe else []
    lo = bounds[-1][1] if probe else 0
    while lo < n_points:
        bounds.append((lo, min(n_points, lo + chunk_size)))
        lo = bounds[-1][1]
    return [(lo, hi) for lo, hi in bounds if hi > lo]


#: a grid is cut into at least this many chunks, so that forked processes have chunks to share
#: (30 x 30 grid of hi-cglow-64, 2 processes: 8 chunks 1.88-2.05 s, 12 chunks 1.82-1.85 s, 16 chunks
#: 1.85 s; benchmarks/grid_speed.py --clock wall --processes auto, medians of 5, idle 2-core CPU)
_MIN_CHUNKS = 16


def _size_chunks(ev, flat: dict, n_points: int, memory_budget_mb: float):
    """A probe call on the first 8 points sizes the chunks from ``memory_budget_mb`` (its site
    tensors times a safety factor 4), and at most ``1 / _MIN_CHUNKS`` of the grid, so that forked
    processes have chunks to share (the boundaries must not depend on the process count: a
    batched kernel may round differently for another batch size). Returns (chunk size, probe
    size, the probe's values)."""
    probe = min(n_points, 8)
    lp, ll, res = _values(ev, flat, 0, probe, with_result=True)
    per_point = 4.0 * max(_bytes_per_point(res, probe), 1.0)
    if not ev.vectorised:
        return 1, probe, (lp, ll)
    chunk_size = min(int(memory_budget_mb * 2**20 / per_point), -(-n_points // _MIN_CHUNKS))
    return max(1, chunk_size), probe, (lp, ll)


def _resolve_processes(processes: int | None, device: torch.device) -> int | None:
    """The number of processes, or None (auto: fork when it pays, see :func:`_run_items`, on a
    CPU in a process that may fork); an explicit count > 1 is checked against both."""
    if processes is None:
        return None if device.type == "cpu" and can_fork() else 1
    if processes > 1 and device.type != "cpu":
        raise ValueError(f"grid: processes={processes} splits the grid across CPU processes; the model "
                         f"runs on {device} (use processes=1 or None)")
    if processes > 1 and not can_fork():
        raise ValueError(f"grid: processes={processes} needs a process that can fork workers (this one "
                         "is a daemon, e.g. a Dask or multiprocessing worker, or the platform has no "
                         "fork); use processes=1 or None")
    return int(processes)


#: auto mode forks only when the points left would take this long in this process (a fork, a
#: worker's first call and the pipe cost a few tens of milliseconds) ...
_FORK_WORTH_S = 0.5
#: ... and without timing a chunk first when the probe call alone says they would take this long
#: (a probe also pays the model's first-call costs: hi-cglow-64, 8 points in 0.14 s, 3.7 ms per
#: point after it)
_FORK_SURE_S = 4.0


def _run_items(items: list, run_item, log_prior, log_lik, processes: int | None, bar,
               probe_per_point: float | None = None) -> None:
    """Evaluate (data set, lo, hi) items into ``log_prior`` / ``log_lik`` (M, n_points), here or
    shared with forked single-thread processes. Auto (``processes=None``): share them among one
    process per usable core if the probe's seconds per point say the items would take more
    than ``_FORK_SURE_S``; otherwise run the first item here, timed, and share the rest if it
    would take more than ``_FORK_WORTH_S`` at that speed."""
    def store(i, values):
        m, lo, hi = items[i]
        log_prior[m, lo:hi], log_lik[m, lo:hi] = values
        bar.update(hi - lo)

    def points(part):
        return sum(hi - lo for _, lo, hi in part)

    if not items:
        return
    start = 0
    if processes is None:
        if probe_per_point is not None and probe_per_point * points(items) > _FORK_SURE_S:
            processes = usable_cores()
        else:
            t0 = time.perf_counter()
            store(0, run_item(items[0]))
            per_point = (time.perf_counter() - t0) / points(items[:1])
            start = 1
            processes = usable_cores() if per_point * points(items[1:]) > _FORK_WORTH_S else 1
    todo = items[start:]
    if min(processes, len(todo)) > 1:
        run_forked(todo, run_item, min(processes, len(todo)), lambda i, v: store(start + i, v), "grid")
    else:
        for i, item in enumerate(todo):
            store(start + i, run_item(item))


def _data_site(evaluator, datasets: list[tuple], flat: dict) -> str | None:
    """The observed site that carries the data set and nothing else does, or None.

    Traces the model on data sets 0 and 1 at the first grid point: the site must hold exactly
    each data set as its value, and every other site's log-prob must be the same for both (data
    used elsewhere, e.g. in a ``pyro.factor``, cannot be swapped in by conditioning one site).
    """
    cond = {k: v[0] for k, v in flat.items()}
    traces = []
    for data_args in datasets[:2]:
        ev = BatchEvaluator(evaluator.model, data_args, evaluator.kwargs, info=evaluator.info, name="grid")
        traces.append(ev._trace(cond))
    data = [torch.as_tensor(d[0]) for d in datasets[:2]]
    found = []
    for name, site in evaluator.info.sites.items():
        if site.kind != "observed":
            continue
        vals = [tr.nodes[name]["value"] for tr in traces]
        if all(v.shape == d.shape and torch.equal(v, d.to(v)) for v, d in zip(vals, data)):
            found.append(name)
    if len(found) != 1:
        return None
    for name in evaluator.info.sites:
        if name == found[0]:
            continue
        a, b = (tr.nodes[name].get("log_prob") for tr in traces)
        if a is not None and not torch.equal(a, b):
            return None
    return found[0]


def _evaluate_maps(ev, flat: dict, site: str, data: torch.Tensor, lo: int, hi: int):
    """Log-prior and log-likelihood (K, hi - lo) of grid points ``lo:hi`` for the K data sets
    ``data`` (K, ...) in ONE model call: the points repeated per data set and the data site
    conditioned on the matching data set, a batch of K x (hi - lo)."""
    names = list(flat)
    lik_sites = [n for n in ev.info.sites if n not in names]
    k, n = data.shape[0], hi - lo
    values = {name: v[lo:hi].repeat(k) for name, v in flat.items()}
    values[site] = data.repeat_interleave(n, dim=0)
    res = ev(values)
    lp = res.total(names).detach().reshape(k, n)
    ll = res.total(lik_sites).detach().reshape(k, n)
    return lp.cpu().numpy(), ll.cpu().numpy()


def _evaluate_stack(evaluator, datasets, flat, log_prior, log_lik, map_batch: int, chunk_size: int,
                    bar) -> int:
    """Data sets 1, 2, ... in batches of ``map_batch`` (data set 0 is done); returns the number of
    data sets now done: all of them, or 1 when the model does not allow batching them."""
    site = _data_site(evaluator, datasets, flat)
    if site is None:
        return 1
    n_points = log_prior.shape[1]
    per_map = max(1, chunk_size // map_batch)
    data = [torch.as_tensor(d[0], device=evaluator.info.device) for d in datasets]
    # check on the first points: data sets 0 and 1 in one call against their one-map numbers
    n = min(per_map, n_points)
    lp2, ll2 = _evaluate_maps(evaluator, flat, site, torch.stack(data[:2]), 0, n)
    ev1 = BatchEvaluator(evaluator.model, datasets[1], evaluator.kwargs, info=evaluator.info, name="grid")
    ev1.mode = evaluator.mode
    ref_p, ref_l = np.empty((2, n)), np.empty((2, n))
    ref_p[1], ref_l[1] = _values(ev1, flat, 0, n)
    ref_p[0], ref_l[0] = log_prior[0, :n], log_lik[0, :n]
    if not (np.allclose(lp2, ref_p, rtol=1e-5, atol=1e-6, equal_nan=True)
            and np.allclose(ll2, ref_l, rtol=1e-5, atol=1e-6, equal_nan=True)):
        return 1
    for m0 in range(1, len(datasets), map_batch):
        block = torch.stack(data[m0:m0 + map_batch])
        for lo in range(0, n_points, per_map):
            hi = min(n_points, lo + per_map)
            lp, ll = _evaluate_maps(evaluator, flat, site, block, lo, hi)
            log_prior[m0:m0 + len(block), lo:hi], log_lik[m0:m0 + len(block), lo:hi] = lp, ll
            if bar is not None:
                bar.update(len(block) * (hi - lo))
    return len(datasets)


def _bytes_per_point(res, B: int) -> float:
    total = sum(t.numel() * t.element_size() for t in res.log_prob.values())
    total += sum(t.numel() * t.element_size() for t in res.values.values())
    return total / B


def _check_args(*, prior, chunk_size, memory_budget_mb, map_batch, processes=None, num_samples=None) -> dict:
    """grid's arguments checked before the model is touched; ``num_samples`` is the draws a front
    end asks of :meth:`GridPosterior.to_inference_data` (None: not asked)."""
    if prior not in (None, "model", "uniform"):
        raise ValueError(f"grid: prior must be 'model', 'uniform' or None, got {prior!r}")
    if chunk_size is not None and (not isinstance(chunk_size, numbers.Integral)
                                   or isinstance(chunk_size, bool) or chunk_size < 1):
        raise ValueError(f"grid: chunk_size must be a positive integer, got {chunk_size!r}")
    if (not isinstance(map_batch, numbers.Real) or isinstance(map_batch, bool)
            or int(map_batch) != map_batch or map_batch < 1):
        raise ValueError(f"grid: map_batch must be a positive integer, got {map_batch!r}")
    if processes is not None and (not isinstance(processes, numbers.Integral)
                                  or isinstance(processes, bool) or processes < 1):
        raise ValueError(f"grid: processes must be a positive integer or None, got {processes!r}")
    if num_samples is not None and (not isinstance(num_samples, numbers.Integral)
                                    or isinstance(num_samples, bool) or num_samples < 1):
        raise ValueError(f"grid: num_samples must be a positive integer, got {num_samples!r}")
    return dict(memory_budget_mb=_check_budget(memory_budget_mb))


def grid(
    model,
    *args,
    grid: Mapping[str, Sequence[float]],
    prior: str | None = "model",
    stack: bool = False,
    chunk_size: int | None = None,
    memory_budget_mb: float = 256.0,
    device=None,
    dtype: torch.dtype | None = None,
    progress_bar: bool = False,
    map_batch: int = 1,
    processes: int | None = None,
    **model_kwargs,
) -> GridPosterior:
    r"""Evaluate the posterior of a model on the outer product of ``grid`` axes.

    Arguments:
        model: a Pyro model whose latent sample sites are ALL named in ``grid`` (condition any
            others with ``pyro.poutine.condition`` first); each must be a scalar site.
        *args, **model_kwargs: passed to the model; with ``stack=True`` the first argument is a
            stack of data sets (M, ...) and each gets its own posterior.
        grid: ``{site: increasing 1-D values}``, any number of axes; the posterior has shape
            (n_1, ..., n_d) in this order.
        prior: ``"model"`` (or None): weight by the model's own prior sites, log p(theta_i) at the
            grid values (zero outside their support); ``"uniform"``: ignore them (flat prior over
            the grid box; then ``log_evidence`` is relative to the box volume 1).
        chunk_size: grid points per model call; default from ``memory_budget_mb`` (MiB), using the
            site tensors of a small probe call times a safety factor 4 for intermediates.
        device, dtype: where and in what precision grid values are made (default: those of the
            first floating tensor argument; use float64 for sharp posteriors).
        progress_bar: a tqdm bar over the grid points evaluated (chunk by chunk).
        map_batch: with ``stack=True``, evaluate up to this many data sets in one model call
            (data sets x grid points in one batch; the chunk then holds ``chunk_size //
            map_batch`` points of each). Used where the model allows it: its data argument is
            the value of one observed site and enters nothing else (checked by tracing two data
            sets, then the first batched call is compared with one-map evaluations); otherwise
            the data sets run one after another, as with ``map_batch=1``.
        processes: share the chunks among this many CPU processes (this one and forked
            children), one torch thread each (``memory_budget_mb`` is then per process); with
            ``torch.set_num_threads(1)`` the numbers are the same bits for any value. ``None``: one per
            usable core where the model runs on a CPU, this process may fork (not a Dask or
            multiprocessing worker) and the points left would take more than half a second
            (judged from the first chunk, or at once from the probe call when it says several
            seconds); otherwise all here, as with 1.

    Returns:
        :class:`GridPosterior`.

    Example:
        >>> import pyro, pyro.distributions as dist, torch
        >>> def model(data):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        ...     pyro.sample("obs", dist.Normal(mu, 1.0).expand([4]).to_event(1), obs=data)
        >>> post = grid(model, torch.tensor([1.0, 2.0, 3.0, 2.0]), grid={"mu": torch.linspace(-2, 6, 801)})
        >>> round(float(post.mean["mu"]), 2), round(float(post.std["mu"]), 2)
        (2.0, 0.5)
    """
    axes = _check_axes(grid)
    memory_budget_mb = _check_args(prior=prior, chunk_size=chunk_size, memory_budget_mb=memory_budget_mb,
                                   map_batch=map_batch, processes=processes)["memory_budget_mb"]
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        # grid values are cast to it: an integer dtype would silently truncate the axes
        raise TypeError(f"grid: dtype must be a floating torch dtype (e.g. torch.float64), got {dtype!r}")
    device, dtype = device_dtype(*(a for a in args if isinstance(a, torch.Tensor)), device=device,
                                 dtype=dtype)
    processes = _resolve_processes(processes, device)
    datasets = _datasets(args, stack)
    evaluator = BatchEvaluator(model, datasets[0], model_kwargs, name="grid")
    _check_sites(evaluator.info, axes)
    shape = tuple(len(v) for v in axes.values())
    mesh = np.meshgrid(*axes.values(), indexing="ij")
    flat = {k: torch.as_tensor(m.reshape(-1), dtype=dtype, device=device) for k, m in zip(axes, mesh)}
    n_points = math.prod(shape)
    log_prior = np.empty((len(datasets), n_points))
    log_lik = np.empty((len(datasets), n_points))
    from tqdm.auto import tqdm

    bar = tqdm(total=len(datasets) * n_points, desc="grid", unit="point", disable=not progress_bar,
               leave=False)
    evaluators = {0: evaluator}

    def evaluator_for(m: int):
        if m not in evaluators:
            ev = BatchEvaluator(model, datasets[m], model_kwargs, info=evaluator.info, name="grid")
            ev.mode = evaluator.mode
            evaluators[m] = ev
        return evaluators[m]

    def run_item(item):
        m, lo, hi = item
        return _values(evaluator_for(m), flat, lo, hi)

    with torch.no_grad(), bar:
        probe = per_point = None
        if chunk_size is None:  # the first data set fixes the chunk size for all of them
            t0 = time.perf_counter()
            chunk_size, probe, (log_prior[0, :probe], log_lik[0, :probe]) = _size_chunks(
                evaluator, flat, n_points, memory_budget_mb)
            per_point = (time.perf_counter() - t0) / probe
            bar.update(probe)
        bounds = _chunks(n_points, chunk_size, probe)
        first = [(0, lo, hi) for lo, hi in bounds[1 if probe else 0:]]
        rest = [(m, lo, hi) for m in range(1, len(datasets)) for lo, hi in bounds]
        if map_batch > 1 and len(datasets) > 1:
            _run_items(first, run_item, log_prior, log_lik, processes, bar, per_point)
            first = []
            if _evaluate_stack(evaluator, datasets, flat, log_prior, log_lik, int(map_batch), chunk_size,
                               bar) > 1:
                rest = []
        _run_items(first + rest, run_item, log_prior, log_lik, processes, bar, per_point)
    if prior == "uniform":
        log_prior = np.zeros_like(log_prior)
    if np.isnan(log_lik).any():
        warnings.warn(f"grid: {int(np.isnan(log_lik).sum())} grid points have a NaN likelihood; "
                      "they get zero weight", stacklevel=2)
    shape_m = (len(datasets),) + shape
    return GridPosterior(axes, log_prior.reshape(shape_m), log_lik.reshape(shape_m), stacked=stack)
