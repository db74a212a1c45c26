"""SVI on a small Wiener-filter posterior against its closed form: does the fit converge?

The model (natural pixel parametrisation, as in ``benchmarks/nuts_wiener.py``):

    s ~ GaussianRandomField(S),   d ~ Normal(s, sigma) on the unmasked pixels,

on an ``n x n`` periodic grid with a red spectrum S(k) = A / (k^2 + k0^2) (unit pixel variance),
white noise ``sigma`` and, with ``--mask``, a masked strip a quarter of the map wide. With
``--whitened`` the engines see w ~ N(0, I), s = ifft2(sqrt(S) fft2(w)) instead (the
parametrisation of tests/test_infer_wiener.py). The reference is the dense Wiener posterior
from the circulant prior covariance C (first row = ifft2(S)):

    cov = (C^-1 + M / sigma^2)^-1,   mean = cov M d / sigma^2.

Reported per run: the median and max over pixels of |mean error| / posterior sd and of
|std ratio - 1|, the steps, the wall time of ``bayessky.infer.svi`` and whether it flagged the
fit as converged. Options left out are svi's defaults.

Run:  OMP_NUM_THREADS=1 python benchmarks/svi_wiener.py [--n 12] [--guide mvn] [--steps N]
      [--lr X] [--final-lr X] [--num-particles P] [--init-strategy map|median] [--init-scale X]
      [--seeds 0,1,2] [--whitened] [--mask]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np


def make_problem(n: int, sigma: float, k0: float, mask: bool, seed: int):
    """Spectrum, mask, data and the dense posterior (mean, sd) of the pixel field."""
    k = 2 * np.pi * np.fft.fftfreq(n)
    spec = 1.0 / (np.hypot(k[:, None], k[None, :]) ** 2 + k0**2)
    spec /= spec.mean()  # unit pixel variance
    rng = np.random.default_rng(seed)
    s_true = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * np.sqrt(spec)))
    m = np.ones((n, n), dtype=bool)
    if mask:
        m[:, n // 2 - n // 8: n // 2 + n // 8] = False
    d = np.where(m, s_true + sigma * rng.standard_normal((n, n)), 0.0)
    row = np.real(np.fft.ifft2(spec))  # C_ij = row[(x_i - x_j) mod n]
    iy, ix = np.divmod(np.arange(n * n), n)
    C = row[(iy[:, None] - iy[None, :]) % n, (ix[:, None] - ix[None, :]) % n]
    prec = np.linalg.inv(C) + np.diag(m.reshape(-1) / sigma**2)
    cov = np.linalg.inv(prec)
    mean = cov @ (d.reshape(-1) * m.reshape(-1) / sigma**2)
    return spec, m, d, mean, np.sqrt(np.diag(cov))


def make_model(spec, m, sigma, whitened: bool):
    import pyro
    import pyro.distributions as dist
    import torch

    from bayessky.distributions import GaussianRandomField

    spectrum, obs_mask, sqrt_s = torch.tensor(spec), torch.tensor(m), torch.tensor(np.sqrt(spec))

    def pixel(data):
        s = pyro.sample("s", GaussianRandomField(spectrum))
        pyro.sample("d", dist.Normal(s, sigma).mask(obs_mask).to_event(2), obs=data)

    def white(data):
        w = pyro.sample("w", dist.Normal(torch.zeros_like(spectrum), 1.0).to_event(2))
        s = pyro.deterministic("s", torch.fft.ifft2(torch.fft.fft2(w) * sqrt_s).real)
        pyro.sample("d", dist.Normal(s, sigma).mask(obs_mask).to_event(2), obs=data)

    return white if whitened else pixel


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=12)
    p.add_argument("--sigma", type=float, default=0.5)
    p.add_argument("--k0", type=float, default=0.5)
    p.add_argument("--mask", action="store_true")
    p.add_argument("--whitened", action="store_true")
    p.add_argument("--guide", default="mvn")
    p.add_argument("--steps", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--final-lr", type=float)
    p.add_argument("--num-particles", type=int)
    p.add_argument("--init-strategy")
    p.add_argument("--init-scale", type=float)
    p.add_argument("--num-samples", type=int, default=4000)
    p.add_argument("--seeds", default="0", help="comma-separated svi seeds (same data)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)

    import torch

    from bayessky import infer

    torch.set_num_threads(a.threads)
    spec, m, d, mean, sd = make_problem(a.n, a.sigma, a.k0, a.mask, seed=1)
    model = make_model(spec, m, a.sigma, a.whitened)
    opts = {k: v for k, v in {"steps": a.steps, "lr": a.lr, "final_lr": a.final_lr,
                              "num_particles": a.num_particles, "init_strategy": a.init_strategy,
                              "init_scale": a.init_scale}.items() if v is not None}
    runs = []
    for seed in (int(s) for s in a.seeds.split(",")):
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            idata = infer.svi(model, torch.tensor(d), guide=a.guide, num_samples=a.num_samples,
                              seed=seed, **opts)
        wall = time.perf_counter() - t0
        s = idata.posterior["s"].values.reshape(a.num_samples, -1)
        err = np.abs(s.mean(0) - mean) / sd
        ratio = np.abs(s.std(0) / sd - 1)
        runs.append({"seed": seed, "steps": int(idata.attrs["steps"]), "wall_s": round(wall, 2),
                     "mean_err_sd_median": round(float(np.median(err)), 4),
                     "mean_err_sd_max": round(float(err.max()), 4),
                     "std_err_median": round(float(np.median(ratio)), 4),
                     "std_err_max": round(float(ratio.max()), 4),
                     "converged": idata.attrs.get("converged"),
                     "grad_snr": round(float(idata.attrs.get("grad_snr", float("nan"))), 4),
                     "warnings": [str(w.message) for w in caught
                                  if "converge" in str(w.message)]})
    print(json.dumps({"problem": {"n": a.n, "sigma": a.sigma, "k0": a.k0, "mask": a.mask,
                                  "whitened": a.whitened, "guide": a.guide},
                      "options": opts, "threads": a.threads, "runs": runs}, indent=1, default=str))


if __name__ == "__main__":
    main()
