"""Which parametrisation and preconditioner makes NUTS fastest on the dust inpainting posterior.

One held-out dust-toy-v1 64 x 64 map (seed 100000, never used in training) with a point-source
mask (~10 % of the pixels) and data ``d = M (I + n)``, ``n ~ N(0, 0.05^2)``, sampled through the
packaged model ``bayessky.models.dust_inpainting`` and ``bayessky.infer.nuts(backend="fast")``
(the user path of ``bayessky run``) in several settings:

- ``flow-map``: the flow prior in its network space ``y = T(I)`` (site ``I_net``), today's default;
- ``flow-latent``: the flow's whitened latents (``space="latent"``, the Glow as the
  reparametrisation);
- ``flow-map-diagonal`` / ``flow-map-fourier``: ``y`` preconditioned by a Gaussian random field
  approximation of the prior in ``y``. dust-toy-v1 is ``I = exp(0.8 g - 0.32)``, ``g ~ GRF(S_g)``,
  and the card's transform is affine in ``log I``, so ``y ~ a g + b`` with ``S_y = a^2 S_g``
  (``a`` read off the transform); the likelihood's precision in ``y`` per observed pixel is
  ``(dI/dy)^2 / sigma^2 = (0.8 I / a)^2 / sigma^2`` at ``I ~ d``. ``diagonal``:
  ``T = diag((mean(1/S_y) + q_i)^-1/2)``; ``fourier``: ``T = F^-1 sqrt(S_y / (1 + S_y q)) F``,
  ``q`` the pixel mean of ``q_i`` (:mod:`bayessky.infer.precondition`);
- ``gauss-*``: the Gaussian (Wiener) prior ``prior="gaussian"`` with the model-derived
  ``precondition="fourier"`` / ``"diagonal"`` / none (its exact posterior mean is the Wiener filter:
  ``mse_vs_wiener_mean`` checks it).

Reported per setting: wall time of the whole ``nuts`` call (MAP start, warm-up, sampling),
leapfrog steps (= gradients) of the kept draws, masked-pixel min bulk/tail ESS and max R-hat of
``I``, bulk ESS per second, masked MSE of the posterior mean against the truth, 68 % coverage,
fraction of negative intensities. The machine is shared: compare ratios, not absolute seconds.

    OMP_NUM_THREADS=1 nice python benchmarks/dust_preconditioning.py --configs flow-map flow-latent
    OMP_NUM_THREADS=1 nice python benchmarks/dust_preconditioning.py --engine mclmc --chains 4 \
        --warmup 1000 --samples 2000 --configs flow-map flow-latent
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _dust_common as dc  # noqa: E402

from bayessky import infer  # noqa: E402
from bayessky.families import dust_toy  # noqa: E402
from bayessky.infer.precondition import DiagonalPreconditioner, FourierPreconditioner  # noqa: E402
from bayessky.models import dust_inpainting  # noqa: E402

CONFIGS = {
    # name: (prior, space, precondition)
    "flow-map": ("dust-glow-64", "map", None),
    "flow-latent": ("dust-glow-64", "latent", None),
    "flow-map-diagonal": ("dust-glow-64", "map", "grf-diagonal"),
    "flow-map-fourier": ("dust-glow-64", "map", "grf-fourier"),
    "gauss-none": ("gaussian", "map", None),
    "gauss-fourier": ("gaussian", "map", "fourier"),
    "gauss-diagonal": ("gaussian", "map", "diagonal"),
}


def make_map(seed: int, size: int):
    truth = dust_toy.sample(1, size, seed=seed)[0]
    mask = dust_toy.point_source_mask(size, seed=seed)
    data = dust_toy.observe(truth, mask, seed=seed + 50_000)
    return truth, mask, data


def grf_approximation(prior_name: str, data: np.ndarray, mask: np.ndarray, sigma: float, kind: str):
    """The flow's ``y = T(I)`` seen as a Gaussian field (see the module docstring) -> a preconditioner."""
    p = dust_inpainting.load_cached_prior(prior_name, "cpu")
    n = data.shape[-1]
    g0, g1 = torch.zeros(1, n, n, dtype=p.dtype), torch.ones(1, n, n, dtype=p.dtype)
    a = float((p.transform(dust_toy.intensity(g1)) - p.transform(dust_toy.intensity(g0))).mean())
    s_y = a**2 * torch.as_tensor(dust_toy.spectrum(n), dtype=torch.float64)
    # intensity at observed pixels ~ data (floored: the slope must stay positive)
    level = np.clip(data, 0.05, None)
    q = torch.as_tensor((mask > 0) * (dust_toy.AMPLITUDE * level / a) ** 2 / sigma**2)
    if kind == "grf-fourier":
        return FourierPreconditioner(s_y / (1.0 + s_y * float(q.mean())))
    return DiagonalPreconditioner(((1.0 / s_y).mean() + q).rsqrt().reshape(-1))


