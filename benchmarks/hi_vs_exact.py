"""Learned field-level likelihoods of hi-toy-v1 maps judged against the EXACT posterior.

hi-toy-v1 (the specification in ``bayessky.families.hi_toy``) has an exact likelihood
p(map | Omega_m, sigma_8), so the posterior a learned conditional density (a conditional Glow,
the MAF baseline) gives can be compared with the exact one on the same maps, same prior and same
grid. Every posterior is the one users get: the packaged model ``bayessky.models.hi_parameters``
(``bayessky run hi_parameters``) run by the public engines (``bayessky.infer.grid``,
``bayessky.infer.nuts``); this script only times and checks it.

1. ``--n-maps`` held-out maps: truths from the prior box with ``numpy.random.default_rng(seed)``
   (``hi_toy.sample_prior``), maps with ``hi_toy.sample(..., seed=seed + 1)``; seeds >= 100000 are
   never used in training (``examples/train_hi_cglow.py`` uses 1000/2000/3000).
2. Grid posterior on the ``--grid`` x ``--grid`` cell-centre grid over the prior box
   (``hi_parameters.grid``; uniform prior, equal cells): ``bayessky.infer.grid`` on
   ``hi_parameters.model`` for the stack of maps (one posterior per map, ``--chunk`` grid points
   per model call), ``likelihood="exact"`` (maps in float64) and ``likelihood="flow"`` with each
   prior (maps in the prior's dtype, as ``bayessky run`` passes them);
   ``log w_j = log p(theta_j) + log p(map | theta_j) - logsumexp``.
3. Per posterior set: posterior-mean RMSE vs truth per parameter and its ratio to the exact
   posterior's; coverage of 68/95 % marginal central intervals and joint HPD regions (fraction of
   maps whose truth is inside); KL(exact || learned) over grid cells (mean, median, max); the
   shift of the learned posterior mean in units of the exact posterior std.
4. Checks of the machinery: the engine's grid posteriors against references that bypass the
   model and the engine: the exact likelihood evaluated directly for all maps at once
   (``hi_toy.log_likelihood`` on the whole grid, one matrix product) and the learned one on the
   first map (``prior.distribution(context).log_prob(map)`` in ``--chunk``-sized calls); and
   NUTS (``bayessky.infer.nuts`` on the same model) against the grid posterior on ``--nuts-maps``
   maps, exact and learned likelihood: differences of means and stds in units of the grid std
   (the grid std gets the within-cell variance h^2/12 added, the grid quadrature ignores it).

Targets (printed as pass/fail on stderr and stored in the JSON): RMSE ratio <= 1.10 for both
parameters, every coverage within 5 points of nominal, mean KL < 0.1. The exact posterior's own
coverage is reported too: with M maps a coverage fraction has binomial noise sqrt(q(1-q)/M)
(4.7 points at 68 %, 100 maps), so the 5-point band is a loose test at 100 maps.

    python benchmarks/hi_vs_exact.py --prior models/hi-cglow-32 --baseline models/hi-maf-32 \
        --n-maps 100 --size 32 --grid 40 --seed 100000 --out runs/hi_vs_exact

JSON on stdout and in ``OUT/hi_vs_exact.json``; figure ``OUT/hi_vs_exact.png``; progress, timings
and the pass/fail lines on stderr.

Cost (2 busy CPU cores, 32 x 32 maps, hi-cglow-32): the exact grid through the model 7 s for 100
maps at ``--grid 40`` (the direct reference 0.1 s); the learned grid 0.5 s per map at ``--grid 10``
(100 contexts; it grows with the number of grid points). Earlier, on 16 x 16 maps with a
9k-parameter conditional Glow: Pyro NUTS 500 + 300 draws took 4-5 min per map on the exact
likelihood and 9-33 min per map on the flow. Use ``--nuts-maps 0`` to skip NUTS on a CPU.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _hi_common as hc  # noqa: E402

NAMES = ("Omega_m", "sigma_8")
LEVELS = (0.68, 0.95)
TARGET_RMSE_RATIO = 1.10
TARGET_COVERAGE_POINTS = 0.05
TARGET_MEAN_KL = 0.1


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_maps(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out maps (n, size, size) float64 and truths (n, 2), reproducible from ``seed``."""
    from bayessky.families import hi_toy

    om, s8 = hi_toy.sample_prior(n, seed)
    maps = hi_toy.sample(n, om, s8, size=size, seed=seed + 1)
    return maps, np.stack([om, s8], -1)


