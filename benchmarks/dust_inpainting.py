"""Inpainting dust-toy-v1 maps: learned-prior posterior vs Gaussian (Wiener) vs the true model.

On held-out dust-toy-v1 maps (seeds >= 100000, never used in training), alternately with a
point-source mask (discs of radius 2-5 px, ~10 % of the pixels) and a 6-px strip, and data
``d = M (I + n)``, ``n ~ N(0, 0.05^2)``, three posteriors over the map are computed side by side:

(a) the learned prior (a flow from ``bayessky.load_prior``): the packaged model
    ``bayessky.models.dust_inpainting`` (``space="map"``: the prior's pixel space ``y = T(I)``,
    exact flow density + Gaussian likelihood), batched NUTS, 4 chains;
(b) Gaussian inpainting with the exact intensity spectrum of dust-toy-v1 (Wiener filter by
    preconditioned CG) and its exact Gaussian constrained realisations;
(c) the true log-normal model (the same packaged model with ``prior="true"``): batched NUTS on
    the Gaussian field g, 4 chains, R-hat / ESS reported: the Bayes-optimal reference.

Both NUTS runs sample the model's flat potential (``bayessky.infer.potential``) with the same
sampler: L-BFGS MAP from the Wiener mean, then a fixed linear
preconditioner (diagonal Gauss-Newton scales on observed pixels, the dense inverse-Hessian factor
of the prior on the masked pixels, where the likelihood is flat), chains started at independent
draws of that Laplace approximation, Stan-style warm-up on top. The preconditioner is a linear
change of variables: the targets are the exact posteriors.

Metrics (masked pixels unless stated): MSE of the posterior mean, coverage of the central 68 %
interval, fraction of negative intensities in the samples, KS distance between the pooled pixel
values of (a) or (b) and (c) (with the (c)-vs-(c) split-chain distance as the noise floor),
Minkowski functionals V0, V1, V2 of whole sample maps at intensity thresholds against (c)'s
pointwise 95 % band. Targets (what a learned prior must reach to replace the true model):
MSE(a) <= 1.10 MSE(c); |coverage(a) - coverage(c)|
<= 5 points; no negative intensities in (a); KS(a, c) <= 0.05; (a)'s Minkowski curves inside (c)'s
band -- and (b) failing the realism checks.

Run (prints one JSON object; figures and the JSON go to --out):

    OMP_NUM_THREADS=1 python benchmarks/dust_inpainting.py --prior dust-glow-64 --size 64 --n-maps 10
    python benchmarks/dust_inpainting.py --prior runs/dust-glow-32-dev --size 32 --n-maps 10 \\
        --warmup 300 --samples 300          # development size
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

from bayessky.atomic import atomic_path  # noqa: E402
from bayessky.families import dust_toy  # noqa: E402
from bayessky.models import dust_inpainting  # noqa: E402

THRESHOLDS_G = np.linspace(-2.0, 2.5, 10)  # Minkowski levels in units of the Gaussian field g
TARGETS = {
    "mse_ratio_a_over_c_max": 1.10,
    "coverage_gap_max_points": 5.0,
    "negative_fraction_a": 0.0,
    "ks_a_vs_c_max": 0.05,
    "minkowski": "(a)'s mean curve inside (c)'s 95 % band at every point and "
    ">= 85 % of (a)'s sample values inside it (nominal 95 %)",
}


def make_map(i: int, size: int, seed0: int):
    """Truth, mask (even i: point sources, odd i: strip) and data of held-out map i."""
    seed = seed0 + i
    truth = dust_toy.sample(1, size, seed=seed)[0]
    kind = "point" if i % 2 == 0 else "strip"
    mask = (
        dust_toy.point_source_mask(size, seed=seed)
        if kind == "point"
        else dust_toy.strip_mask(size, seed=seed)
    )
    data = dust_toy.observe(truth, mask, seed=seed + 50_000)
    return truth, mask, data, kind


def realism(
    samples: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray,
    thresholds: np.ndarray,
    max_maps: int = 400,
) -> dict:
    """Negativity, KS distance of masked-pixel values, Minkowski band of ``samples`` vs ``reference``."""
    hole = mask < 0.5
    rng = np.random.default_rng(0)

    def thin(x):
        return x[rng.choice(len(x), min(len(x), max_maps), replace=False)]

    mf = dc.band_fraction(
        dc.minkowski_curves(thin(samples), thresholds), dc.minkowski_curves(thin(reference), thresholds)
    )
    return {
        "negative_fraction": dc.negative_fraction(samples, mask),
        "ks_vs_true_model": dc.ks_distance(samples[:, hole], reference[:, hole]),
        "minkowski_inside_band": mf["inside"],
        "minkowski_mean_inside_band": mf["mean_inside"],
    }


def summary_stats(samples: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict:
    hole = mask < 0.5
    mean, std = samples.mean(0), samples.std(0)
    return {
        "mse": dc.masked_mse(mean, truth, mask),
        "coverage_68": dc.interval_coverage(samples, truth, mask),
        "coverage_mean_pm_std": float(np.mean(np.abs(mean[hole] - truth[hole]) <= std[hole])),
        "n_masked": int(hole.sum()),
    }


def _reference_path(args, i: int) -> Path | None:
    if not args.reference_cache:
        return None
    key = (f"seed{args.seed + i}_n{args.size}_c{args.chains}_w{args.warmup_true}_s{args.samples_true}"
           f"_d{args.max_tree_depth}")
    return Path(args.reference_cache) / f"true_model_{key}.npz"


def _load_reference(args, i: int):
    """(c)'s draws (chains, draws, n, n) and record from the cache, or (None, None)."""
    path = _reference_path(args, i)
    if path is None or not path.is_file():
        return None, None
    with np.load(path, allow_pickle=False) as f:  # plain arrays only: nothing is unpickled
        return f["draws"], json.loads(str(f["record"]))


