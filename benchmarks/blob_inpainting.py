"""Inpainting blob images (the 50-blob set of bayessky.families.blobs): learned prior vs Wiener.

Held-out images of the 50-blob set (unit-amplitude Gaussian blobs of sigma 2 px at uniform
centres, 128 x 128; seeds >= 100000) are observed as ``d = M (x + n)``, ``n ~ N(0, 0.05^2)``, with
point-source holes (discs of radius 2-5 px) centred near a random third of the blobs, offset by up
to half the radius so that each hole partly covers its blob -- the way point-source masks sit on
real sources. Two posteriors over the image:

(a) the learned prior (a flow, e.g. trained by ``examples/train_dust_prior.py --family blobs``):
    the packaged model ``bayessky.models.blob_inpainting``, batched NUTS in the flow's pixel space,
    exactly as ``benchmarks/dust_inpainting.py`` (MAP,
    Laplace diagonal + dense hole-block preconditioner, 4 chains). The flow was trained on
    ``x + train_noise * eps`` (blob images have no full-support density); the likelihood uses the
    remaining noise variance ``sigma^2 - train_noise^2``, so the data model is exact;
(b) Gaussian inpainting (Wiener filter + exact constrained realisations) with the mean and per-mode
    power spectrum of the set, estimated from ``--n-spectrum`` fresh images (the set's "true" P(k)).

There is no tractable true-model posterior here (a trans-dimensional point process), so the
reference is the truth itself. Reported: masked-pixel MSE of (a)'s and (b)'s posterior means, 68 %
coverage, negative values, and the stacked-peak profiles (cut-outs around local maxima
above 0.5 and their radial profile) of the blobs inpainted in the holes -- truth vs posterior
means vs posterior draws.

    OMP_NUM_THREADS=1 python benchmarks/blob_inpainting.py --jobs 2      # shipped blob-glow-64
    OMP_NUM_THREADS=1 python benchmarks/blob_inpainting.py --prior my-blob-glow-128 --size 128 \\
        --n-blobs 50       # the 50-blob set's own size, with a 128 x 128 prior

The defaults are the shipped ``models/blob-glow-64`` on 64 x 64 images with 12 blobs, the blob
density of the 50-blob set on 128 x 128 (a 128 x 128 prior needs GPU training).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _dust_common as dc  # noqa: E402

from bayessky.families import blobs  # noqa: E402
from bayessky.models import blob_inpainting  # noqa: E402


def blob_hole_mask(
    centres: np.ndarray,
    size: int,
    rng: np.random.Generator,
    share: float = 1 / 3,
    radius: tuple[float, float] = (2.0, 5.0),
) -> np.ndarray:
    """0/1 mask (1 = observed) with discs over a random ``share`` of the blobs (at least one), each
    of radius uniform in ``radius`` and centred at the blob offset by up to half that radius."""
    k = max(1, int(round(share * len(centres))))
    pick = rng.choice(len(centres), k, replace=False)
    yy, xx = np.mgrid[:size, :size]
    mask = np.ones((size, size))
    for c in centres[pick]:
        r = rng.uniform(*radius)
        off = 0.5 * r * math.sqrt(rng.uniform()) * np.exp(2j * math.pi * rng.uniform())
        cy, cx = c[0] + off.imag, c[1] + off.real
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 0.0
    return mask


def set_spectrum(size: int, n_blobs: int, n_maps: int, seed: int = 7_000) -> tuple[float, np.ndarray]:
    """Mean pixel value and per-mode spectrum E|fft2(x - mean)|^2 / N_pix of the blob set."""
    total, power, done = 0.0, np.zeros((size, size)), 0
    maps = []
    for i in range(0, n_maps, 1000):
        m = blobs.sample(min(1000, n_maps - i), n_blobs, size, seed=seed + i, rule="unit")
        maps.append(m)
        total += m.sum()
        done += len(m)
    mean = total / (done * size * size)
    for m in maps:
        power += (np.abs(np.fft.fft2(m - mean)) ** 2).sum(0)
    return float(mean), power / (done * size * size)


def profiles(maps: np.ndarray, mask: np.ndarray, size: int) -> dict:
    stack, r, prof, n = dc.masked_peak_profile(maps, mask, size=size, threshold=0.5, periodic=False)
    return {"n_peaks": n, "profile": [float(v) for v in prof], "radii": [float(v) for v in r]}


def run_map(i, args, prior, sigma_lik, mean, spectrum):
    seed = args.seed + i
    truth, centres, _ = blobs.sample(
        1, args.n_blobs, args.size, seed=seed, rule="unit", return_params=True
    )
    truth, centres = truth[0], centres[0]
    mask = blob_hole_mask(centres, args.size, np.random.default_rng(seed + 1))
    rng = np.random.default_rng(seed + 50_000)
    data = mask * (truth + args.noise_sigma * rng.standard_normal(truth.shape))
    dt, mt = torch.as_tensor(data), torch.as_tensor(mask)
    rec = {"index": i, "seed": seed, "masked_fraction": float(np.mean(mask < 0.5))}
    t0 = time.perf_counter()
    wmean, info = dc.wiener_inpaint(dt, mt, spectrum, mean=mean, noise_sigma=args.noise_sigma)
    crs, _ = dc.constrained_realisations(
        dt,
        mt,
        spectrum,
        args.n_cr,
        mean=mean,
        noise_sigma=args.noise_sigma,
        generator=torch.Generator().manual_seed(seed),
    )
    wmean, crs = wmean.numpy(), crs.numpy()
    rec["b"] = {
        "seconds": time.perf_counter() - t0,
        "cg_iterations": info["iterations"],
        "mse": dc.masked_mse(wmean, truth, mask),
        "coverage_68": dc.interval_coverage(crs, truth, mask),
        "negative_fraction": dc.negative_fraction(crs, mask),
    }
    maps = {
        "truth": truth,
        "mask": mask,
        "data": np.where(mask > 0.5, data, np.nan),
        "b_mean": wmean,
        "b_sample": crs[0],
        "b_draws": crs[: args.n_stack],
    }
    if prior is not None:
        pot = dc.learned_prior_potential(blob_inpainting.model, prior, dt.to(prior.dtype),
                                         mt.to(prior.dtype), args.noise_sigma, sigma_lik)
        draws, res = dc.posterior_draws(pot, pot.from_map(torch.as_tensor(wmean, dtype=prior.dtype)), args,
                                        seed=i, warmup=args.warmup, samples=args.samples)
        flat = draws.reshape(-1, args.size, args.size)
        rec["a"] = {
            **res,
            "mse": dc.masked_mse(flat.mean(0), truth, mask),
            "coverage_68": dc.interval_coverage(flat, truth, mask),
            "negative_fraction": dc.negative_fraction(flat, mask),
            "negative_fraction_below_minus_3_train_noise": float(
                np.mean(flat[:, mask < 0.5] < -3 * args.train_noise)
            ),
            "convergence_masked": dc.convergence(draws, mask < 0.5),
        }
        thin = flat[np.linspace(0, len(flat) - 1, min(len(flat), args.n_stack)).astype(int)]
        maps.update({"a_mean": flat.mean(0), "a_sample": flat[-1], "a_draws": thin})
    return rec, maps


def stacked(all_maps: list[dict], key: str, size: int) -> dict:
    """Pool the masked-pixel peaks of ``key`` (a map or a stack of draws per image) over all images."""
    if key not in all_maps[0]:
        return {}
    cubes, masks = [], []
    for m in all_maps:
        x = np.asarray(m[key]).reshape(-1, *m["mask"].shape)
        cubes.append(x)
        masks.append(np.broadcast_to(m["mask"], x.shape))
    cube = np.concatenate(cubes)
    out = profiles(cube, np.concatenate(masks), size)
    out["peaks_per_image"] = out["n_peaks"] / len(cube)  # per image (per draw for draws)
    return out


def figures(out: Path, all_maps, records, prof) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    m = all_maps[0]
    panels = [("truth", m["truth"]), ("data", m["data"])]
    if "a_mean" in m:
        panels += [("(a) learned mean", m["a_mean"]), ("(a) learned sample", m["a_sample"])]
    panels += [("(b) Wiener mean", m["b_mean"]), ("(b) constrained real.", m["b_sample"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.8 * len(panels), 3.0))
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img, origin="lower", cmap="magma", vmin=-0.2, vmax=1.2)
        ax.contour(m["mask"], [0.5], colors="c", linewidths=0.6)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path = out / "blob_inpainting_maps.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(str(path))
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    styles = {
        "truth": ("k", "-"),
        "a_mean": ("C2", "-"),
        "a_draws": ("C2", "--"),
        "b_mean": ("C1", "-"),
        "b_draws": ("C1", "--"),
    }
    for key, p in prof.items():
        if p and np.isfinite(p["profile"]).any():
            c, ls = styles[key]
            ax[0].plot(
                p["radii"],
                p["profile"],
                color=c,
                ls=ls,
                marker="o",
                ms=3,
                label=f"{key} ({p['n_peaks']})",
            )
    ax[0].set(xlabel="r [px]", ylabel="stacked profile", title="peaks in masked pixels (n peaks)")
    ax[0].legend(fontsize=7)
    idx = np.arange(len(records))
    for k, (key, label) in enumerate((("a", "(a) learned"), ("b", "(b) Gaussian"))):
        if key in records[0]:
            ax[1].bar(idx + 0.4 * (k - 0.5), [r[key]["mse"] for r in records], 0.4, label=label)
    ax[1].set(xlabel="map", ylabel="masked-pixel MSE of the mean")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    path = out / "blob_inpainting_profiles.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(str(path))
    return written


def _map_state(args) -> tuple:
    """What every map needs: (args, the learned prior or None, the likelihood's noise sigma, the
    set's mean and per-mode spectrum). Sets ``args.train_noise`` from the prior's card."""
    prior, args.train_noise = None, 0.0
    sigma_lik = args.noise_sigma
    if args.prior != "none":
        import bayessky

        prior = bayessky.load_prior(args.prior, device=args.device)
        if tuple(prior.net.shape[-2:]) != (args.size, args.size):
            raise SystemExit(
                f"--prior: the prior models {tuple(prior.net.shape[-2:])} maps, --size is {args.size}"
            )
        args.train_noise = blob_inpainting.train_noise(prior)
        if args.train_noise >= args.noise_sigma:
            raise SystemExit(f"--prior: its train_noise {args.train_noise} is not below --noise-sigma")
        sigma_lik = blob_inpainting.likelihood_sigma(args.noise_sigma, args.train_noise)
    mean, spectrum = set_spectrum(args.size, args.n_blobs, args.n_spectrum)
    return args, prior, sigma_lik, mean, spectrum


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--prior", default="blob-glow-64", help="learned prior (name or folder); 'none' skips (a)"
    )
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n-blobs", type=int, default=12,
                   help="blobs per image (the 50-blob set: 50 on 128 x 128)")
    p.add_argument("--n-maps", type=int, default=10)
    p.add_argument("--noise-sigma", type=float, default=0.05)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--max-tree-depth", type=int, default=10)
    p.add_argument("--n-cr", type=int, default=500)
    p.add_argument("--n-stack", type=int, default=200, help="posterior draws per map in the peak stacks")
    p.add_argument("--stack-size", type=int, default=21)
    p.add_argument("--n-spectrum", type=int, default=20_000, help="images for the set's mean and P(k)")
    p.add_argument("--seed", type=int, default=100_000)
    dc.add_run_options(p)
    p.add_argument("--out", default="benchmarks/results/blob_inpainting")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    state = _map_state(args)
    _, prior, sigma_lik, mean, spectrum = state
    t_spec = time.perf_counter() - t0
    records, all_maps = [], []
    for i, (rec, maps) in enumerate(dc.map_results(run_map, _map_state, args, args.n_maps, state)):
        records.append(rec)
        all_maps.append(maps)
        line = {k: round(rec[k]["mse"], 5) for k in ("a", "b") if k in rec}
        print(f"map {i}: mse {line}; {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    prof = {
        key: stacked(all_maps, key, args.stack_size)
        for key in ("truth", "a_mean", "a_draws", "b_mean", "b_draws")
    }
    summary = {
        "b": {
            "mse_mean_over_maps": float(np.mean([r["b"]["mse"] for r in records])),
            "coverage_68_mean": float(np.mean([r["b"]["coverage_68"] for r in records])),
            "negative_fraction_max": float(max(r["b"]["negative_fraction"] for r in records)),
        }
    }
    if prior is not None:
        summary["a"] = {
            "mse_mean_over_maps": float(np.mean([r["a"]["mse"] for r in records])),
            "coverage_68_mean": float(np.mean([r["a"]["coverage_68"] for r in records])),
            "negative_fraction_max": float(max(r["a"]["negative_fraction"] for r in records)),
            "rhat_max_masked": float(max(r["a"]["convergence_masked"]["rhat_max"] for r in records)),
            "ess_bulk_min_masked": float(
                min(r["a"]["convergence_masked"]["ess_bulk_min"] for r in records)
            ),
            "divergences": int(sum(r["a"]["divergences"] for r in records)),
            "seconds_nuts_total": float(sum(r["a"]["seconds_nuts"] for r in records)),
        }
        summary["mse_ratio_a_over_b"] = sum(r["a"]["mse"] for r in records) / sum(
            r["b"]["mse"] for r in records
        )
    truth_prof = np.asarray(prof["truth"]["profile"]) if prof["truth"] else None
    for key, pr in prof.items():
        if pr and key != "truth" and truth_prof is not None:
            diff = np.asarray(pr["profile"]) - truth_prof
            pr["rms_difference_to_truth"] = float(np.sqrt(np.nanmean(diff**2)))
            pr["central_ratio_to_truth"] = float(pr["profile"][0] / truth_prof[0])
    result = {
        "benchmark": "blob_inpainting",
        "family": blobs.VERSION,
        "size": args.size,
        "n_blobs": args.n_blobs,
        "n_maps": args.n_maps,
        "prior": args.prior,
        "likelihood_sigma": sigma_lik,
        "set_mean": mean,
        "seconds_setup": t_spec,
        "prior_card": None
        if prior is None
        else {k: prior.card.get(k) for k in ("architecture", "data", "metrics")},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "summary": summary,
        "stacked_peak_profiles": prof,
        "maps": records,
        "seconds_total": time.perf_counter() - t0,
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "commit": dc.git_commit(),
    }
    result["figures"] = figures(out, all_maps, records, prof)
    text = json.dumps(result, indent=1, default=float)
    (out / "blob_inpainting.json").write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main()