def exact_loglik(maps: torch.Tensor, axes: dict[str, np.ndarray]) -> np.ndarray:
    """Reference: exact log p(map_m | theta_ij), (M, n_1, n_2), float64, one matrix product for all
    maps (the family's likelihood called directly, without the model or an engine)."""
    from bayessky.families import hi_toy

    om, s8 = np.meshgrid(axes["Omega_m"], axes["sigma_8"], indexing="ij")
    om_t = torch.as_tensor(om.reshape(-1), dtype=torch.float64, device=maps.device)
    s8_t = torch.as_tensor(s8.reshape(-1), dtype=torch.float64, device=maps.device)
    ll = hi_toy.log_likelihood(maps.to(torch.float64), om_t, s8_t)  # (G, M)
    return ll.T.reshape(len(maps), *om.shape).cpu().numpy()


def flow_loglik(prior, maps: torch.Tensor, axes: dict[str, np.ndarray], chunk: int) -> np.ndarray:
    """Reference: learned log p(map_m | theta_ij), (M, n_1, n_2), the prior's density called
    directly (no model, no engine), each map against ``chunk`` contexts per call."""
    om, s8 = np.meshgrid(axes["Omega_m"], axes["sigma_8"], indexing="ij")
    ctx = {k: torch.as_tensor(v.reshape(-1), dtype=prior.dtype, device=prior.device)
           for k, v in zip(NAMES, (om, s8))}
    g = om.size
    out = np.empty((len(maps), g))
    with torch.no_grad():
        for m in range(len(maps)):
            x = maps[m].to(device=prior.device, dtype=prior.dtype)
            for lo in range(0, g, chunk):
                d = prior.distribution({k: v[lo:lo + chunk] for k, v in ctx.items()})
                out[m, lo:lo + chunk] = d.log_prob(x).double().cpu().numpy()
    return out.reshape(len(maps), *om.shape)


def summarise(axes, log_w, truth, log_w_exact=None, exact_summary=None) -> dict:
    """Metrics of one posterior set (see the module docstring)."""
    s = hc.grid_summary(axes, log_w, truth, LEVELS)
    m = len(truth)
    res = {"rmse": {}, "mean_posterior_std": {}, "coverage_interval": {}, "coverage_hpd": {}}
    for i, k in enumerate(NAMES):
        res["rmse"][k] = hc.rmse(s["mean"][k], truth[:, i])
        res["mean_posterior_std"][k] = float(np.mean(s["std"][k]))
        res["coverage_interval"][k] = {str(q): hc.coverage(s["in_interval"][k][q]) for q in LEVELS}
    res["coverage_hpd"] = {str(q): hc.coverage(s["in_hpd"][q]) for q in LEVELS}
    res["coverage_binomial_se"] = {str(q): hc.binomial_se(q, m) for q in LEVELS}
    covs = [(q, res["coverage_hpd"][str(q)]) for q in LEVELS]
    covs += [(q, res["coverage_interval"][k][str(q)]) for q in LEVELS for k in NAMES]
    res["coverage_within_5_points"] = all(abs(c - q) <= TARGET_COVERAGE_POINTS for q, c in covs)
    if log_w_exact is not None:
        kl = hc.discrete_kl(log_w_exact, log_w)
        kl_rev = hc.discrete_kl(log_w, log_w_exact)
        res["kl_exact_learned"] = {"mean": float(kl.mean()), "median": float(np.median(kl)),
                                   "p90": float(np.percentile(kl, 90)), "max": float(kl.max())}
        res["kl_learned_exact_mean"] = float(kl_rev.mean())
        res["rmse_ratio"] = {k: res["rmse"][k] / exact_summary["rmse"][k] for k in NAMES}
        res["std_ratio"] = {k: res["mean_posterior_std"][k] / exact_summary["mean_posterior_std"][k]
                            for k in NAMES}
        ex = exact_summary["_s"]
        shift = {k: (np.asarray(s["mean"][k]) - ex["mean"][k]) / ex["std"][k] for k in NAMES}
        res["mean_shift_in_exact_std"] = {
            k: {"mean_abs": float(np.mean(np.abs(shift[k]))), "mean_signed": float(np.mean(shift[k])),
                "rms": float(np.sqrt(np.mean(shift[k] ** 2)))}
            for k in NAMES}
        # the maps whose learned mean sits farthest from the exact one (either parameter), with
        # their truth and the exact mean: are they the ones at the edge of the prior box?
        worst = np.argsort(-np.max(np.abs(np.stack([shift[k] for k in NAMES])), axis=0))[:5]
        res["worst_maps"] = [{"map": int(j), "truth": [float(t) for t in truth[j]],
                              "exact_mean": [float(ex["mean"][k][j]) for k in NAMES],
                              "shift_in_exact_std": [float(shift[k][j]) for k in NAMES]} for j in worst]
        res["targets"] = targets(res)
    res["_s"] = s
    return res


