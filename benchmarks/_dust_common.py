"""Shared pieces of the inpainting benchmarks: Gaussian (Wiener) inpainting and constrained
realisations (an independent reference), the packaged models' posteriors as flat potentials for a
preconditioned NUTS (:class:`ModelPotential`: the model code users run, through
:func:`bayessky.infer.potential`), and the metrics (masked MSE, interval coverage, negativity, KS
distance, Minkowski bands, peak stacks).

Conventions (those of :class:`bayessky.sky.FlatGeometry` and the dust-toy-v1 specification in
:mod:`bayessky.families.dust_toy`): numpy's unnormalised
DFT, per-mode spectra S(k) with ``E|fft2(x)_k|^2 = N_pix S(k)``, so the covariance of a
stationary periodic field is the circulant ``C x = ifft2(S * fft2(x))`` and its correlation
function is ``xi(r) = ifft2(S)(r)``. Data are ``d = M (I + n)``, ``n ~ N(0, sigma^2)`` white,
``M`` 0/1 (1 = observed).

Everything takes and returns torch tensors on the device/dtype of the inputs, batched over
leading dimensions, unless a docstring says numpy.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import multiprocessing as mp
from collections.abc import Callable, Iterator

import numpy as np
import torch

__all__ = [
    "circulant", "wiener_inpaint", "constrained_realisations",
    "ModelPotential", "true_model_potential", "learned_prior_potential", "prior_precision_trace",
    "DiagonalScaled", "hessian_block", "block_root",
    "laplace_scale", "sample_posterior", "posterior_draws", "find_map", "run_nuts", "convergence",
    "masked_mse",
    "interval_coverage", "negative_fraction", "ks_distance", "minkowski_curves", "band_fraction",
    "masked_peak_profile", "git_commit", "add_run_options", "map_results",
]


# -- Fourier-diagonal operators ---------------------------------------------------------------------
def circulant(x: torch.Tensor, spectrum: torch.Tensor) -> torch.Tensor:
    """``ifft2(spectrum * fft2(x))``: the stationary operator with per-mode values ``spectrum``."""
    return torch.fft.ifft2(torch.fft.fft2(x) * spectrum).real


# -- Gaussian inpainting ------------------------------------------------------------------------
def _cg(apply_a: Callable, rhs: torch.Tensor, precond: Callable, tol: float, max_iter: int):
    """Batched preconditioned conjugate gradients on maps (..., n, n); per-map step lengths."""
    dims = (-2, -1)
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    z = precond(r)
    p = z.clone()
    rz = (r * z).sum(dims, keepdim=True)
    norm0 = rhs.square().sum(dims, keepdim=True).sqrt().clamp_min(torch.finfo(rhs.dtype).tiny)
    it = 0
    while it < max_iter:
        it += 1
        ap = apply_a(p)
        alpha = rz / (p * ap).sum(dims, keepdim=True)
        x = x + alpha * p
        r = r - alpha * ap
        if bool((r.square().sum(dims, keepdim=True).sqrt() <= tol * norm0).all()):
            break
        z = precond(r)
        rz_new = (r * z).sum(dims, keepdim=True)
        p = z + (rz_new / rz) * p
        rz = rz_new
    rel = float((r.square().sum(dims, keepdim=True).sqrt() / norm0).max())
    return x, {"iterations": it, "relative_residual": rel}


def _gaussian_parts(data, mask, spectrum, noise_sigma):
    d = torch.as_tensor(data)
    dtype = d.dtype if d.is_floating_point() else torch.float64
    d = d.to(dtype)
    m = torch.ones_like(d) if mask is None else torch.as_tensor(mask, dtype=dtype, device=d.device)
    s = torch.as_tensor(spectrum, dtype=dtype, device=d.device)
    if s.shape != d.shape[-2:]:
        raise ValueError(f"spectrum: expected shape {tuple(d.shape[-2:])}, got {tuple(s.shape)}")
    if (s < 0).any():
        raise ValueError("spectrum: must be non-negative")
    sigma = float(noise_sigma)
    if not sigma > 0:
        raise ValueError(f"noise_sigma: must be > 0, got {noise_sigma!r}")
    return d, m, s, m / sigma**2


def _solve_whitened(weight, sqrt_s, spectrum, b, tol, max_iter):
    r"""Solve ``(C^-1 + W) x = b`` as ``(1 + C^1/2 W C^1/2) y = C^1/2 b``, ``x = C^1/2 y``.

    The whitened system has eigenvalues in [1, 1 + max S w]; its preconditioner is the same
    operator with W replaced by its mean (exact for a full, homogeneous mask), diagonal in Fourier.
    """
    wbar = weight.mean((-2, -1), keepdim=True)

    def apply_a(y):
        return y + circulant(weight * circulant(y, sqrt_s), sqrt_s)

    def precond(r):
        return circulant(r, 1.0 / (1.0 + spectrum * wbar))

    y, info = _cg(apply_a, circulant(b, sqrt_s), precond, tol, max_iter)
    return circulant(y, sqrt_s), info


def wiener_inpaint(data, mask, spectrum, mean: float = 1.0, noise_sigma: float = 0.05, *,
                   tol: float = 1e-10, max_iter: int = 2000):
    r"""Posterior mean of a Gaussian field given masked noisy data (Wiener filter / inpainting).

    Prior ``I ~ N(mean, C)``, C the circulant of per-mode spectrum ``spectrum``; data
    ``d = M (I + n)``, ``n ~ N(0, sigma^2)``. The posterior is Gaussian with

    .. math:: \hat I = \mu + (C^{-1} + M/\sigma^2)^{-1} M (d - \mu) / \sigma^2 ,
              \qquad \mathrm{Cov} = (C^{-1} + M/\sigma^2)^{-1},

    solved by preconditioned conjugate gradients in the whitened variable (masked noise is not
    diagonal in Fourier space, so there is no closed form per mode).

    Arguments:
        data: (..., n, n) observed maps (values at masked pixels are ignored).
        mask: (n, n) or (..., n, n) 0/1, 1 = observed; None = all observed (denoising).
        spectrum: (n, n) per-mode spectrum of I (e.g. ``dust_toy.intensity_spectrum``).
        mean: prior mean of I. noise_sigma: noise rms per pixel.
        tol, max_iter: CG stopping rule (relative residual of the whitened system).

    Returns:
        (mean map (..., n, n), info dict with ``iterations`` and ``relative_residual``).
    """
    d, m, s, w = _gaussian_parts(data, mask, spectrum, noise_sigma)
    sqrt_s = s.sqrt()
    x, info = _solve_whitened(w, sqrt_s, s, w * (d - mean), tol, max_iter)
    return mean + x, info


def constrained_realisations(data, mask, spectrum, n_samples: int, mean: float = 1.0,
                             noise_sigma: float = 0.05, *, generator: torch.Generator | None = None,
                             tol: float = 1e-8, max_iter: int = 2000):
    r"""Exact draws from the Gaussian posterior of :func:`wiener_inpaint` (Hoffman & Ribak 1991).

    For each draw: ``s ~ N(0, C)``, ``n ~ N(0, sigma^2)``, then
    ``x = mu + s + (C^-1 + W)^-1 W (d - mu - s - n)`` with ``W = M / sigma^2``, which is
    distributed as N(posterior mean, posterior covariance).

    Arguments:
        data: one observed map (n, n). mask, spectrum, mean, noise_sigma: as :func:`wiener_inpaint`.
        n_samples: number of draws. generator: torch generator for reproducibility.

    Returns:
        (draws (n_samples, n, n), info dict of the batched CG solve).
    """
    d, m, s, w = _gaussian_parts(data, mask, spectrum, noise_sigma)
    if d.ndim != 2:
        raise ValueError(f"data: expected one map (n, n), got shape {tuple(d.shape)}")
    shape = (int(n_samples),) + tuple(d.shape)
    gdev = generator.device if generator is not None else d.device
    white = torch.randn(shape, generator=generator, dtype=d.dtype, device=gdev).to(d.device)
    noise = torch.randn(shape, generator=generator, dtype=d.dtype, device=gdev).to(d.device)
    sqrt_s = s.sqrt()
    field = circulant(white, sqrt_s)
    rhs = w * (d - mean - field - float(noise_sigma) * noise)
    x, info = _solve_whitened(w, sqrt_s, s, rhs, tol, max_iter)
    return mean + field + x, info


# -- the packaged models' posteriors as flat potentials for NUTS --------------------------------------
class ModelPotential:
    r"""The posterior of a :mod:`bayessky.models` inpainting model as a flat potential in the model's
    map-space parametrisation ``y`` (its one latent site: ``g`` for the true dust-toy model, the
    flow's network-space map ``I_net`` for a learned prior), for :func:`sample_posterior`.

    ``U(y)`` is :func:`bayessky.infer.potential` of the model (its negative log joint density);
    the map is the model's deterministic site ``"I"``, a pixel-wise function of ``y``. Besides
    ``U`` the preconditioner needs the likelihood's diagonal weight ``w = M / sigma^2`` (sigma the
    model's likelihood noise) and, when known, the mean prior precision per pixel.

    Arguments:
        model: a model function (``bayessky.models.dust_inpainting.model``, ``blob_inpainting.model``).
        data: observed map (n, n) (its dtype is the model's). mask: 0/1 (n, n) or None.
        likelihood_sigma: the noise rms of the model's likelihood (for ``w``).
        from_map: maps (..., n, n) -> y (..., n^2), the inverse of the model's pixel map (for starts).
        prior_precision_mean: mean diagonal of the prior's Hessian in y (None: Hutchinson estimate).
        options: the model's options (``prior``, ``noise_sigma``; ``space`` is "map").
    """

    def __init__(self, model: Callable, data, mask, likelihood_sigma: float, from_map: Callable,
                 prior_precision_mean: float | None = None, chunk: int = 256, **options):
        from bayessky.infer import potential

        self.data = torch.as_tensor(data)
        kw = {"dtype": self.data.dtype, "device": self.data.device}
        m = None if mask is None else torch.as_tensor(mask, **kw)
        self.flat = potential(model, self.data, mask=m, space="map", **options)
        if len(self.flat.names) != 1:
            raise ValueError(f"expected one latent map site, got {self.flat.names}")
        self.weight = (torch.ones_like(self.data) if m is None else m) / float(likelihood_sigma) ** 2
        self.n = self.data.shape[-1]
        self.dim = self.n * self.n
        self.from_map = from_map
        self.chunk = chunk
        if prior_precision_mean is not None:
            self.prior_precision_mean = prior_precision_mean

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return self.flat(y.reshape(-1, self.dim)).reshape(y.shape[:-1])

    def to_map(self, y: torch.Tensor) -> torch.Tensor:
        """(..., n^2) -> the model's map site ``"I"`` (..., n, n) (evaluated in chunks)."""
        yy = y.reshape(-1, self.dim)
        out = torch.cat([self.flat.sites(yy[i:i + self.chunk])["I"] for i in range(0, len(yy), self.chunk)])
        return out.reshape(*y.shape[:-1], self.n, self.n)

    def pixel_map(self, y: torch.Tensor) -> torch.Tensor:
        """Maps y (..., n, n) -> I (..., n, n) (pixel-wise: its gradient of the sum is the diagonal)."""
        return self.to_map(y.reshape(*y.shape[:-2], self.dim))

    def log_prior(self, y: torch.Tensor) -> torch.Tensor:
        """log p(y) of the model's prior, y (B, n, n) -> (B,)."""
        return self.flat.log_prior(y.reshape(-1, self.dim))


def true_model_potential(data, mask, noise_sigma: float = 0.05) -> ModelPotential:
    r"""The true dust-toy-v1 posterior over the Gaussian field ``g`` (pixel basis):
    ``bayessky.models.dust_inpainting.model`` with ``prior="true"``; ``I = exp(0.8 g - 0.32)``."""
    from bayessky.families import dust_toy
    from bayessky.models import dust_inpainting

    d = torch.as_tensor(data)
    inv_s = 1.0 / torch.as_tensor(dust_toy.spectrum(d.shape[-1]), dtype=d.dtype, device=d.device)
    return ModelPotential(dust_inpainting.model, d, mask, noise_sigma,
                          lambda I: dust_toy.log_intensity_to_g(I).reshape(*I.shape[:-2], -1),
                          prior_precision_mean=float(inv_s.mean()),  # diag of C_g^-1
                          prior="true", noise_sigma=noise_sigma)


def learned_prior_potential(model: Callable, prior, data, mask, noise_sigma: float,
                            likelihood_sigma: float | None = None) -> ModelPotential:
    r"""A learned flow prior's posterior over its network-space map ``y = T(x)`` (``model``:
    ``dust_inpainting.model`` or ``blob_inpainting.model``, given the loaded ``prior``, whose data
    transform ``T`` maps starting maps to y; ``likelihood_sigma``: the model's likelihood noise
    when it is not ``noise_sigma``)."""
    d = torch.as_tensor(data)
    transform, dtype = prior.transform, prior.dtype

    def from_map(x):
        y = x.to(dtype)
        return (transform(y) if transform is not None else y).to(d.dtype).reshape(*x.shape[:-2], -1)

    return ModelPotential(model, d, mask, noise_sigma if likelihood_sigma is None else likelihood_sigma,
                          from_map, prior=prior, noise_sigma=noise_sigma)


def prior_precision_trace(potential: ModelPotential, y0: torch.Tensor, probes: int = 8,
                          seed: int = 0) -> float:
    """Mean diagonal of the prior's Hessian ``-d^2 log p(y) / dy^2`` at ``y0`` (Hutchinson, Rademacher)."""
    gen = torch.Generator(device=y0.device).manual_seed(seed)
    y = y0.detach().reshape(1, potential.n, potential.n).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(-potential.log_prior(y).sum(), y, create_graph=True)
    total = 0.0
    for _ in range(probes):
        v = (torch.randint(0, 2, y.shape, generator=gen, device=y.device) * 2 - 1).to(y.dtype)
        (hv,) = torch.autograd.grad(grad, y, v, retain_graph=True)
        total += float((v * hv).sum())
    return total / (probes * potential.dim)


class DiagonalScaled:
    r"""``y = y0 + s * v`` (+ ``R v_h`` on the masked pixels): a flat potential seen through a fixed
    linear map, i.e. NUTS with a fixed mass matrix (the map is linear: the target is unchanged).

    Observed pixels get the diagonal scale ``s = (h_prior + w (dx/dy)^2)^{-1/2}``; masked pixels,
    constrained by the prior alone and strongly correlated with each other, get the dense factor
    ``R = L^{-T}`` of the prior Hessian block ``H_hh = L L^T`` at the MAP (a few hundred pixels:
    a cheap matrix), so that v has roughly unit, uncorrelated scales from the first warm-up
    iteration. NUTS still adapts its own diagonal mass on top.

    Arguments:
        potential: flat potential ``y (B, D) -> (B,)``. y0: (D,) centre (the MAP).
        scale: (D,) diagonal scales. hole: optional (H,) long indices of the dense block.
        root: (H, H) its factor R (cov of the block = R R^T).
    """

    def __init__(self, potential: Callable, y0: torch.Tensor, scale: torch.Tensor,
                 hole: torch.Tensor | None = None, root: torch.Tensor | None = None):
        self.potential = potential
        self.y0 = y0.detach().reshape(-1)
        self.scale = scale.detach().reshape(-1).to(self.y0.dtype).clone()
        self.dim = self.y0.numel()
        self.hole, self.root_t = None, None
        if hole is not None and len(hole):
            self.hole = hole.to(self.y0.device)
            self.scale[self.hole] = 0.0
            self.root_t = root.detach().to(self.y0.dtype).mT.contiguous()

    def y(self, v: torch.Tensor) -> torch.Tensor:
        out = self.y0 + self.scale * v
        if self.hole is not None:
            out = out.index_add(-1, self.hole, v[..., self.hole] @ self.root_t)
        return out

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return self.potential(self.y(v))


def hessian_block(potential: Callable, y0: torch.Tensor, idx: torch.Tensor,
                  chunk_size: int = 64) -> torch.Tensor:
    """Rows/columns ``idx`` of the Hessian of a flat potential at ``y0`` (D,), by Hessian-vector
    products (vectorised in chunks; one at a time if the network does not support it)."""
    y = y0.detach().reshape(1, -1).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(potential(y).sum(), y, create_graph=True)
    cols = []
    for i in range(0, len(idx), chunk_size):
        part = idx[i:i + chunk_size]
        e = torch.zeros(len(part), 1, y.shape[-1], dtype=y.dtype, device=y.device)
        e[torch.arange(len(part)), 0, part] = 1.0
        try:
            (hv,) = torch.autograd.grad(grad, y, e, retain_graph=True, is_grads_batched=True)
        except RuntimeError:
            hv = torch.stack([torch.autograd.grad(grad, y, ej, retain_graph=True)[0] for ej in e])
        cols.append(hv.reshape(len(part), -1)[:, idx])
    h = torch.cat(cols).detach()
    return 0.5 * (h + h.mT)


def block_root(h: torch.Tensor) -> torch.Tensor:
    """``R`` with ``R R^T = H^{-1}`` for a symmetric block, eigenvalues floored at 1e-6 of the largest
    (a numerically indefinite Hessian of a learned prior must not stop the run)."""
    evals, evecs = torch.linalg.eigh(h)
    evals = evals.clamp_min(1e-6 * float(evals.max()))
    return evecs * evals.rsqrt()


def laplace_scale(potential: ModelPotential, y0: torch.Tensor,
                  prior_precision: float | None = None) -> torch.Tensor:
    """``(h + w (dx/dy)^2)^{-1/2}`` at ``y0``: h the mean prior precision per pixel (exact for the
    true model, Hutchinson for a flow), the second term the likelihood's exact diagonal."""
    h = prior_precision if prior_precision is not None else getattr(potential, "prior_precision_mean", None)
    if h is None:
        h = prior_precision_trace(potential, y0)
    y = y0.detach().reshape(potential.n, potential.n).clone().requires_grad_(True)
    (dx,) = torch.autograd.grad(potential.pixel_map(y).sum(), y)  # pixel-wise map: the diagonal
    prec = max(h, 1e-6) + potential.weight * dx.to(potential.weight.dtype).square()
    return prec.rsqrt().reshape(-1)


def sample_posterior(potential: ModelPotential, y_init: torch.Tensor, *, chains: int = 4, warmup: int = 500,
                     samples: int = 500, seed: int = 0, map_steps: int = 300, max_tree_depth: int = 10,
                     target_accept: float = 0.8, progress_bar: bool = False,
                     chain_method: str = "vectorized") -> dict:
    """MAP (L-BFGS) -> diagonal Laplace scaling -> batched NUTS with ``chains`` chains started at
    independent draws of the diagonal Laplace approximation. Returns maps (chains, samples, n, n)
    and the sampler's statistics and timings."""
    import time

    t0 = time.perf_counter()
    y_map = find_map(potential, y_init.reshape(1, -1), steps=map_steps)[0]
    t_map = time.perf_counter() - t0
    t0 = time.perf_counter()
    hole = torch.nonzero(potential.weight.reshape(-1) == 0).flatten()
    root = block_root(hessian_block(potential, y_map, hole)) if len(hole) else None
    scaled = DiagonalScaled(potential, y_map, laplace_scale(potential, y_map), hole, root)
    gen = torch.Generator(device=y_map.device).manual_seed(seed)
    init = torch.randn(chains, scaled.dim, generator=gen, dtype=y_map.dtype, device=y_map.device)
    t_precond = time.perf_counter() - t0
    t1 = time.perf_counter()
    out = run_nuts(scaled, init, samples, warmup, seed=seed, max_tree_depth=max_tree_depth,
                   target_accept=target_accept, progress_bar=progress_bar, chain_method=chain_method)
    t_nuts = time.perf_counter() - t1
    with torch.no_grad():
        maps = potential.to_map(scaled.y(out["samples"])).double().cpu().numpy()
        map_estimate = potential.to_map(y_map).double().cpu().numpy()
    return {"maps": maps, "map_estimate": map_estimate, "seconds_map": t_map,
            "seconds_preconditioner": t_precond, "seconds_nuts": t_nuts,
            "leapfrog_per_draw": float(out["num_steps"].float().mean()),
            "tree_depth_max": int(out["tree_depth"].max()), "divergences": int(out["diverging"].sum()),
            "step_size": [float(e) for e in out["step_size"]],
            "leapfrog_steps_sampling": int(out["num_steps"].sum())}


def posterior_draws(potential: ModelPotential, y_init: torch.Tensor, args, *, seed: int, warmup: int,
                    samples: int) -> tuple[np.ndarray, dict]:
    """:func:`sample_posterior` with a benchmark's ``--chains``, ``--max-tree-depth`` and (where it
    has one) ``--chain-method``: the map draws (chains, draws, n, n) and the sampler's record
    (timings, leapfrog steps, step sizes)."""
    res = sample_posterior(potential, y_init, chains=args.chains, warmup=warmup, samples=samples,
                           seed=seed, max_tree_depth=args.max_tree_depth,
                           chain_method=getattr(args, "chain_method", "vectorized"))
    res.pop("map_estimate")
    return res.pop("maps"), res


def find_map(potential: Callable, init: torch.Tensor, steps: int = 300, lr: float = 1.0) -> torch.Tensor:
    """Minimise a batched potential (B, D) -> (B,) with L-BFGS (strong Wolfe); returns (B, D)."""
    z = init.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([z], lr=lr, max_iter=steps, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = potential(z).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return z.detach()


def run_nuts(potential: Callable, init: torch.Tensor, num_samples: int, warmup_steps: int, *,
             seed: int = 0, max_tree_depth: int = 10, target_accept: float = 0.8,
             progress_bar: bool = False, chain_method: str = "vectorized") -> dict:
    """Batched NUTS (:func:`bayessky.infer.fast_nuts.sample`) on a flat potential; init (chains, D)."""
    from bayessky.infer import fast_nuts

    return fast_nuts.sample(potential, init, num_samples, warmup_steps, target_accept=target_accept,
                            max_tree_depth=max_tree_depth, seed=seed, progress_bar=progress_bar,
                            chain_method=chain_method)


def convergence(draws: np.ndarray, where: np.ndarray | None = None) -> dict:
    """Rank-normalised split R-hat (max) and bulk/tail ESS (min) over the pixels of map draws.

    Arguments:
        draws: (chains, draws, n, n) numpy. where: optional boolean (n, n) selecting pixels.
    """
    import arviz as az

    x = draws if where is None else draws[:, :, where]
    x = x.reshape(x.shape[0], x.shape[1], -1)
    ds = az.convert_to_dataset({"x": x})
    rhat = az.rhat(ds, method="rank")["x"].values
    bulk = az.ess(ds, method="bulk")["x"].values
    tail = az.ess(ds, method="tail")["x"].values
    return {"rhat_max": float(np.nanmax(rhat)), "rhat_median": float(np.nanmedian(rhat)),
            "frac_rhat_below_1.01": float(np.mean(rhat < 1.01)),
            "ess_bulk_min": float(np.nanmin(bulk)), "ess_bulk_median": float(np.nanmedian(bulk)),
            "ess_tail_min": float(np.nanmin(tail))}


# -- metrics (numpy) ------------------------------------------------------------------------------
def _masked(mask) -> np.ndarray:
    return np.asarray(mask) < 0.5


def masked_mse(estimate, truth, mask) -> float:
    """Mean squared error over the masked pixels (mask == 0)."""
    hole = _masked(mask)
    return float(np.mean((np.asarray(estimate)[..., hole] - np.asarray(truth)[..., hole]) ** 2))


def interval_coverage(samples, truth, mask, level: float = 0.68) -> float:
    """Fraction of masked pixels whose truth lies in the central ``level`` interval of the samples
    (quantiles (1 - level)/2 and (1 + level)/2 per pixel, numpy's linear interpolation).

    Arguments:
        samples: (S, n, n) posterior draws. truth: (n, n). mask: (n, n), 0 = masked.
    """
    hole = _masked(mask)
    s = np.asarray(samples)[:, hole]
    lo, hi = np.quantile(s, [(1 - level) / 2, (1 + level) / 2], axis=0)
    t = np.asarray(truth)[hole]
    return float(np.mean((t >= lo) & (t <= hi)))


def negative_fraction(samples, mask=None) -> float:
    """Fraction of sample pixel values < 0 (in the masked region when a mask is given)."""
    s = np.asarray(samples)
    if mask is not None:
        s = s[..., _masked(mask)]
    return float(np.mean(s < 0))


def ks_distance(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov statistic ``sup_x |F_a(x) - F_b(x)|`` of two value sets
    (:func:`scipy.stats.ks_2samp` on the flattened arrays)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    return float(stats.ks_2samp(a, b).statistic)


def minkowski_curves(maps, thresholds) -> np.ndarray:
    """Minkowski functionals (V0, V1, V2) of maps (S, n, n) at raw ``thresholds``: (S, 3, T)."""
    from bayessky.stats import minkowski_functionals

    v0, v1, v2 = minkowski_functionals(np.asarray(maps, dtype=float), np.asarray(thresholds, dtype=float))
    return np.stack([v0, v1, v2], axis=-2)


def band_fraction(curves, reference, level: float = 0.95) -> dict:
    """How often ``curves`` (S, ...) fall inside the pointwise central ``level`` band of
    ``reference`` (R, ...) (its (1 - level)/2 and (1 + level)/2 quantiles).

    Returns ``inside``: fraction of all (sample, point) values inside; ``mean_inside``: fraction
    of points where the mean curve of ``curves`` lies inside; ``median_inside``: the same for
    the pointwise median.
    """
    c = np.asarray(curves, dtype=float)
    r = np.asarray(reference, dtype=float)
    lo, hi = np.quantile(r, [(1 - level) / 2, (1 + level) / 2], axis=0)
    mean, med = c.mean(0), np.median(c, axis=0)
    return {"inside": float(np.mean((c >= lo) & (c <= hi))),
            "mean_inside": float(np.mean((mean >= lo) & (mean <= hi))),
            "median_inside": float(np.mean((med >= lo) & (med <= hi)))}


def masked_peak_profile(maps, mask, size: int = 21, threshold: float | None = None,
                        periodic: bool = False):
    """Stack of ``size x size`` cut-outs around the local maxima that fall in masked pixels, and
    its radial profile.

    Arguments:
        maps: (S, n, n) (e.g. posterior draws or truths). mask: (n, n) or (S, n, n), 0 = masked.
        threshold: keep peaks higher than this. periodic: wrap cut-outs (else skip border peaks).

    Returns:
        ``(stack (size, size), radii, profile, n_peaks)``; NaNs when there is no peak.
    """
    from bayessky.stats import radial_profile
    from bayessky.stats.peaks import peak_mask

    x = torch.as_tensor(np.asarray(maps, dtype=float))
    x = x.reshape(-1, *x.shape[-2:])
    hole = torch.as_tensor(_masked(mask)).expand_as(x)
    pk = peak_mask(x, periodic=periodic) & hole
    if threshold is not None:
        pk &= x > threshold
    ny, nx = x.shape[-2:]
    h = size // 2
    if not periodic:
        pk[..., :h, :] = False
        pk[..., ny - h:, :] = False
        pk[..., :, :h] = False
        pk[..., :, nx - h:] = False
    b, r, c = pk.nonzero(as_tuple=True)
    off = torch.arange(-h, h + 1)
    rows = (r[:, None] + off) % ny
    cols = (c[:, None] + off) % nx
    cut = x[b[:, None, None], rows[:, :, None], cols[:, None, :]]
    if not len(b):
        radii, _ = radial_profile(np.zeros((size, size)))
        return np.full((size, size), np.nan), radii, np.full(len(radii), np.nan), 0
    stack = cut.mean(0).numpy()
    radii, profile = radial_profile(stack)
    return stack, radii, profile, int(len(b))


def git_commit() -> str | None:
    """The repository's HEAD commit, for the benchmark records."""
    import subprocess
    from pathlib import Path

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def add_run_options(p) -> None:
    """The options both inpainting benchmarks share for where and how the maps run."""
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (1 is "
                   "fastest on busy CPUs)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=1, help="maps run in this many spawned processes at once")
    p.add_argument("--chain-method", default="vectorized", choices=["vectorized", "parallel"],
                   help="(a)'s chains in one batch or split over forked CPU processes (one per core)")


_MAP_STATE: tuple = ()


def _init_map_worker(setup: Callable, args) -> None:
    global _MAP_STATE
    torch.set_num_threads(args.threads)
    _MAP_STATE = tuple(setup(args))


def _run_map_in_worker(run: Callable, i: int):
    return run(i, *_MAP_STATE)


def map_results(run: Callable, setup: Callable, args, n_maps: int, state: tuple | None = None) -> Iterator:
    """``run(i, *setup(args))`` for ``i < n_maps``, in order: in this process (reusing ``state``,
    the caller's own ``setup(args)``, when given), or with ``args.jobs > 1`` in that many spawned
    processes, each building its own ``setup(args)`` (the maps are independent; spawn, not fork,
    because the parent has already run torch's thread pool; ``run`` and ``setup`` must be
    module-level functions)."""
    if args.jobs <= 1:
        state = tuple(setup(args) if state is None else state)
        for i in range(n_maps):
            yield run(i, *state)
        return
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(args.jobs, mp_context=ctx, initializer=_init_map_worker,
                                initargs=(setup, args)) as pool:
        yield from pool.map(functools.partial(_run_map_in_worker, run), range(n_maps))
