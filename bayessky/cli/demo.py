"""``bayessky demo``: Omega_m and sigma_8 from one simulated HI map, learned vs exact posterior.

The main job on shipped defaults: simulate a hi-toy-v1 map at a known (Omega_m, sigma_8), infer
the parameters with the shipped conditional Glow likelihood (the prior ``hi-cglow-32``) by the grid
engine and a short NUTS run, and compare with the exact posterior (hi-toy's likelihood is known).
The model is the packaged :mod:`bayessky.models.hi_parameters` (``bayessky run hi_parameters``).
Writes posterior.nc (grid posterior draws), posterior_nuts.nc, summary.csv and corner.png
(truth marked, exact-posterior contours overlaid).
"""

from __future__ import annotations

import argparse
import time

from ._write import write_csv, write_netcdf

__all__ = ["add_parser", "run"]

TRUTH = {"Omega_m": 0.30, "sigma_8": 0.80}
DEMO_SEED = 123_456  # a held-out seed: training used seeds 1000-3000, benchmarks >= 100000
# the demo's own, shorter NUTS run (4 chains x 250 draws); `bayessky run` draws DEFAULTS' 1000 per chain
DEMO_NUTS_SAMPLES = 250


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="HI parameter inference on a simulated map with the shipped prior",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bayessky-demo", help="output folder (default: ./bayessky-demo)")
    p.add_argument("--prior", default="hi-cglow-32", help="shipped prior name or folder")
    p.add_argument("--omega-m", type=float, default=TRUTH["Omega_m"], help="true Omega_m in (0.1, 0.5)")
    p.add_argument("--sigma-8", type=float, default=TRUTH["sigma_8"], help="true sigma_8 in (0.6, 1.0)")
    p.add_argument("--seed", type=int, default=DEMO_SEED)
    p.add_argument("--grid-size", type=int, default=40)
    p.add_argument("--nuts-samples", type=int, default=DEMO_NUTS_SAMPLES,
                   help="NUTS draws per chain, 0 skips NUTS")
    p.add_argument("--nuts-warmup", type=int, default=None,
                   help="NUTS warm-up per chain (default: hi_parameters.DEFAULTS warmup_steps)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def _scalar(value) -> float:
    """A one-map grid statistic (shape (1,) or ()) as a float."""
    import numpy as np

    return float(np.ravel(value)[0])


def run(args: argparse.Namespace) -> int:
    import arviz as az
    import numpy as np
    import pandas as pd
    import torch

    from .. import infer, load_prior
    from ..atomic import atomic_path
    from ..families import hi_toy
    from ..models import hi_parameters
    from ..plot import corner
    from . import CLIError, parse_device
    from ._write import check_out_dir

    t0 = time.time()
    if args.nuts_warmup is None:
        args.nuts_warmup = int(hi_parameters.DEFAULTS["warmup_steps"])
    box = hi_parameters.BOUNDS
    checks = (("--omega-m", args.omega_m, box["Omega_m"]), ("--sigma-8", args.sigma_8, box["sigma_8"]))
    for name, v, (lo, hi) in checks:
        if not lo < v < hi:
            raise CLIError(f"{name}: must lie inside the prior box ({lo}, {hi}), got {v}")
    # every flag before any work or output: a bad NUTS flag used to be refused after map.npy and the
    # grid posteriors were written
    if args.grid_size < 2:
        raise CLIError(f"--grid-size: expected an integer >= 2, got {args.grid_size}")
    for flag, v in (("--nuts-samples", args.nuts_samples), ("--nuts-warmup", args.nuts_warmup)):
        if v < 0:
            raise CLIError(f"{flag}: expected an integer >= 0, got {v}")
    try:
        hi_parameters.grid(args.grid_size)  # its memory check
    except ValueError as err:
        raise CLIError(f"--grid-size: {str(err).partition(': ')[2]}") from None
    device = parse_device(args.device)
    out = check_out_dir(args.out)
    prior = load_prior(args.prior, device=device)
    if list(prior.context_names or []) != list(axes_names := hi_parameters.BOUNDS):
        raise CLIError(f"--prior: the demo needs a prior conditioned on {', '.join(axes_names)}, got "
                       f"{args.prior!r} (context {prior.context_names})")
    size = prior.card.get("data", {}).get("size") or prior.net.architecture["shape"][-1]
    out.mkdir(parents=True, exist_ok=True)
    truth = {"Omega_m": args.omega_m, "sigma_8": args.sigma_8}
    data = torch.as_tensor(hi_toy.sample(1, truth["Omega_m"], truth["sigma_8"], size=size, seed=args.seed)[0],
                           dtype=torch.float32, device=args.device)
    with atomic_path(out / "map.npy") as tmp:
        np.save(tmp, data.cpu().numpy())
    print(f"bayessky demo: simulated a {size}x{size} hi-toy-v1 map at Omega_m={truth['Omega_m']}, "
          f"sigma_8={truth['sigma_8']} (seed {args.seed})")

    axes = hi_parameters.grid(args.grid_size)
    t = time.time()
    learned = infer.grid(hi_parameters.model, data, grid=axes, flow=args.prior)
    t_grid = time.time() - t
    exact = infer.grid(hi_parameters.model, data.double(), grid=axes, likelihood="exact")
    idata = learned.to_inference_data(4000, seed=0, jitter=True)
    exact_idata = exact.to_inference_data(4000, seed=1, jitter=True)
    write_netcdf(idata, out / "posterior.nc")
    write_netcdf(exact_idata, out / "posterior_exact.nc")
    rows = []
    for label, post in (("grid (learned)", learned), ("grid (exact)", exact)):
        for k in axes:
            rows.append({"engine": label, "parameter": k, "mean": _scalar(post.mean[k]),
                         "sd": _scalar(post.std[k]), "truth": truth[k]})
    print(f"grid posterior: {args.grid_size}x{args.grid_size} points in {t_grid:.1f}s")

    if args.nuts_samples > 0:
        t = time.time()
        # the packaged model's NUTS settings (hi_parameters.DEFAULTS: fast batched chains, dense
        # mass), started at the grid's best point, which the grid has already paid for. A 0.6
        # M-parameter flow on one map is overhead-bound: a second torch thread buys nothing and
        # collapses under load (the fast backend's chain processes run one thread each).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        settings = {k: v for k, v in hi_parameters.DEFAULTS.items() if k != "engine"}
        settings.update(num_samples=args.nuts_samples, warmup_steps=args.nuts_warmup,
                        init_strategy={k: _scalar(learned.map_estimate[k]) for k in axes})
        try:
            nuts = infer.nuts(hi_parameters.model, data, flow=args.prior, seed=args.seed,
                              progress_bar=not getattr(args, "quiet", False),
                              **settings)
        finally:
            torch.set_num_threads(threads)
        t_nuts = time.time() - t
        write_netcdf(nuts, out / "posterior_nuts.nc")
        s = az.summary(nuts, var_names=list(axes))
        for k in axes:
            rows.append({"engine": "nuts (learned)", "parameter": k, "mean": float(s.loc[k, "mean"]),
                         "sd": float(s.loc[k, "sd"]), "truth": truth[k],
                         "ess_bulk": float(s.loc[k, "ess_bulk"]),
                         "r_hat": float(s.loc[k, "r_hat"]) if np.isfinite(s.loc[k, "r_hat"]) else None})
        print(f"NUTS: {settings['num_chains']} chains x {args.nuts_samples} draws after {args.nuts_warmup} "
              f"warm-up in {t_nuts:.1f}s")

    table = pd.DataFrame(rows)
    table["error_in_sd"] = (table["mean"] - table["truth"]) / table["sd"]
    write_csv(table, out / "summary.csv", index=False)
    refs, ref_labels = [exact_idata], ["exact likelihood (grid)"]
    if args.nuts_samples > 0:
        refs.append(nuts)
        ref_labels.append("learned, NUTS")
    corner(idata, var_names=list(axes), truths=truth, reference=refs,
           label="learned (conditional Glow), grid", reference_label=ref_labels, out=out / "corner.png")
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print()
    for k in axes:
        m_l, s_l = _scalar(learned.mean[k]), _scalar(learned.std[k])
        m_e, s_e = _scalar(exact.mean[k]), _scalar(exact.std[k])
        print(f"{k}: learned {m_l:.3f} +- {s_l:.3f}, exact {m_e:.3f} +- {s_e:.3f}, truth {truth[k]:.3f} "
              f"(learned - exact = {(m_l - m_e) / s_e:+.2f} exact sd)")
    print(f"\nwrote {out}/: posterior.nc, posterior_exact.nc"
          + (", posterior_nuts.nc" if args.nuts_samples > 0 else "")
          + f", summary.csv, corner.png, map.npy  ({time.time() - t0:.0f}s)")
    return 0