def targets(res: dict) -> dict:
    out = {}
    for k in NAMES:
        r = res["rmse_ratio"][k]
        out[f"rmse_ratio_{k}<={TARGET_RMSE_RATIO}"] = {"value": r, "pass": bool(r <= TARGET_RMSE_RATIO)}
    for q in LEVELS:
        for k in NAMES:
            c = res["coverage_interval"][k][str(q)]
            ok = bool(abs(c - q) <= TARGET_COVERAGE_POINTS)
            out[f"coverage_interval_{k}_{q}"] = {"value": c, "pass": ok}
        c = res["coverage_hpd"][str(q)]
        out[f"coverage_hpd_{q}"] = {"value": c, "pass": bool(abs(c - q) <= TARGET_COVERAGE_POINTS)}
    kl = res["kl_exact_learned"]["mean"]
    out[f"mean_kl<{TARGET_MEAN_KL}"] = {"value": kl, "pass": bool(kl < TARGET_MEAN_KL)}
    out["all_pass"] = all(v["pass"] for v in out.values())
    return out


def model_options(prior_path: str | None) -> dict:
    """Options of ``hi_parameters.model``: the exact (``prior_path`` None) or a learned likelihood."""
    return {"likelihood": "exact"} if prior_path is None else {"likelihood": "flow", "flow": prior_path}


def model_grid(maps: torch.Tensor, axes, chunk: int, prior_path: str | None) -> np.ndarray:
    """Normalised log weights (M, n_1, n_2) of ``bayessky.infer.grid`` on ``hi_parameters.model``."""
    from bayessky.infer import grid
    from bayessky.models import hi_parameters

    post = grid(hi_parameters.model, maps, stack=True, chunk_size=chunk,
                grid={k: torch.as_tensor(v) for k, v in axes.items()}, **model_options(prior_path))
    return hc.normalise_log_weights(post.log_prior + post.log_likelihood)


def reference_check(log_w_model: np.ndarray, log_w_direct: np.ndarray, likelihood: str) -> dict:
    """The model's grid posteriors vs the direct evaluation, on the maps both have."""
    m = len(log_w_direct)
    lw = log_w_model[:m]
    mask = log_w_direct > np.log(1e-8)
    kl = hc.discrete_kl(log_w_direct, lw)
    return {"likelihood": likelihood, "n_maps": int(m),
            "max_abs_dlogw_where_w>1e-8": float(np.max(np.abs(lw - log_w_direct)[mask])),
            "max_kl_direct_model": float(kl.max())}