def run_config(name: str, args, truth, mask, data) -> dict:
    prior, space, pc = CONFIGS[name]
    dtype = torch.float64 if prior == "gaussian" else torch.float32
    d = torch.as_tensor(data, dtype=dtype)
    m = torch.as_tensor(mask, dtype=dtype)
    sigma = dust_toy.NOISE_SIGMA
    precondition = pc
    if pc is not None and pc.startswith("grf-"):
        precondition = grf_approximation(prior, data, mask, sigma, pc)
    t0 = time.perf_counter()
    if args.engine == "nuts":
        idata = infer.nuts(dust_inpainting.model, d, mask=m, prior=prior, space=space, noise_sigma=sigma,
                           backend="fast", num_chains=args.chains, warmup_steps=args.warmup,
                           num_samples=args.samples, init_strategy=args.init, precondition=precondition,
                           max_tree_depth=args.max_tree_depth, chain_method=args.chain_method,
                           progress_bar=False, seed=args.seed)
    else:
        if precondition is not None:
            raise SystemExit(f"--engine {args.engine}: config {name!r} has a preconditioner (nuts only)")
        idata = infer.mclmc(dust_inpainting.model, d, mask=m, prior=prior, space=space, noise_sigma=sigma,
                            num_chains=args.chains, warmup_steps=args.warmup, num_samples=args.samples,
                            init_strategy=args.init, adjusted=args.engine == "mams",
                            progress_bar=False, seed=args.seed)
    seconds = time.perf_counter() - t0
    draws = idata.posterior["I"].values.astype(np.float64)  # (chains, draws, n, n)
    hole = mask < 0.5
    conv = dc.convergence(draws, hole)
    flat = draws.reshape(-1, *draws.shape[-2:])
    mean = flat.mean(0)
    ss = idata.sample_stats
    out = {"config": name, "engine": args.engine, "prior": prior, "space": space,
           "precondition": pc, "seconds": seconds,
           "gradients_sampling": int(ss["n_steps"].values.sum()),
           "leapfrog_per_draw": float(ss["n_steps"].values.mean()),
           "step_size_mean": float(ss["step_size"].values.mean()),
           "divergences": int(ss["diverging"].values.sum()),
           "ess_bulk_min_per_1000_gradients":
               1000 * conv["ess_bulk_min"] / max(int(ss["n_steps"].values.sum()), 1),
           "ess_bulk_min_masked": conv["ess_bulk_min"], "ess_tail_min_masked": conv["ess_tail_min"],
           "rhat_max_masked": conv["rhat_max"],
           "ess_bulk_min_per_second": conv["ess_bulk_min"] / seconds,
           "mse_mean_masked": dc.masked_mse(mean, truth, mask),
           "coverage_68_masked": dc.interval_coverage(flat, truth, mask, 0.68),
           "negative_fraction": dc.negative_fraction(flat)}
    if prior == "gaussian":
        wf, _ = dc.wiener_inpaint(torch.as_tensor(data), torch.as_tensor(mask),
                                  torch.as_tensor(dust_toy.intensity_spectrum(data.shape[-1])),
                                  mean=1.0, noise_sigma=sigma)
        out["mse_vs_wiener_mean"] = dc.masked_mse(mean, wf.numpy(), mask)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--engine", default="nuts", choices=["nuts", "mclmc", "mams"],
                   help="bayessky.infer.nuts (fast backend), or mclmc (unadjusted / adjusted)")
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--samples", type=int, default=150)
    p.add_argument("--max-tree-depth", type=int, default=10)
    p.add_argument("--init", default="map", help="nuts init_strategy (the model's DEFAULTS: map)")
    p.add_argument("--chain-method", default="vectorized", choices=["vectorized", "parallel"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--map-seed", type=int, default=100000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jsonl", default=None, help="also append each setting's record to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    truth, mask, data = make_map(args.map_seed, 64)
    results = []
    for name in args.configs:
        rec = run_config(name, args, truth, mask, data)
        rec["settings"] = {k: getattr(args, k) for k in ("engine", "chains", "warmup", "samples",
                                                          "max_tree_depth",
                                                          "init", "chain_method", "seed", "map_seed")}
        results.append(rec)
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.write(json.dumps(rec) + "\n")
    report = {"benchmark": "dust_preconditioning", "masked_fraction": float(np.mean(mask < 0.5)),
              "results": results, "commit": dc.git_commit(),
              "machine": {"platform": platform.platform(), "torch": torch.__version__,
                          "threads": args.threads}}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