def _save_reference(args, i: int, draws: np.ndarray, record: dict) -> None:
    path = _reference_path(args, i)
    if path is None:
        return
    with atomic_path(path) as tmp:
        np.savez(tmp, draws=draws.astype(np.float32), record=json.dumps(record, default=float))


def run_map(i, args, prior, spectrum, thresholds) -> tuple[dict, dict]:
    truth, mask, data, kind = make_map(i, args.size, args.seed)
    dt, mt = torch.as_tensor(data), torch.as_tensor(mask)
    rec: dict = {
        "index": i,
        "seed": args.seed + i,
        "mask": kind,
        "masked_fraction": float(np.mean(mask < 0.5)),
    }
    # (b) Wiener + constrained realisations
    t0 = time.perf_counter()
    wmean, info = dc.wiener_inpaint(dt, mt, spectrum)
    crs, _ = dc.constrained_realisations(
        dt, mt, spectrum, args.n_cr, generator=torch.Generator().manual_seed(args.seed + i)
    )
    crs = crs.numpy()
    rec["b"] = {
        "seconds": time.perf_counter() - t0,
        "cg_iterations": info["iterations"],
        **summary_stats(crs, truth, mask),
    }
    # the exact Wiener mean, not the mean of the finite set of realisations
    rec["b"]["mse_cr_mean"] = rec["b"]["mse"]
    rec["b"]["mse"] = dc.masked_mse(wmean.numpy(), truth, mask)
    init = wmean.clamp_min(0.05)
    # (c) the true model (cached: it does not depend on the learned prior being compared)
    draws_c, res_c = _load_reference(args, i)
    if draws_c is None:
        pot_c = dc.true_model_potential(dt, mt)
        draws_c, res_c = dc.posterior_draws(pot_c, pot_c.from_map(init), args, seed=i,
                                            warmup=args.warmup_true, samples=args.samples_true)
        _save_reference(args, i, draws_c, res_c)
    flat_c = draws_c.reshape(-1, args.size, args.size)
    rec["c"] = {
        **res_c,
        **summary_stats(flat_c, truth, mask),
        "convergence_masked": dc.convergence(draws_c, mask < 0.5),
        "convergence_all": dc.convergence(draws_c),
    }
    half = draws_c.shape[0] // 2
    floor = realism(
        draws_c[:half].reshape(-1, args.size, args.size),
        draws_c[half:].reshape(-1, args.size, args.size),
        mask,
        thresholds,
    )
    rec["c"]["split_chains_floor"] = floor
    rec["b"].update(realism(crs, flat_c, mask, thresholds))
    maps = {
        "truth": truth,
        "data": np.where(mask > 0.5, data, np.nan),
        "mask": mask,
        "b_mean": wmean.numpy(),
        "b_sample": crs[0],
        "c_mean": flat_c.mean(0),
        "c_sample": flat_c[-1],
        "c_values": flat_c[:, mask < 0.5],
        "b_values": crs[:, mask < 0.5],
        "c_mf": dc.minkowski_curves(flat_c[:: max(1, len(flat_c) // 400)], thresholds),
        "b_mf": dc.minkowski_curves(crs[:400], thresholds),
    }
    print(f"  map {i}: (b) and (c) done, (c) {res_c['seconds_nuts']:.0f}s", file=sys.stderr, flush=True)
    # (a) the learned prior
    if prior is not None:
        dt32, mt32 = dt.to(prior.dtype), mt.to(prior.dtype)
        pot_a = dc.learned_prior_potential(dust_inpainting.model, prior, dt32, mt32, dust_toy.NOISE_SIGMA)
        draws_a, res_a = dc.posterior_draws(pot_a, pot_a.from_map(init.to(prior.dtype)), args, seed=i,
                                            warmup=args.warmup, samples=args.samples)
        flat_a = draws_a.reshape(-1, args.size, args.size)
        rec["a"] = {
            **res_a,
            **summary_stats(flat_a, truth, mask),
            "convergence_masked": dc.convergence(draws_a, mask < 0.5),
            "convergence_all": dc.convergence(draws_a),
            **realism(flat_a, flat_c, mask, thresholds),
        }
        maps.update(
            {
                "a_mean": flat_a.mean(0),
                "a_sample": flat_a[-1],
                "a_values": flat_a[:, mask < 0.5],
                "a_mf": dc.minkowski_curves(flat_a[:: max(1, len(flat_a) // 400)], thresholds),
            }
        )
    return rec, maps


def aggregate(records: list[dict]) -> dict:
    out: dict = {}
    methods = [m for m in ("a", "b", "c") if m in records[0]]
    for m in methods:
        n = np.array([r[m]["n_masked"] for r in records], float)
        mse = np.array([r[m]["mse"] for r in records])
        cov = np.array([r[m]["coverage_68"] for r in records])
        out[m] = {
            "mse_mean_over_maps": float(mse.mean()),
            "coverage_68_pooled": float((cov * n).sum() / n.sum()),
            "coverage_68_range": [float(cov.min()), float(cov.max())],
        }
        if m != "c":
            out[m].update(
                {
                    "negative_fraction_max": float(max(r[m]["negative_fraction"] for r in records)),
                    "ks_vs_c_max": float(max(r[m]["ks_vs_true_model"] for r in records)),
                    "ks_vs_c_median": float(np.median([r[m]["ks_vs_true_model"] for r in records])),
                    "minkowski_inside_band_min": float(
                        min(r[m]["minkowski_inside_band"] for r in records)
                    ),
                    "minkowski_mean_inside_band_min": float(
                        min(r[m]["minkowski_mean_inside_band"] for r in records)
                    ),
                }
            )
        if m in ("a", "c"):
            out[m].update(
                {
                    "rhat_max_masked": float(
                        max(r[m]["convergence_masked"]["rhat_max"] for r in records)
                    ),
                    "rhat_max_all_pixels": float(
                        max(r[m]["convergence_all"]["rhat_max"] for r in records)
                    ),
                    "ess_bulk_min_masked": float(
                        min(r[m]["convergence_masked"]["ess_bulk_min"] for r in records)
                    ),
                    "ess_tail_min_masked": float(
                        min(r[m]["convergence_masked"]["ess_tail_min"] for r in records)
                    ),
                    "divergences": int(sum(r[m]["divergences"] for r in records)),
                    "leapfrog_per_draw_mean": float(
                        np.mean([r[m]["leapfrog_per_draw"] for r in records])
                    ),
                    "seconds_nuts_total": float(sum(r[m]["seconds_nuts"] for r in records)),
                }
            )
    mse_c = sum(r["c"]["mse"] for r in records)
    out["mse_ratio_b_over_c"] = sum(r["b"]["mse"] for r in records) / mse_c
    out["true_model_split_floor"] = {
        "ks_max": float(max(r["c"]["split_chains_floor"]["ks_vs_true_model"] for r in records)),
        "minkowski_inside_band_min": float(
            min(r["c"]["split_chains_floor"]["minkowski_inside_band"] for r in records)
        ),
    }
    for kind in ("point", "strip"):
        sel = [r for r in records if r["mask"] == kind]
        if sel:
            out[f"mse_ratio_b_over_c_{kind}"] = sum(r["b"]["mse"] for r in sel) / sum(
                r["c"]["mse"] for r in sel
            )
            if "a" in sel[0]:
                out[f"mse_ratio_a_over_c_{kind}"] = sum(r["a"]["mse"] for r in sel) / sum(
                    r["c"]["mse"] for r in sel
                )
    if "a" in out:
        a, c, b = out["a"], out["c"], out["b"]
        out["mse_ratio_a_over_c"] = sum(r["a"]["mse"] for r in records) / mse_c
        gap = 100 * abs(a["coverage_68_pooled"] - c["coverage_68_pooled"])
        out["checks"] = {
            "mse_ratio_a_over_c<=1.10": out["mse_ratio_a_over_c"] <= TARGETS["mse_ratio_a_over_c_max"],
            "coverage_gap_points<=5": gap <= TARGETS["coverage_gap_max_points"],
            "coverage_gap_points": gap,
            "no_negative_intensities_a": a["negative_fraction_max"] == 0.0,
            "ks_a_vs_c<=0.05": a["ks_vs_c_max"] <= TARGETS["ks_a_vs_c_max"],
            "minkowski_a_inside_c_band": a["minkowski_mean_inside_band_min"] == 1.0
            and a["minkowski_inside_band_min"] >= 0.85,
            "b_fails_negativity": b["negative_fraction_max"] > 0.0,
            "b_fails_ks": b["ks_vs_c_max"] > TARGETS["ks_a_vs_c_max"],
            "b_fails_minkowski": not (
                b["minkowski_mean_inside_band_min"] == 1.0 and b["minkowski_inside_band_min"] >= 0.85
            ),
            "true_model_converged_rhat<1.01_masked": c["rhat_max_masked"] < 1.01,
        }
    return out


#: the panels of a map figure: array key -> title
PANELS = {"truth": "truth", "data": "data", "a_mean": "(a) learned mean", "a_sample": "(a) learned sample",
          "b_mean": "(b) Wiener mean", "b_sample": "(b) constrained real.",
          "c_mean": "(c) true-model mean", "c_sample": "(c) true-model sample"}


def map_figure(path: Path, panels: dict, title: str) -> str:
    """One row of panels on the truth's colour scale, square-root stretched (dust is a few bright
    clumps on a faint web: a linear scale leaves the web, and the masked region, black)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    keys = [k for k in PANELS if k in panels]
    fig, axes = plt.subplots(1, len(keys), figsize=(2.6 * len(keys), 2.9))
    norm = PowerNorm(0.5, vmin=0.0, vmax=float(np.nanmax(panels["truth"])))
    for ax, key in zip(axes, keys):
        im = ax.imshow(panels[key], origin="lower", cmap="inferno", norm=norm)
        ax.contour(panels["mask"], [0.5], colors="c", linewidths=0.8)
        ax.set_title(PANELS[key], fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    # every panel shares the truth's colour scale: one bar, in dust-toy's intensity units
    bar = fig.colorbar(im, ax=list(axes), fraction=0.012, pad=0.01)
    bar.set_label(r"intensity $I / \langle I \rangle$ (square-root scale)", fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def figures(out: Path, all_maps: list[dict], records: list[dict], thresholds: np.ndarray) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for j in [k for k in range(len(all_maps)) if k < 2]:
        panels = {k: np.asarray(all_maps[j][k]) for k in (*PANELS, "mask") if k in all_maps[j]}
        title = f"map {records[j]['index']} ({records[j]['mask']} mask)"
        # the panels travel with the figure, so it can be redrawn without sampling (--replot)
        np.savez_compressed(out / f"dust_inpainting_map{j}.npz", title=np.array(title), **panels)
        written.append(map_figure(out / f"dust_inpainting_map{j}.png", panels, title))
    # masked-pixel histograms and Minkowski curves of the first map of each mask type
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for row, j in enumerate([k for k in range(min(2, len(all_maps)))]):
        m = all_maps[j]
        bins = np.linspace(
            min(-1.0, np.percentile(m["b_values"], 0.5)), np.percentile(m["c_values"], 99.8), 60
        )
        ax = axes[row, 0]
        for key, label in (
            ("c_values", "(c) true model"),
            ("b_values", "(b) Gaussian CR"),
            ("a_values", "(a) learned"),
        ):
            if key in m:
                ax.hist(m[key].ravel(), bins, density=True, histtype="step", label=label)
        ax.axvline(0, color="k", lw=0.5)
        ax.set(
            xlabel="I in masked pixels",
            yscale="log",
            title=f"map {records[j]['index']} ({records[j]['mask']})",
        )
        ax.legend(fontsize=7)
        for v in range(3):
            ax = axes[row, v + 1]
            lo, hi = np.quantile(m["c_mf"][:, v], [0.025, 0.975], axis=0)
            ax.fill_between(THRESHOLDS_G, lo, hi, color="0.8", label="(c) 95 % band")
            ax.plot(THRESHOLDS_G, m["b_mf"][:, v].mean(0), "C1", label="(b) mean")
            if "a_mf" in m:
                ax.plot(THRESHOLDS_G, m["a_mf"][:, v].mean(0), "C2", label="(a) mean")
            ax.set(xlabel="threshold (g units)", title=f"V{v}")
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "dust_inpainting_realism.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(str(path))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    idx = np.arange(len(records))
    for k, (m, label) in enumerate(
        (("a", "(a) learned"), ("b", "(b) Gaussian"), ("c", "(c) true model"))
    ):
        if m in records[0]:
            ax.bar(idx + 0.27 * (k - 1), [r[m]["mse"] for r in records], 0.27, label=label)
    ax.set_xticks(idx, [f"{r['index']}{r['mask'][0]}" for r in records])
    ax.set(ylabel="masked-pixel MSE of the mean", title="per map (p: point sources, s: strip)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "dust_inpainting_mse.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(str(path))
    return written


def _load_prior(args):
    if args.prior == "none":
        return None
    import bayessky

    prior = bayessky.load_prior(args.prior, device=args.device)
    shape = tuple(prior.net.shape)
    if shape[-2:] != (args.size, args.size):
        raise SystemExit(f"--prior: the prior models {shape[-2:]} maps, --size is {args.size}")
    return prior


def _setup(args) -> tuple:
    """What every map needs: the learned prior (or None), the exact spectrum, the Minkowski levels."""
    thresholds = np.exp(dust_toy.AMPLITUDE * THRESHOLDS_G - dust_toy.OFFSET)
    return _load_prior(args), dust_toy.intensity_spectrum(args.size), thresholds


def _map_state(args) -> tuple:
    return (args, *_setup(args))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--prior", default="dust-glow-64", help="learned prior (name or folder); 'none' skips (a)"
    )
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n-maps", type=int, default=10)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=500, help="(a) warm-up iterations per chain")
    p.add_argument("--samples", type=int, default=1000, help="(a) draws per chain")
    p.add_argument("--warmup-true", type=int, default=500, help="(c) warm-up iterations per chain")
    p.add_argument("--samples-true", type=int, default=1000, help="(c) draws per chain")
    p.add_argument("--max-tree-depth", type=int, default=10)
    p.add_argument("--n-cr", type=int, default=1000, help="(b) constrained realisations per map")
    p.add_argument("--seed", type=int, default=100_000, help="first held-out map seed")
    dc.add_run_options(p)
    p.add_argument("--reference-cache", help="folder caching (c)'s true-model draws per map "
                   "(reused by later runs with the same map, chains and iterations)")
    p.add_argument("--out", default="benchmarks/results/dust_inpainting")
    p.add_argument("--replot", metavar="DIR", help="only redraw the map figures from DIR's "
                   "dust_inpainting_map*.npz (written by an earlier run) into DIR")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.replot:
        written = []
        for path in sorted(Path(args.replot).glob("dust_inpainting_map*.npz")):
            with np.load(path) as z:
                panels = {k: z[k] for k in z.files if k != "title"}
                written.append(map_figure(path.with_suffix(".png"), panels, str(z["title"])))
        print(json.dumps({"figures": written}))
        return {"figures": written}
    out.mkdir(parents=True, exist_ok=True)
    state = _map_state(args)
    _, prior, spectrum, thresholds = state
    t0 = time.perf_counter()
    records, all_maps = [], []
    for i, (rec, maps) in enumerate(dc.map_results(run_map, _map_state, args, args.n_maps, state)):
        records.append(rec)
        all_maps.append(maps)
        line = {k: round(rec[k]["mse"], 4) for k in ("a", "b", "c") if k in rec}
        print(
            f"map {i} ({rec['mask']}): mse {line}; (c) rhat "
            f"{rec['c']['convergence_masked']['rhat_max']:.4f} "
            f"ess {rec['c']['convergence_masked']['ess_bulk_min']:.0f}; {time.perf_counter() - t0:.0f}s",
            file=sys.stderr,
            flush=True,
        )
    result = {
        "benchmark": "dust_inpainting",
        "family": dust_toy.VERSION,
        "size": args.size,
        "n_maps": args.n_maps,
        "prior": args.prior,
        "prior_card": None
        if prior is None
        else {k: prior.card.get(k) for k in ("architecture", "data", "metrics") if k in prior.card},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "targets": TARGETS,
        "summary": aggregate(records),
        "maps": records,
        "seconds_total": time.perf_counter() - t0,
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "commit": dc.git_commit(),
    }
    result["figures"] = figures(out, all_maps, records, thresholds)
    text = json.dumps(result, indent=1, default=float)
    (out / "dust_inpainting.json").write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main()