def nuts_check(prior_path, maps, grid_summary_, axes, idx, args) -> list[dict]:
    """NUTS on ``hi_parameters.model`` vs the grid posterior for maps ``idx``."""
    import arviz as az

    from bayessky.infer import nuts
    from bayessky.models import hi_parameters

    kw = model_options(prior_path)
    h = {k: float(v[1] - v[0]) for k, v in axes.items()}
    rows = []
    for m in idx:
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            idata = nuts(hi_parameters.model, maps[m], num_samples=args.nuts_samples,
                         warmup_steps=args.nuts_warmup, progress_bar=False, seed=args.seed + m, **kw)
        dt = time.perf_counter() - t0
        row = {"map": int(m), "likelihood": kw["likelihood"], "seconds": dt,
               "warnings": [str(w.message)[:160] for w in caught]}
        for k in NAMES:
            draws = np.asarray(idata.posterior[k].values, float)
            ess = float(az.ess(draws))  # (chain, draw) array -> bulk ESS
            gm = float(grid_summary_["mean"][k][m])
            gs = math.sqrt(float(grid_summary_["std"][k][m]) ** 2 + h[k] ** 2 / 12)
            nm, ns = float(draws.mean()), float(draws.std())
            row[k] = {"nuts_mean": nm, "nuts_std": ns, "grid_mean": gm, "grid_std": gs, "ess_bulk": ess,
                      "dmean_in_grid_std": (nm - gm) / gs, "std_ratio": ns / gs,
                      "dmean_in_mcse": (nm - gm) / (ns / math.sqrt(max(ess, 1.0)))}
        row["agree"] = all(abs(row[k]["dmean_in_grid_std"]) < 0.25 and abs(row[k]["std_ratio"] - 1) < 0.2
                           for k in NAMES)
        rows.append(row)
        log(f"  nuts map {m} ({kw['likelihood']}): {dt:.1f}s, " + ", ".join(
            f"{k} dmean {row[k]['dmean_in_grid_std']:+.3f} sd, std ratio {row[k]['std_ratio']:.3f}"
            for k in NAMES))
    return rows


