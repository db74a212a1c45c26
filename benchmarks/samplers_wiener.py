"""Samplers on the 64 x 64 Wiener-filter posterior, one process, one run: bayessky MCLMC / MAMS and
NUTS against BlackJAX MCLMC and NumPyro NUTS.

The posterior and its Pyro / NumPyro models are those of ``benchmarks/nuts_wiener.py`` (GRF prior
with a red spectrum, white noise, no mask; natural pixel parametrisation; float32; every sampler
starts from the same uniform(-2, 2) points). Rows:

* ``bayessky_mclmc`` / ``bayessky_mams``: ``bayessky.infer.mclmc(model, adjusted=False / True,
  jit=True)`` on the Pyro model (the user path: potential from batched traces of the model, all
  chains in one batch, shared step size / L / diagonal preconditioner);
* ``bayessky_nuts``: ``bayessky.infer.nuts(model, backend="fast", jit=True)`` (default chain
  method: forked processes on a multi-core CPU);
* ``blackjax_mclmc``: BlackJAX's unadjusted MCLMC (minimal-norm integrator) tuned by
  ``mclmc_find_L_and_step_size`` with diagonal preconditioning, the chains ``vmap``-ed in one
  ``jit``-compiled program, on a JAX log-density identical to the models';
* ``numpyro_<method>``: NumPyro NUTS (``chain_method`` parallel -- one XLA host device per chain --
  and vectorized).

MCLMC rows take ``--mclmc-steps`` integration steps per chain after a warm-up of a third of that
(BlackJAX's three tuning fractions of 0.1, 0.1 + 1/30 and 0.1 of the steps; bayessky's
``warmup_steps`` the same count), keeping every ``--thin``-th step. Reported for each: wall time
(the first run, compilation included for the JAX rows; ``wall_second_run_s`` a repeat where it
is measured), bulk ESS (ArviZ) min / median over pixels and per second, ESS per 1,000 gradient
evaluations (all chains, warm-up included), and the error of the posterior mean and standard
deviation against the exact Wiener filter, in units of the posterior sd (rms over pixels) and
as the mean relative sd error (the sign shows a bias of the unadjusted samplers).

Run:  OMP_NUM_THREADS=1 nice python benchmarks/samplers_wiener.py [--quick] [--rows a,b,...]
Prints one JSON object (progress lines on stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nuts_wiener as nw  # noqa: E402

ROWS = ("bayessky_mclmc", "bayessky_mams", "bayessky_nuts", "blackjax_mclmc", "numpyro_parallel",
        "numpyro_vectorized")


def _exact(problem):
    spec, _, d, sigma = problem
    mean = np.real(np.fft.ifft2(spec / (spec + sigma**2) * np.fft.fft2(d))).reshape(-1)
    sd = math.sqrt(np.mean(1.0 / (1.0 / spec + 1.0 / sigma**2)))  # the same for every pixel
    return mean, sd


def _row(name, samples, wall, grads, problem, extra):
    """Summary of draws (chains, draws, D): ESS, speed, error against the exact posterior."""
    ess = nw.ess_bulk(samples)
    mean, sd = _exact(problem)
    flat = samples.reshape(-1, samples.shape[-1]).astype(np.float64)
    rel_sd = flat.std(0) / sd - 1.0
    out = {"wall_s": round(wall, 2), "ess_bulk_min": round(float(ess.min()), 1),
           "ess_bulk_median": round(float(np.median(ess)), 1),
           "ess_min_per_s": round(float(ess.min()) / wall, 2),
           "ess_median_per_s": round(float(np.median(ess)) / wall, 2),
           "gradient_evals": int(grads),
           "ess_min_per_1000_grads": round(1000 * float(ess.min()) / grads, 2),
           "ess_median_per_1000_grads": round(1000 * float(np.median(ess)) / grads, 2),
           "mean_err_rms_over_post_sd": round(float(np.sqrt(np.mean((flat.mean(0) - mean) ** 2))) / sd, 4),
           "sd_rel_err_rms": round(float(np.sqrt(np.mean(rel_sd**2))), 4),
           "sd_rel_err_mean": round(float(rel_sd.mean()), 4)}
    out.update(extra)
    print(f"[{name}] {json.dumps(out)}", file=sys.stderr, flush=True)
    return out


def run_bayessky_mclmc(problem, init, chains, steps, thin, seed, adjusted, mams_draws):
    import torch

    import bayessky.infer as bi

    spec, m, d, sigma = problem
    model = nw.pyro_model_factory(spec, m, sigma, torch.float32)
    data = torch.as_tensor(d, dtype=torch.float32)
    init_s = {"s": torch.as_tensor(init[0], dtype=torch.float32)}
    warmup = round(steps / 3)
    kw = dict(num_chains=chains, seed=seed, jit=True, progress_bar=False)
    t0 = time.perf_counter()
    if adjusted:
        idata = bi.mclmc(model, data, num_samples=mams_draws, warmup_steps=2 * warmup, adjusted=True,
                         init_strategy=init_s, **kw)
    else:
        idata = bi.mclmc(model, data, num_samples=steps // thin, warmup_steps=warmup, thinning=thin,
                         init_strategy=init_s, **kw)
    wall = time.perf_counter() - t0
    s = idata.posterior["s"].values.reshape(chains, -1, d.size)
    st = idata.sample_stats
    grads = idata.attrs["gradient_calls"] * chains
    extra = {"step_size": round(float(st.step_size[0, 0]), 4), "L": round(float(st.L[0, 0]), 3),
             "divergences": int(st.diverging.sum()), "init": "chain 0 start for all chains",
             "warmup_steps": 2 * warmup if adjusted else warmup,
             "gradient_evals_warmup": int(idata.attrs["gradient_calls_warmup"] * chains),
             "energy_var_per_dim": round(float(np.nanvar(st.energy_change.values)) / d.size, 6)}
    if adjusted:
        extra.update(draws=mams_draws, acceptance_rate=round(float(st.acceptance_rate.mean()), 3),
                     mean_steps_per_transition=round(float(st.n_steps.mean()), 1))
    else:
        extra.update(steps=steps, thinning=thin)
    return _row("bayessky_mams" if adjusted else "bayessky_mclmc", s, wall, grads, problem, extra)


def run_bayessky_nuts(problem, init, chains, warmup, draws, seed):
    res, flat = nw.run_bayessky_model(problem, chains, warmup, draws, init, seed, 10, jit=True)
    return res


def run_blackjax(problem, init, chains, steps, thin, seed):
    import blackjax
    import jax
    import jax.numpy as jnp
    from blackjax.mcmc.integrators import isokinetic_mclachlan

    spec, m, d, sigma = problem
    n = d.shape[0]
    inv_s_half = jnp.asarray(nw.half_plane(1.0 / (spec * n * n)), dtype=jnp.float32)
    inv_var = jnp.asarray(m / sigma**2, dtype=jnp.float32)
    data = jnp.asarray(d, dtype=jnp.float32)

    def logdensity(x):
        s = x.reshape(n, n)
        sk = jnp.fft.rfft2(s)
        prior = 0.5 * jnp.sum((sk.real**2 + sk.imag**2) * inv_s_half)
        return -prior - 0.5 * jnp.sum((data - s) ** 2 * inv_var)

    kernel = blackjax.mcmc.mclmc.build_kernel(integrator=isokinetic_mclachlan)

    def one_chain(key, x0):
        k_init, k_tune, k_run = jax.random.split(key, 3)
        state = blackjax.mcmc.mclmc.init(position=x0, logdensity_fn=logdensity, rng_key=k_init)
        state, params, n_tune = blackjax.mclmc_find_L_and_step_size(
            mclmc_kernel=kernel, num_steps=steps, state=state, rng_key=k_tune, logdensity_fn=logdensity,
            diagonal_preconditioning=True)
        alg = blackjax.mclmc(logdensity, L=params.L, step_size=params.step_size,
                             inverse_mass_matrix=params.inverse_mass_matrix)

        def thinned(st, k):
            def inner(i, carry):
                st, k = carry
                k, sub = jax.random.split(k)
                st, _ = alg.step(sub, st)
                return st, k

            st, _ = jax.lax.fori_loop(0, thin, inner, (st, k))
            return st, st.position

        _, xs = jax.lax.scan(thinned, state, jax.random.split(k_run, steps // thin))
        return xs, params.step_size, params.L

    run = jax.jit(jax.vmap(one_chain))
    keys = jax.random.split(jax.random.PRNGKey(seed), chains)
    x0 = jnp.asarray(init[:chains].reshape(chains, -1), dtype=jnp.float32)

    def timed():
        t0 = time.perf_counter()
        xs, eps, L = run(keys, x0)
        xs.block_until_ready()
        return time.perf_counter() - t0, xs, eps, L

    wall, xs, eps, L = timed()
    wall2, _, _, _ = timed()
    # gradients: 2 per minimal-norm step, tuning 0.1 + (0.1 + 0.1/3) + 0.1 of the steps
    tune = round(0.1 * steps) + round(0.1 * steps) + round(0.1 * steps) // 3 + round(0.1 * steps)
    grads = chains * 2 * (steps + tune)
    extra = {"steps": steps, "thinning": thin, "tuning_steps": tune, "wall_second_run_s": round(wall2, 2),
             "compile_s_est": round(max(wall - wall2, 0.0), 2),
             "ess_min_per_s_second_run": None,
             "step_size": [round(float(v), 4) for v in eps], "L": [round(float(v), 3) for v in L],
             "blackjax": blackjax.__version__}
    s = np.asarray(xs)
    res = _row("blackjax_mclmc", s, wall, grads, problem, extra)
    res["ess_min_per_s_second_run"] = round(res["ess_bulk_min"] / wall2, 2)
    return res


def run_numpyro(problem, init, chains, warmup, draws, seed, method):
    res, flat = nw.run_numpyro(problem, chains, warmup, draws, init, seed, 10, method)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--sigma", type=float, default=1.0)
    p.add_argument("--k0", type=float, default=0.3)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--mclmc-steps", type=int, default=6000, help="MCLMC integration steps per chain")
    p.add_argument("--thin", type=int, default=4)
    p.add_argument("--mams-draws", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=500, help="NUTS warm-up")
    p.add_argument("--draws", type=int, default=500, help="NUTS draws")
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.mclmc_steps, args.mams_draws, args.warmup, args.draws = 600, 100, 100, 100
    rows = [r for r in args.rows.split(",") if r]
    unknown = set(rows) - set(ROWS)
    if unknown:
        p.error(f"unknown rows {sorted(unknown)}; choose from {ROWS}")
    if "numpyro_parallel" in rows:  # one XLA host device per chain, before jax is imported
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={args.chains}").strip()
    import torch

    torch.set_num_threads(args.threads)
    import arviz  # noqa: F401 -- imported before any timing (InferenceData is built inside some rows)

    import bayessky.infer.microcanonical  # noqa: F401
    spec, m, d, _ = nw.make_problem(args.n, args.sigma, args.k0, False, args.seed)
    problem = (spec, m, d, args.sigma)
    init = np.random.default_rng(args.seed + 1).uniform(-2, 2, (args.chains, args.n, args.n))
    load_before = os.getloadavg()
    results = {}
    a = args
    for row in rows:
        try:
            if row == "bayessky_mclmc":
                results[row] = run_bayessky_mclmc(problem, init, args.chains, args.mclmc_steps, args.thin,
                                                  args.seed, False, args.mams_draws)
            elif row == "bayessky_mams":
                results[row] = run_bayessky_mclmc(problem, init, args.chains, args.mclmc_steps, args.thin,
                                                  args.seed, True, args.mams_draws)
            elif row == "bayessky_nuts":
                results[row] = run_bayessky_nuts(problem, init, a.chains, a.warmup, a.draws, a.seed)
            elif row == "blackjax_mclmc":
                results[row] = run_blackjax(problem, init, a.chains, a.mclmc_steps, a.thin, a.seed)
            else:
                results[row] = run_numpyro(problem, init, args.chains, args.warmup, args.draws, args.seed,
                                           row.removeprefix("numpyro_"))
        except Exception as err:  # report and go on with the other rows
            results[row] = {"error": f"{type(err).__name__}: {err}"}
            print(f"[{row}] failed: {err}", file=sys.stderr)
    ok = {k: v for k, v in results.items() if "ess_min_per_s" in v}
    summary = {}
    if ok:
        best = max(ok, key=lambda k: ok[k]["ess_min_per_s"])
        summary["best_ess_min_per_s"] = best
        bayessky_rows = [k for k in ok if k.startswith("bayessky")]
        peers = [k for k in ok if not k.startswith("bayessky")]
        if bayessky_rows and peers:
            b = max(bayessky_rows, key=lambda k: ok[k]["ess_min_per_s"])
            summary["bayessky_best"] = b
            for peer in peers:
                summary[f"ratio_ess_min_per_s_{b}_vs_{peer}"] = round(
                    ok[b]["ess_min_per_s"] / ok[peer]["ess_min_per_s"], 3)
    env = {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
           "loadavg_before": [round(v, 2) for v in load_before],
           "loadavg_after": [round(v, 2) for v in os.getloadavg()], "dtype": "float32"}
    for mod in ("jax", "numpyro", "blackjax"):
        try:
            env[mod] = __import__(mod).__version__
        except ImportError:
            pass
    problem_info = {"n": args.n, "sigma": args.sigma, "k0": args.k0, "mask": False, "chains": args.chains,
                    "mclmc_steps": args.mclmc_steps, "thin": args.thin, "mams_draws": args.mams_draws,
                    "nuts_warmup": args.warmup, "nuts_draws": args.draws, "seed": args.seed}
    print(json.dumps({"problem": problem_info, "env": env, "results": results, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
