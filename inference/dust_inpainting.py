"""Inpaint and denoise a dust intensity map under a learned prior.

    I ~ prior                          (a trained flow / VAE / GAN prior over maps, user units)
    d ~ N(I, noise_sigma^2)            on the observed pixels (mask = 1); masked pixels carry no data

With a mask this is inpainting (point-source holes, a strip); without one it is denoising
(M = 1, typically a higher ``noise_sigma``). The posterior over the whole map comes from any engine;
the map is the site ``"I"``, so ``bayessky run`` writes its mean and std maps and a figure.

    bayessky run inference/dust_inpainting.py --data d.npy --mask mask.npy --engine nuts
    bayessky run inference/dust_inpainting.py --data noisy.npy --engine map --set noise_sigma=0.2
    python inference/dust_inpainting.py inpaint --data d.npy --mask mask.npy --truth I.npy --out run/
    python inference/dust_inpainting.py denoise --data noisy.npy --noise-sigma 0.2 --out run/
    python inference/dust_inpainting.py simulate --size 64 --mask point --out demo/   # data to try

The command-line form also writes the posterior draws (``samples.npy``), convergence diagnostics
of the masked pixels and, with ``--truth``, the residual panel and error metrics.

Options (``--set key=value`` for ``bayessky run``):
    prior:        a shipped prior name or folder (default "dust-glow-64"); "true" for the exact
                  dust-toy-v1 model (log-normal, the Bayes-optimal reference on synthetic maps);
                  "gaussian" for a Gaussian prior with the exact dust-toy-v1 intensity spectrum
                  (the Wiener-filter posterior).
    noise_sigma:  noise rms per pixel, intensity units (default 0.05, dust-toy-v1's); a number or,
                  in Python, a map (n, n) for inhomogeneous noise.
    space:        "map" (default): sample the map in the prior's pixel space (flows: the network
                  space y = T(I), e.g. standardised log10 I, site "I_net"; the true model: its
                  Gaussian field g), where the likelihood is diagonal;
                  "latent": sample whitened latents z ~ N(0, 1) and decode I = f^-1(z) (flows and
                  the true model; VAE/GAN priors always use their latent).

Copy and edit this file for your own data: the model is the ten lines of ``model``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch

import bayessky
from bayessky.distributions import FlowDistribution, GaussianRandomField, MapNormal
from bayessky.families import dust_toy

DEFAULTS = {
    "engine": "nuts",
    "backend": "fast",
    "num_chains": 4,
    "warmup_steps": 500,
    "num_samples": 500,
    "init_strategy": "map",
}
MAP_SITE = "I"


@lru_cache(maxsize=4)
def _prior(name: str, device: str):
    return bayessky.load_prior(name, device=device)


@lru_cache(maxsize=8)
def _spectra(n: int, device: str, dtype: torch.dtype):
    """sqrt S_g (the true model's field) and S_I (the exact intensity spectrum), as tensors."""
    s_g = torch.as_tensor(dust_toy.spectrum(n), dtype=dtype, device=device)
    a2 = dust_toy.AMPLITUDE**2
    xi_g = torch.fft.ifft2(s_g).real
    s_i = torch.fft.fft2(torch.expm1(a2 * xi_g)).real.clamp_min(0.0)  # Cov(I) = exp(a^2 xi_g) - 1
    return s_g.sqrt(), s_i


def _hartley(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D Hartley transform: real, an involution, diagonalises even spectra."""
    X = torch.fft.fft2(x, norm="ortho")
    return X.real - X.imag


def dust_map(name: str, n: int, like: torch.Tensor, prior: str = "dust-glow-64", space: str = "map"):
    """Draw the intensity map I (n, n) from ``prior`` inside a Pyro model; records site ``name``."""
    kw = {"dtype": like.dtype, "device": like.device}
    if space not in ("map", "latent"):
        raise ValueError(f"space: expected 'map' or 'latent', got {space!r}")
    if prior == "true":
        sqrt_s, _ = _spectra(n, str(like.device), like.dtype)
        if space == "map":
            g = pyro.sample("g", dust_toy.distribution(n, **kw))
        else:
            u = pyro.sample("g_latent", dist.Normal(torch.zeros(n * n, **kw), 1.0).to_event(1))
            g = _hartley(sqrt_s * u.reshape(*u.shape[:-1], n, n))
        return pyro.deterministic(name, dust_toy.intensity(g))
    if prior == "gaussian":
        _, s_i = _spectra(n, str(like.device), like.dtype)
        s = pyro.sample(name + "_fluctuation", GaussianRandomField(s_i))
        return pyro.deterministic(name, 1.0 + s)  # E[I] = 1 for dust-toy-v1
    p = _prior(str(prior), str(like.device))
    if not hasattr(p, "distribution"):  # VAE / GAN: the latent is the only handle
        return p.sample(name).to(like.dtype)
    net = p.net
    if space == "map":
        # the flow's own pixel space y = T(I) (standardised log I): an unconstrained site, so a MAP
        # is the mode in y (as g for the true model), not the 1/I-skewed mode of p(I)
        y = pyro.sample(name + "_net", FlowDistribution(net))
        x = p.transform.inv(y) if p.transform is not None else y
        return pyro.deterministic(name, x.to(like.dtype))
    z = pyro.sample(name + "_latent", dist.Normal(torch.zeros(net.dim, **kw), 1.0).to_event(1))
    y = net.inverse(net.unflatten_latents(z.reshape(-1, net.dim).to(p.dtype)))
    x = p.transform.inv(y) if p.transform is not None else y
    return pyro.deterministic(name, x.to(like.dtype).reshape(*z.shape[:-1], n, n))


def model(
    data: torch.Tensor,
    mask: torch.Tensor | None = None,
    prior: str = "dust-glow-64",
    noise_sigma: float = dust_toy.NOISE_SIGMA,
    space: str = "map",
):
    """data: observed map (n, n) (values at masked pixels are ignored); mask: 1 = observed."""
    I = dust_map("I", data.shape[-1], data, prior, space)
    # a number (white noise) or a map of per-pixel rms (inhomogeneous noise)
    sigma = torch.as_tensor(noise_sigma, dtype=data.dtype, device=data.device)
    pyro.sample("d", MapNormal(I, sigma, mask), obs=data)


# -- command line ------------------------------------------------------------------------------------
def _load(path: str | None, what: str):
    if path is None:
        return None
    from bayessky.data.io import load_maps

    arr = np.asarray(load_maps(path), dtype=np.float64)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise SystemExit(f"{what}: expected one map (n, n), got shape {arr.shape}")
    return arr


def _posterior_maps(idata) -> np.ndarray:
    post = idata.posterior[MAP_SITE].values  # (chains, draws, n, n)
    return np.asarray(post, dtype=np.float64)


def run(args) -> dict:
    """Run one inpainting / denoising job and write its outputs; returns the run record."""
    from bayessky import infer
    from bayessky.plot import posterior_maps

    if args.threads:
        torch.set_num_threads(args.threads)
    data = _load(args.data, "--data")
    mask = None if args.command == "denoise" else _load(args.mask, "--mask")
    truth = _load(args.truth, "--truth")
    for arr, what in ((mask, "--mask"), (truth, "--truth")):
        if arr is not None and arr.shape != data.shape:
            raise SystemExit(f"{what}: shape {arr.shape} differs from --data {data.shape}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dtype = torch.float64 if args.prior in ("true", "gaussian") else torch.float32
    d = torch.as_tensor(data, dtype=dtype, device=args.device)
    m = None if mask is None else torch.as_tensor(mask, dtype=dtype, device=args.device)
    opts = dict(mask=m, prior=args.prior, noise_sigma=args.noise_sigma, space=args.space)
    t0 = time.perf_counter()
    if args.engine in ("nuts", "hmc"):
        kw = dict(
            num_samples=args.num_samples,
            warmup_steps=args.warmup,
            num_chains=args.chains,
            init_strategy="map",
            seed=args.seed,
            progress_bar=not args.quiet,
        )
        if args.engine == "nuts":
            kw["backend"] = args.backend
        idata = getattr(infer, args.engine)(model, d, **kw, **opts)
    elif args.engine == "svi":
        idata = infer.svi(
            model,
            d,
            guide=args.guide,
            steps=args.steps,
            num_samples=args.num_samples,
            seed=args.seed,
            **opts,
        )
    else:
        idata = infer.map(
            model,
            d,
            steps=args.steps,
            laplace=args.laplace,
            num_samples=args.num_samples,
            seed=args.seed,
            **opts,
        )
    seconds = time.perf_counter() - t0
    draws = _posterior_maps(idata)
    flat = draws.reshape(-1, *data.shape)
    mean, std = flat.mean(0), flat.std(0)
    np.save(out / "map_mean.npy", mean)
    np.save(out / "map_std.npy", std)
    keep = np.linspace(0, len(flat) - 1, min(len(flat), args.keep_samples)).astype(int)
    np.save(out / "samples.npy", flat[keep].astype(np.float32))
    idata.to_netcdf(str(out / "posterior.nc"))
    title = f"{args.command}: prior {args.prior}, {args.engine}"
    posterior_maps(
        mean, std, data=data, truth=truth, mask=mask, title=title, cmap="inferno", out=out / "maps.png"
    )
    record = {
        "command": args.command,
        "prior": args.prior,
        "engine": args.engine,
        "space": args.space,
        "noise_sigma": args.noise_sigma,
        "n_draws": int(len(flat)),
        "seconds": seconds,
        "negative_fraction": float(np.mean(flat < 0)),
    }
    hole = None if mask is None else mask < 0.5
    if args.engine in ("nuts", "hmc") and draws.shape[0] > 1:
        import arviz as az

        sel = (
            draws[:, :, hole] if hole is not None and hole.any() else draws.reshape(*draws.shape[:2], -1)
        )
        ds = az.convert_to_dataset({"I": sel})
        record["rhat_max"] = float(az.rhat(ds)["I"].max())
        record["ess_bulk_min"] = float(az.ess(ds, method="bulk")["I"].min())
    if truth is not None:
        region = hole if hole is not None and hole.any() else np.ones(data.shape, bool)
        lo, hi = np.quantile(flat[:, region], [0.16, 0.84], axis=0)
        t = truth[region]
        record.update(
            {
                "mse_region": float(np.mean((mean[region] - t) ** 2)),
                "coverage_68_region": float(np.mean((t >= lo) & (t <= hi))),
                "region": "masked pixels" if hole is not None and hole.any() else "all pixels",
            }
        )
    (out / "run.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))
    return record


def simulate(args) -> None:
    """Write a dust-toy-v1 truth, mask and observation to try the script on."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    truth = dust_toy.sample(1, args.size, seed=args.seed)[0]
    if args.mask == "point":
        mask = dust_toy.point_source_mask(args.size, seed=args.seed)
    elif args.mask == "strip":
        mask = dust_toy.strip_mask(args.size, seed=args.seed)
    else:
        mask = np.ones((args.size, args.size))
    data = dust_toy.observe(truth, mask, noise_sigma=args.noise_sigma, seed=args.seed + 1)
    for name, arr in (("truth", truth), ("mask", mask), ("data", data)):
        np.save(out / f"{name}.npy", arr)
    print(
        f"wrote {out}/truth.npy, mask.npy, data.npy ({args.size}^2, mask {args.mask}, "
        f"noise {args.noise_sigma})"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    for cmd in ("inpaint", "denoise"):
        q = sub.add_parser(cmd, help=f"{cmd} a map (writes mean, std, samples, figure)")
        q.add_argument("--data", required=True, help="observed map (.npy, .npz, FITS)")
        if cmd == "inpaint":
            q.add_argument("--mask", required=True, help="mask file, 1 = observed, 0 = masked")
        q.add_argument("--truth", help="true map, for the residual panel and error metrics")
        q.add_argument("--prior", default="dust-glow-64")
        q.add_argument(
            "--noise-sigma", type=float, default=dust_toy.NOISE_SIGMA if cmd == "inpaint" else 0.2
        )
        q.add_argument("--engine", default="nuts", choices=["nuts", "hmc", "svi", "map"])
        q.add_argument("--space", default="map", choices=["map", "latent"])
        q.add_argument("--backend", default="fast", choices=["fast", "pyro"])
        q.add_argument("--chains", type=int, default=4)
        q.add_argument("--warmup", type=int, default=500)
        q.add_argument("--num-samples", type=int, default=500)
        q.add_argument("--steps", type=int, default=2000, help="SVI steps / MAP iterations")
        q.add_argument("--guide", default="normal", help="SVI guide: normal, mvn, lowrank, flow")
        q.add_argument(
            "--laplace", action="store_true", help="MAP: also draw from the Laplace approximation"
        )
        q.add_argument("--keep-samples", type=int, default=500, help="draws written to samples.npy")
        q.add_argument("--device", default="cpu")
        q.add_argument("--threads", type=int, default=None)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--quiet", action="store_true")
        q.add_argument("--out", default="dust-inpainting")
    q = sub.add_parser("simulate", help="write a dust-toy-v1 truth, mask and observation")
    q.add_argument("--size", type=int, default=64)
    q.add_argument("--mask", default="point", choices=["point", "strip", "none"])
    q.add_argument("--noise-sigma", type=float, default=dust_toy.NOISE_SIGMA)
    q.add_argument("--seed", type=int, default=100_000)
    q.add_argument("--out", default="dust-demo")
    args = p.parse_args(argv)
    if args.command == "simulate":
        simulate(args)
    else:
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