def figure(path: Path, axes, truth, exact: dict, learned: dict[str, dict], log_w: dict[str, np.ndarray],
           examples: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 3, figsize=(13, 8.2))
    for i, k in enumerate(NAMES):
        a = ax[0, i]
        lo, hi = hc.BOX[k]
        a.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        for j, (name, res) in enumerate(learned.items()):
            a.scatter(exact["_s"]["mean"][k], res["_s"]["mean"][k], s=9, color=f"C{j}",
                      label=f"{name} (RMSE ratio {res['rmse_ratio'][k]:.3f})")
        a.set_xlabel(f"exact posterior mean {k}")
        a.set_ylabel(f"learned posterior mean {k}")
        a.legend(frameon=False, fontsize=8)
    a = ax[0, 2]
    for j, name in enumerate(learned):
        kl = hc.discrete_kl(log_w["exact"], log_w[name])
        a.hist(np.log10(np.maximum(kl, 1e-4)), bins=25, histtype="step", color=f"C{j}",
               label=f"{name}: mean {kl.mean():.3f}, median {np.median(kl):.3f}")
    a.axvline(np.log10(TARGET_MEAN_KL), color="k", ls=":", lw=1)
    a.set_xlabel("log10 KL(exact || learned) per map [nats]")
    a.set_ylabel("maps")
    a.legend(frameon=False, fontsize=8)
    om, s8 = axes["Omega_m"], axes["sigma_8"]
    for col, m in enumerate(examples[:3]):
        a = ax[1, col]
        for j, name in enumerate(["exact"] + list(learned)):
            w = np.exp(log_w[name][m])
            t = [float(hc_threshold(w, q)) for q in (0.95, 0.68)]
            color = "k" if name == "exact" else f"C{j - 1}"
            if t[0] < t[1]:
                a.contour(om, s8, w.T, levels=t, colors=[color], linewidths=[1.0, 1.8])
            a.plot([], [], color=color, label=name)
        a.plot(*truth[m], "r*", ms=10, label="truth")
        a.set_xlim(*hc.BOX["Omega_m"])
        a.set_ylim(*hc.BOX["sigma_8"])
        a.set_xlabel("Omega_m")
        a.set_ylabel("sigma_8")
        a.set_title(f"map {m}: 68/95 % HPD", fontsize=9)
        a.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def hc_threshold(w: np.ndarray, q: float) -> float:
    """Weight level whose superlevel set holds mass >= q (for contour drawing)."""
    srt = np.sort(w.ravel())[::-1]
    cum = np.cumsum(srt)
    return srt[min(int(np.searchsorted(cum, q * cum[-1])), len(srt) - 1)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prior", required=True, help="learned prior (name or folder), the main one")
    p.add_argument("--baseline", action="append", default=[], help="further learned priors (repeatable)")
    p.add_argument("--n-maps", type=int, default=100)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--grid", type=int, default=40)
    p.add_argument("--seed", type=int, default=100_000)
    p.add_argument("--out", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--chunk", type=int, default=None, help="grid points per model call "
                   "(default: all on cuda, 400 on cpu)")
    p.add_argument("--nuts-maps", type=int, default=3)
    p.add_argument("--nuts-samples", type=int, default=500)
    p.add_argument("--nuts-warmup", type=int, default=300)
    p.add_argument("--no-reference-check", "--no-engine-check", dest="no_reference_check",
                   action="store_true", help="skip the direct-evaluation references (section 4)")
    args = p.parse_args(argv)
    if args.seed < 100_000:
        raise SystemExit("--seed: must be >= 100000 (lower seeds may overlap training data)")

    from bayessky.models import hi_parameters
    from bayessky.priors import resolve_prior

    dev = torch.device(args.device)
    chunk = args.chunk or (args.grid**2 if dev.type == "cuda" else 400)
    torch.set_grad_enabled(True)
    axes = {k: v.numpy() for k, v in hi_parameters.grid(args.grid).items()}
    for k in NAMES:  # the model's grid must be the cell centres the metrics assume
        assert np.allclose(axes[k], hc.cell_axes(args.grid)[k], atol=1e-12), k

    t0 = time.perf_counter()
    maps_np, truth = make_maps(args.n_maps, args.size, args.seed)
    maps = torch.as_tensor(maps_np, device=dev)
    log(f"{args.n_maps} maps {args.size}^2 in {time.perf_counter() - t0:.2f}s")

    t0 = time.perf_counter()
    log_w = {"exact": model_grid(maps, axes, chunk, None)}
    t_exact = time.perf_counter() - t0
    exact = summarise(axes, log_w["exact"], truth)
    log(f"exact grid: {t_exact:.2f}s; RMSE " + ", ".join(f"{k} {exact['rmse'][k]:.4f}" for k in NAMES))

    priors = [args.prior] + list(args.baseline)
    learned, timing, cards, loaded = {}, {"exact_grid_s": t_exact}, {}, {}
    for spec in priors:
        path = str(resolve_prior(spec))
        name = Path(path).name
        # the object the model itself uses (loaded once, cached by device)
        prior = hi_parameters.learned_likelihood(path, str(maps.device))
        loaded[name] = (path, prior)
        shape = tuple(prior.card.get("architecture", {}).get("shape", ()))
        if shape and shape[-1] != args.size:
            raise SystemExit(f"--prior: {name} models {shape} maps, not --size {args.size}")
        if list(prior.context_names or []) != list(NAMES):
            raise SystemExit(f"--prior: {name} is conditioned on {prior.context_names}, "
                             f"expected {list(NAMES)}")
        cards[name] = {"path": path, "kind": prior.kind, "metrics": prior.card.get("metrics"),
                       "dtype": str(prior.dtype).removeprefix("torch."),
                       "n_parameters": sum(q.numel() for q in prior.net.parameters())}
        t0 = time.perf_counter()
        log_w[name] = model_grid(maps.to(prior.dtype), axes, chunk, path)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        timing[f"{name}_grid_s"] = dt
        timing[f"{name}_per_map_s"] = dt / args.n_maps
        learned[name] = summarise(axes, log_w[name], truth, log_w["exact"], exact)
        r = learned[name]
        log(f"{name}: grid {dt:.1f}s ({dt / args.n_maps:.3f}s/map, {args.grid**2} contexts); RMSE ratio "
            + ", ".join(f"{k} {r['rmse_ratio'][k]:.3f}" for k in NAMES)
            + f"; KL mean {r['kl_exact_learned']['mean']:.3f} median {r['kl_exact_learned']['median']:.3f}")
        for key, v in r["targets"].items():
            if key != "all_pass":
                log(f"  [{'PASS' if v['pass'] else 'FAIL'}] {key}: {v['value']:.4f}")
        log(f"  => {name}: {'ALL TARGETS PASS' if r['targets']['all_pass'] else 'SOME TARGETS FAIL'}")

    main_name = Path(str(resolve_prior(args.prior))).name
    main_path, main_prior = loaded[main_name]
    checks = {}
    if not args.no_reference_check:
        checks["model_vs_direct"] = []
        refs = (("exact", lambda: exact_loglik(maps, axes)),
                ("flow", lambda: flow_loglik(main_prior, maps[:1], axes, chunk)))
        for label, direct in refs:
            t0 = time.perf_counter()
            try:
                ref = hc.normalise_log_weights(direct())
                c = reference_check(log_w["exact" if label == "exact" else main_name], ref, label)
            except Exception as err:  # a failed check must not hide the grid results above
                c = {"likelihood": label, "error": f"{type(err).__name__}: {err}"}
                log(f"direct reference check FAILED ({label}): {c['error'][:200]}")
            else:
                c["direct_seconds"] = time.perf_counter() - t0
                log(f"model grid vs direct ({label}, {c['n_maps']} maps): max |dlog w| "
                    f"{c['max_abs_dlogw_where_w>1e-8']:.2e}, max KL {c['max_kl_direct_model']:.2e}")
            checks["model_vs_direct"].append(c)
    if args.nuts_maps > 0:
        idx = list(range(min(args.nuts_maps, args.n_maps)))
        t0 = time.perf_counter()
        checks["nuts_vs_grid"] = {}
        runs = (("exact", None, exact["_s"]), (main_name, main_path, learned[main_name]["_s"]))
        for label, pp, summ in runs:
            try:
                rows = nuts_check(pp, maps, summ, axes, idx, args)
                dm = [abs(r[k]["dmean_in_grid_std"]) for r in rows for k in NAMES]
                ds = [abs(r[k]["std_ratio"] - 1) for r in rows for k in NAMES]
                checks["nuts_vs_grid"][label] = {
                    "maps": rows, "all_agree": all(r["agree"] for r in rows),
                    "max_abs_dmean_in_grid_std": max(dm), "max_abs_std_ratio_minus_1": max(ds)}
            except Exception as err:
                checks["nuts_vs_grid"][label] = {"error": f"{type(err).__name__}: {err}"}
                log(f"NUTS check FAILED ({label}): {type(err).__name__}: {str(err)[:200]}")
        checks["nuts_vs_grid"]["criterion"] = "agree: |dmean| < 0.25 grid std and |std ratio - 1| < 0.2"
        timing["nuts_s"] = time.perf_counter() - t0

    kl_main = hc.discrete_kl(log_w["exact"], log_w[main_name])
    examples = [int(i) for i in np.argsort(kl_main)[[len(kl_main) // 2, int(0.9 * (len(kl_main) - 1)),
                                                       len(kl_main) - 1]]]
    result = {
        "benchmark": "hi_vs_exact",
        "model": "bayessky.models.hi_parameters",
        "data": {"family": "hi-toy-v1", "n_maps": args.n_maps, "size": args.size, "seed": args.seed,
                 "grid": args.grid, "grid_kind": "cell centres over the prior box, uniform prior"},
        "priors": cards,
        "exact": {k: v for k, v in exact.items() if k != "_s"},
        "learned": {n: {k: v for k, v in r.items() if k != "_s"} for n, r in learned.items()},
        "checks": checks,
        "timing": timing,
        "examples_in_figure": examples,
        "environment": {"device": str(dev), "chunk": chunk, "torch": torch.__version__,
                        "python": platform.python_version(), "commit": hc.git_commit(),
                        "threads": torch.get_num_threads()},
    }
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        figure(Path(args.out) / "hi_vs_exact.png", axes, truth, exact, learned, log_w, examples)
    print(hc.write_json(result, args.out, "hi_vs_exact.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
