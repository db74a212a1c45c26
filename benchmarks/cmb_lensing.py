"""Joint CMB + lensing + dust reconstruction and CMBLensing.jl-style timings.

Part 1 (accuracy). One simulated patch from the packaged model ``bayessky.models.cmb_lensing``
(default 64 x 64 pixels of 2', channels 90/150/220 GHz at 3 uK-arcmin, 1.5' beams, dust-toy-v1
dust at 300 uK_CMB at 353 GHz). The joint MAP of (f, phi, dust) is found with
``bayessky.infer.map`` (L-BFGS from zero fields) under several dust priors:

- ``gaussian``: a Gaussian field with the exact mean and spectrum of dust-toy intensity;
- ``learned``: a flow prior given by ``--dust-prior`` (sampled in its latent space);
- ``lognormal``: the true dust-toy-v1 generative model (the oracle a learned prior aims at);
- ``gaussian_nolens``: the Gaussian-dust model with phi fixed to 0 (the "no delensing" baseline).

Per ell bin it reports the cross-correlation coefficient of the reconstructed and true phi,
r = C^{x} / sqrt(C^{rec} C^{true}), and its amplitude C^{x} / C^{true}; the CMB residual power
C^{f_rec - f_true} relative to C_ell^TT (the binned unlensed theory) and to the true map's power;
the dust residual power relative to the true dust power; wall times and -log p at the MAP and at
the truth (a MAP that ends above the truth's value is stuck). Optionally a short NUTS run from
the MAP (``--hmc-samples``) reports the adapted step size and trajectory lengths.

Part 2 (speed). CMBLensing.jl's regression benchmark (test/runbenchmarks.jl: 256 x 256, Float32,
3' pixels, temperature) times L, L^dagger, (grad L)^dagger, lnP and grad lnP; the same operations
are timed here with bayessky's spline lensing and the Pyro model (one channel, no dust), side by
side with the Julia reference numbers (13, 13, 85, 65, 240 ms on an unstated CPU; their "L" has
the deflection cached, i.e. our ``remap``).

    python benchmarks/cmb_lensing.py --dust-prior models/dust-glow-64 --out bench-cmbl
    python benchmarks/cmb_lensing.py --n-side 32 --map-steps 300 --timing-n 128   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyro
import pyro.poutine as poutine
import torch

from bayessky.models import cmb_lensing

_HERE = Path(__file__).resolve().parent


def map_estimate(data, steps: int = 2000, init=None, **options):
    """Joint MAP of all fields of the packaged model with ``bayessky.infer.map`` (L-BFGS), started
    at zero fields (``init_strategy="mean"``: f = 0, phi = 0, dust at its mean) unless ``init`` (a
    dict of latent values) is given. Returns (``{"f", "phi", "dust", ...}`` numpy maps, InferenceData)."""
    import bayessky.infer as bi

    pyro.clear_param_store()  # AutoDelta parameters are global: a previous fit must not leak in
    init_strategy = "mean" if init is None else {k: torch.as_tensor(v).clone() for k, v in init.items()}
    idata = bi.map(cmb_lensing.model, torch.as_tensor(data), steps=steps, init_strategy=init_strategy,
                   **options)
    post = idata.posterior
    fields = {k: np.asarray(post[k].values[0, 0]) for k in post.data_vars}
    return fields, idata


# -- metrics -------------------------------------------------------------------------------------------
def ell_edges(geometry) -> np.ndarray:
    """Bin edges in ell: log-spaced from half the fundamental to the axis Nyquist (8 bins)."""
    lo = 0.5 * geometry.k_fundamental
    return np.geomspace(lo * 2.0, geometry.ell_max, 9).round(0)


def binned(geometry, a, b, edges):
    _, p, counts = geometry.power_spectrum(torch.as_tensor(a), edges, torch.as_tensor(b))
    return p.numpy(), counts.numpy()


def theory_binned(geometry, cl_table, edges) -> np.ndarray:
    ell = geometry.k_grid().numpy().ravel()
    c = np.interp(ell, np.arange(len(cl_table)), cl_table)
    idx = np.digitize(ell, edges) - 1
    return np.array([c[idx == i].mean() if (idx == i).any() else np.nan for i in range(len(edges) - 1)])


def metrics(cl, sim: dict, rec: dict, edges) -> dict:
    """Per-bin r_phi, phi amplitude, CMB and dust residual power ratios for one reconstruction."""
    from bayessky.physics import cmb_spectra

    g = cl.setup(sim["data"].shape[-1], sim["options"]["pixel_size"]).geometry
    out = {}
    if "phi" in rec:
        x, _ = binned(g, rec["phi"], sim["phi"], edges)
        a, _ = binned(g, rec["phi"], rec["phi"], edges)
        t, _ = binned(g, sim["phi"], sim["phi"], edges)
        out["phi_corr"] = (x / np.sqrt(a * t)).tolist()
        out["phi_amplitude"] = (x / t).tolist()
    df = rec["f"] - sim["f"]
    r, _ = binned(g, df, df, edges)
    t, _ = binned(g, sim["f"], sim["f"], edges)
    out["cmb_resid_over_cltt"] = (r / theory_binned(g, cmb_spectra().TT, edges)).tolist()
    out["cmb_resid_over_true_power"] = (r / t).tolist()
    out["cmb_rms_resid_uK"] = float(df.std())
    # lensed-sky residual (what a map-maker without lensing would compare to)
    if "dust" in rec:
        dd = rec["dust"] - sim["dust"]
        r, _ = binned(g, dd, dd, edges)
        dt = sim["dust"] - sim["dust"].mean()
        t, _ = binned(g, dt, dt, edges)
        out["dust_resid_over_dust_power"] = (r / t).tolist()
        out["dust_rms_resid_uK"] = float(dd.std())
        out["dust_rms_true_uK"] = float(sim["dust"].std())
    return out


def neg_log_joint(cl, values: dict, data, **options) -> float:
    vals = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in values.items()}
    with torch.no_grad():
        tr = poutine.trace(poutine.condition(cl.model, vals)).get_trace(torch.as_tensor(data), **options)
        return -float(tr.log_prob_sum())


# -- part 1: reconstructions -----------------------------------------------------------------------------
def run_map(cl, sim, name, options, steps, edges):
    t0 = time.perf_counter()
    rec, idata = map_estimate(sim["data"], steps=steps, **options)
    wall = time.perf_counter() - t0
    loss = idata.optimization["loss"].values
    latent = {k: rec[k] for k in ("f_w", "phi_w", "dust_latent") if k in rec}
    res = {"options": {k: str(v) for k, v in options.items()}, "wall_s": wall, "n_evals": int(len(loss)),
           "ms_per_eval": 1e3 * wall / len(loss), "neg_log_joint_map": neg_log_joint(cl, latent, sim["data"],
                                                                                 **options)}
    try:
        truth = cl.truth_latents(sim, dust_prior=options.get("dust_prior", "gaussian"),
                                 whiten=options.get("whiten", "prior"))
        if options.get("lensing", True) is False:
            truth.pop("phi_w")
        res["neg_log_joint_truth"] = neg_log_joint(cl, truth, sim["data"], **options)
    except ValueError as err:  # e.g. a non-Glow learned prior has no forward pass to latents
        res["neg_log_joint_truth"] = None
        res["truth_note"] = str(err)
    res.update(metrics(cl, sim, rec, edges))
    print(f"[{name}] {wall:.1f} s, {len(loss)} evals, -log p: MAP {res['neg_log_joint_map']:.1f} "
          f"truth {res['neg_log_joint_truth']}", file=sys.stderr)
    return res, rec


def run_hmc(cl, sim, options, init, num_samples, warmup, max_tree_depth, edges):
    import bayessky.infer as bi

    t0 = time.perf_counter()
    idata = bi.nuts(cl.model, torch.as_tensor(sim["data"]), num_samples=num_samples, warmup_steps=warmup,
                    max_tree_depth=max_tree_depth, init_strategy={k: torch.as_tensor(v).clone()
                                                                  for k, v in init.items()},
                    progress_bar=False, **options)
    wall = time.perf_counter() - t0
    ss, post = idata.sample_stats, idata.posterior
    mean = {k: post[k].values[0].mean(0) for k in ("f", "phi", "dust") if k in post}
    res = {"wall_s": wall, "num_samples": num_samples, "warmup_steps": warmup,
           "max_tree_depth": max_tree_depth,
           "step_size": float(ss["step_size"].values.ravel()[-1]),
           "mean_leapfrog_steps": float(ss["n_steps"].values.mean()),
           "acceptance_rate": float(ss["acceptance_rate"].values.mean()),
           "divergences": int(ss["diverging"].values.sum())}
    res["posterior_mean"] = metrics(cl, sim, mean, edges)
    return res, mean


# -- part 2: timings ---------------------------------------------------------------------------------------
def _time(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, FFT plans)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts))


def timings(cl, n: int, pixel: float, repeats: int, dtype=torch.float32) -> dict:
    from bayessky.physics.lensing import deflection, lens, remap

    sim = cl.simulate(n, pixel, frequencies=(150.0,), dust_amplitude=1.0, seed=0, dust=False)
    opts = dict(frequencies=(150.0,), pixel_size=pixel, dust_prior="none", whiten="prior")
    S = cl.setup(n, pixel, (150.0,), dtype=dtype)
    g = S.geometry
    f = torch.as_tensor(sim["f"], dtype=dtype)
    phi = torch.as_tensor(sim["phi"], dtype=dtype)
    d = deflection(phi, g)
    v = torch.randn(n, n, dtype=dtype)
    data = torch.as_tensor(sim["data"], dtype=dtype)
    w = {"f_w": torch.randn(n, n, dtype=dtype), "phi_w": torch.randn(n, n, dtype=dtype)}

    def adjoint():
        fr = f.detach().requires_grad_(True)
        torch.autograd.grad(remap(fr, d, g), fr, v)

    def grad_l_phi():
        p = phi.detach().requires_grad_(True)
        torch.autograd.grad(torch.linalg.norm(lens(f, p, g)), p)

    def lnp():
        with torch.no_grad():
            poutine.trace(poutine.condition(cl.model, w)).get_trace(data, **opts).log_prob_sum()

    def grad_lnp():
        ww = {k: t.detach().requires_grad_(True) for k, t in w.items()}
        lp = poutine.trace(poutine.condition(cl.model, ww)).get_trace(data, **opts).log_prob_sum()
        torch.autograd.grad(lp, list(ww.values()))

    with torch.no_grad():
        ours = {"L (remap, deflection cached)": _time(lambda: remap(f, d, g), repeats),
                "L (lens incl. deflection)": _time(lambda: lens(f, phi, g), repeats)}
    ours["L^dagger (VJP in f, incl. forward)"] = _time(adjoint, repeats)
    ours["(grad L)^dagger: d||L(phi) f||/d phi"] = _time(grad_l_phi, repeats)
    ours["lnP (Pyro trace)"] = _time(lnp, repeats)
    ours["grad lnP (f_w, phi_w)"] = _time(grad_lnp, repeats)
    reference = {"L (remap, deflection cached)": 13, "L (lens incl. deflection)": 13 + 25,
                 "L^dagger (VJP in f, incl. forward)": 13, "(grad L)^dagger: d||L(phi) f||/d phi": 85,
                 "lnP (Pyro trace)": 65, "grad lnP (f_w, phi_w)": 240}
    return {"n": n, "pixel_arcmin": pixel, "dtype": str(dtype).replace("torch.", ""),
            "threads": torch.get_num_threads(), "repeats": repeats, "ours_ms": ours,
            "cmblensing_jl_ms": reference,
            "notes": ("CMBLensing.jl numbers are the reference_timing table of test/runbenchmarks.jl "
                      "(spin-0, 256^2, Float32, 3' pixels; LenseFlow lensing, CPU and thread count not "
                      "stated). Their 'Cache L' (25 ms) precomputes the flow; our L includes computing "
                      "the deflection and spline coefficients, so 'L (lens incl. deflection)' is compared "
                      "with Cache L + L. Our L^dagger is a reverse-mode VJP and includes its forward pass. "
                      "Timings here are on a shared, heavily loaded 2-core machine (see machine.load).")}


def model_eval_timing(cl, sim, options, repeats: int) -> dict:
    """ms per log-joint and per gradient of the benchmark model (what each L-BFGS step pays)."""
    data = torch.as_tensor(sim["data"])
    truth = cl.truth_latents(sim, dust_prior="gaussian", whiten=options.get("whiten", "prior"))

    def lnp():
        with torch.no_grad():
            poutine.trace(poutine.condition(cl.model, truth)).get_trace(data, **options).log_prob_sum()

    def grad():
        ww = {k: t.detach().requires_grad_(True) for k, t in truth.items()}
        lp = poutine.trace(poutine.condition(cl.model, ww)).get_trace(data, **options).log_prob_sum()
        torch.autograd.grad(lp, list(ww.values()))

    return {"lnP_ms": _time(lnp, repeats), "grad_lnP_ms": _time(grad, repeats)}


# -- figure --------------------------------------------------------------------------------------------------
def figure(sim, recs: dict, results: dict, edges, path: Path) -> None:
    """Truth and each run's reconstruction of phi, f and dust (one colour scale and bar per row,
    the truth's 1-99 %), and the per-multipole accuracy of every run below."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(recs)
    # (key, row label, colour-bar label, display factor): phi is ~1e-6, shown in units of 1e-6
    rows = [("phi", r"lensing potential $\phi$", r"$\phi$ [$10^{-6}$]", 1e6),
            ("f", r"unlensed CMB $f$", r"$\mu$K", 1.0),
            ("dust", "dust at 353 GHz", r"$\mu$K", 1.0)]
    panels = [("phi_corr", r"$r(\hat\phi, \phi)$"),
              ("cmb_resid_over_cltt", r"$C_\ell(\hat f - f)\,/\,C_\ell^{TT}$"),
              ("dust_resid_over_dust_power", r"$C_\ell(\hat d - d)\,/\,C_\ell^{dd}$")]
    ncol = max(len(names) + 1, len(panels))
    fig = plt.figure(figsize=(2.5 * ncol + 0.8, 2.5 * (len(rows) + 1)))
    # a narrow last column holds each row's colour bar, so no bar covers a panel or a title
    grid = fig.add_gridspec(len(rows) + 1, ncol + 1, width_ratios=[1.0] * ncol + [0.06],
                            wspace=0.12, hspace=0.35)
    for i, (key, label, units, factor) in enumerate(rows):
        truth = factor * np.asarray(sim[key])
        lim = (float(np.percentile(truth, 1)), float(np.percentile(truth, 99)))
        cmap = "RdBu_r" if key != "dust" else "magma"
        for j, name in enumerate(["truth"] + names):
            ax = fig.add_subplot(grid[i, j])
            img = sim[key] if j == 0 else recs[name].get(key)
            if img is not None:
                im = ax.imshow(factor * np.asarray(img), origin="lower", vmin=lim[0], vmax=lim[1], cmap=cmap)
            else:  # e.g. phi of the no-lensing run: fixed to 0, nothing reconstructed
                ax.text(0.5, 0.5, "not reconstructed\n(fixed to 0)", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8)
            if i == 0:
                ax.set_title(name.replace("_", " "), fontsize=9)
            if j == 0:
                ax.set_ylabel(label, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        bar = fig.colorbar(im, cax=fig.add_subplot(grid[i, ncol]))
        bar.set_label(units, fontsize=8)
        bar.ax.tick_params(labelsize=7)
    centres = np.sqrt(edges[1:] * edges[:-1])
    colours = {name: f"C{i}" for i, name in enumerate(names)}  # one colour per run in every panel
    # the accuracy panels get room for their log axes' tick labels between them
    bottom = grid[len(rows), :].subgridspec(1, ncol + 1, width_ratios=[1.0] * ncol + [0.06], wspace=0.45)
    for k, (key, label) in enumerate(panels):
        ax = fig.add_subplot(bottom[0, k])
        for name in names:
            vals = results[name].get(key)
            if vals is not None:
                ax.plot(centres, vals, "o-", ms=3, label=name.replace("_", " "), color=colours[name])
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        if key != "phi_corr":
            ax.set_yscale("log")
        ax.set_xlabel(r"multipole $\ell$", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)  # every panel: not every run has every curve (no phi without lensing)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=_HERE, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "load": list(os.getloadavg()), "commit": commit}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-side", type=int, default=64)
    p.add_argument("--pixel-size", type=float, default=2.0)
    p.add_argument("--frequencies", default="90,150,220")
    p.add_argument("--noise", type=float, default=3.0, help="uK-arcmin, every channel")
    p.add_argument("--beam", type=float, default=1.5, help="FWHM arcmin, every channel")
    p.add_argument("--dust-amplitude", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dust-prior", help="learned dust prior (name or folder); omitted: that run is skipped")
    p.add_argument("--runs", default="gaussian,learned,lognormal,gaussian_nolens")
    p.add_argument("--map-steps", type=int, default=2000)
    p.add_argument("--hmc-samples", type=int, default=0,
                   help="NUTS draws from the Gaussian-dust MAP (0: skip)")
    p.add_argument("--hmc-warmup", type=int, default=30)
    p.add_argument("--hmc-tree-depth", type=int, default=7)
    p.add_argument("--timing-n", type=int, default=256, help="0: skip the CMBLensing.jl-style timings")
    p.add_argument("--timing-pixel", type=float, default=3.0)
    p.add_argument("--timing-repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench-cmb-lensing")
    a = p.parse_args(argv)

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cl = cmb_lensing
    freqs = [float(v) for v in a.frequencies.split(",")]
    sim = cl.simulate(a.n_side, a.pixel_size, freqs, a.beam, a.noise, a.dust_amplitude, seed=a.seed)
    cl.save_simulation(out / "sim.npz", sim)
    base = dict(sim["options"])
    geometry = cl.setup(a.n_side, a.pixel_size).geometry
    edges = ell_edges(geometry)
    configs = {"gaussian": {"dust_prior": "gaussian"}, "lognormal": {"dust_prior": "lognormal"},
               "gaussian_nolens": {"dust_prior": "gaussian", "lensing": False}}
    if a.dust_prior:
        configs["learned"] = {"dust_prior": a.dust_prior}
    wanted = [r for r in a.runs.split(",") if r in configs]
    report = {"benchmark": "cmb_lensing", "machine": machine(),
              "config": {"n_side": a.n_side, "pixel_arcmin": a.pixel_size, "frequencies_GHz": freqs,
                         "noise_uK_arcmin": a.noise, "beam_fwhm_arcmin": a.beam,
                         "dust_amplitude_uK_353": a.dust_amplitude, "seed": a.seed, "map_steps": a.map_steps,
                         "learned_dust_prior": a.dust_prior, "whiten": "prior",
                         "optimizer": "L-BFGS from zero"},
              "ell_bin_edges": edges.tolist(), "ell_bin_centres": np.sqrt(edges[1:] * edges[:-1]).tolist(),
              "truth": {"phi_rms": float(sim["phi"].std()), "f_rms_uK": float(sim["f"].std()),
                        "dust_rms_uK_353": float(sim["dust"].std())},
              "runs": {}}
    if a.dust_prior:
        from bayessky.priors import resolve_prior

        card = json.loads((resolve_prior(a.dust_prior) / "card.json").read_text())
        keys = ("kind", "architecture", "metrics", "data", "training", "note")
        report["config"]["learned_dust_prior_card"] = {k: card.get(k) for k in keys}
    recs = {}
    for name in wanted:
        res, rec = run_map(cl, sim, name, {**base, **configs[name]}, a.map_steps, edges)
        report["runs"][name] = res
        recs[name] = rec
    report["model_eval_ms"] = model_eval_timing(cl, sim, {**base, "dust_prior": "gaussian"}, a.timing_repeats)
    if a.hmc_samples > 0 and "gaussian" in recs:
        init = {k: recs["gaussian"][k] for k in ("f_w", "phi_w", "dust_latent")}
        res, mean = run_hmc(cl, sim, {**base, **configs["gaussian"]}, init, a.hmc_samples, a.hmc_warmup,
                            a.hmc_tree_depth, edges)
        report["hmc_gaussian"] = res
        recs["gaussian_hmc_mean"] = mean
        report["runs"]["gaussian_hmc_mean"] = res["posterior_mean"]
    if a.timing_n:
        report["timing"] = timings(cl, a.timing_n, a.timing_pixel, a.timing_repeats)
    report["machine"]["load_end"] = list(os.getloadavg())
    text = json.dumps(report, indent=1, default=float)
    (out / "cmb_lensing.json").write_text(text)  # before the figure: a plotting error loses no run
    figure(sim, recs, report["runs"], edges, out / "cmb_lensing.png")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
