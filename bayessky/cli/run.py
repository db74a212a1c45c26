"""``bayessky run MODEL --data FILE``: run a Pyro model with an engine on one map or a survey of maps.

MODEL is a packaged model's name (``bayessky models`` lists them, e.g. ``hi_parameters``) or a
model script (.py, e.g. a copy of ``inference/hi_parameters.py`` you edited). Either defines
``model(data, **options)`` (a Pyro model observing ``data``), and may define ``guide`` (for
SVI), ``grid`` (a dict of axes, or a function of the options returning one, for the grid engine),
``DEFAULTS`` (engine settings, e.g. ``{"engine": "grid", "num_samples": 500}``), ``MAP_SITE``
(the name of the site holding the reconstructed map, for map-level inference) and
``NOISE_OPTION`` (the name of its noise-rms option, which ``--noise`` sets).
``--set key=value`` values are parsed as Python literals; keys that are engine settings go to the
engine, the others to ``model`` as options.

A stack of maps (or a manifest CSV) is a durable job (:mod:`bayessky.survey`): each map's outputs
are written as soon as it is done, the same command resumes an interrupted run, a different one
into the same --out is refused (``--restart`` replaces it), and ``--workers`` / ``--scheduler`` /
``--cluster slurm`` spread the maps over Dask workers with the same results bit for bit.

    bayessky run hi_parameters --data maps.npy --engine grid
    bayessky run my_model.py --data maps.npy --engine nuts --set num_samples=500
    bayessky run dust_inpainting --data maps.npy --mask masks.npy --noise rms.npy --workers 4
    bayessky run hi_parameters --data manifest.csv --cluster slurm --cluster-config slurm.yaml
"""

from __future__ import annotations

import argparse
import ast
import inspect
import sys
import textwrap
from pathlib import Path

import numpy as np

from ..survey import load_model_or_script, load_script, run_model
from . import CLIError, parse_device
from ._write import check_out_dir, write_netcdf

__all__ = ["add_parser", "run", "load_script", "load_model_or_script", "run_script", "EXIT_SOME_FAILED"]

# engines and the settings each front end in bayessky.infer accepts (the rest go to the model);
# add an engine by adding a line to both
ENGINES = ("nuts", "hmc", "mclmc", "svi", "map", "grid", "emcee")
ENGINE_KEYS = {
    "nuts": {"num_samples", "warmup_steps", "num_chains", "target_accept_prob", "dense_mass",
             "init_strategy", "jit", "max_tree_depth", "backend", "chain_method"},
    "hmc": {"num_samples", "warmup_steps", "num_chains", "target_accept_prob", "dense_mass",
            "init_strategy", "jit", "num_steps", "step_size"},
    "mclmc": {"num_samples", "warmup_steps", "num_chains", "adjusted", "step_size", "L",
              "desired_energy_var", "diagonal_preconditioning", "target_accept", "integrator",
              "thinning", "init_strategy", "jit"},
    "svi": {"guide", "steps", "num_samples", "lr", "final_lr", "init_strategy"},
    "map": {"steps", "optimizer", "laplace", "num_samples", "init_strategy"},
    "grid": {"prior", "chunk_size", "memory_budget_mb", "num_samples", "map_batch", "processes"},
    "emcee": {"walkers", "steps", "burn", "thin", "init_strategy"},
}
#: exit status when some maps failed (each is in failures.csv) and the others completed
EXIT_SOME_FAILED = 3


def add_parser(sub) -> None:
    engines = "\n".join(textwrap.fill(f"{e}: {', '.join(sorted(ENGINE_KEYS[e]))}", 88, initial_indent="  ",
                                       subsequent_indent="    ") for e in ENGINES)
    p = sub.add_parser("run", help="run a packaged model or a model script on data with an engine",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="engine options for --set (checked before any map runs; the other keys "
                              "go to the model):\n" + engines)
    p.add_argument("script", metavar="MODEL", help="a packaged model's name (see 'bayessky models') "
                   "or a model script (.py) defining model(data, **options)")
    p.add_argument("--data", required=True, help="map(s): .npy, .npz or FITS; a stack (n, ...) gives one "
                   "posterior per map; or a manifest .csv (columns data, mask, noise, truths...)")
    p.add_argument("--mask", help="mask (1 = observed, 0 = masked): one map shared by all, or a stack "
                   "(n, H, W)")
    p.add_argument("--noise", help="noise rms per pixel, for models with a NOISE_OPTION: a number, a map, "
                   "or a stack (n, H, W) of per-map rms maps")
    p.add_argument("--engine", choices=ENGINES, help="engine (default: the script's DEFAULTS, else nuts)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="option for the script or the engine (repeatable; engine keys below)")
    p.add_argument("--out", default="bayessky-run", help="output folder (a run is resumed by running the "
                   "same command again)")
    p.add_argument("--restart", action="store_true", help="clear the previous run's outputs in --out first")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--seed", type=int, default=0, help="map i uses seed + i")
    p.add_argument("--key", help="array name inside an .npz data file")
    g = p.add_argument_group("many maps")
    g.add_argument("--workers", type=int, help="a local Dask cluster of N worker processes (1 thread each)")
    g.add_argument("--scheduler", help="a running Dask scheduler: tcp://host:port or a scheduler .json file")
    g.add_argument("--cluster", choices=("slurm",), help="start Dask workers as SLURM jobs (dask-jobqueue)")
    g.add_argument("--cluster-config", help="SLURM settings, YAML or JSON (see bayessky.survey.slurm)")
    g.add_argument("--block-size", type=int, help="maps per task for the grid engine (default: up to 8, "
                   "enough blocks for every worker); other engines run one map per task")
    g.add_argument("--retries", type=int, default=2, help="Dask re-runs of a task whose machine failed")
    g.add_argument("--combine", action="store_true", help="also write posterior.nc with a 'map' dimension")
    g.add_argument("--no-plots", action="store_true", help="skip the corner and map figures (faster)")
    p.set_defaults(func=run)


def parse_sets(items: list[str]) -> dict:
    """``["a=1", "b=[1,2]", "c=name", "d=false"]`` -> ``{"a": 1, "b": [1, 2], "c": "name", "d": False}``."""
    out = {}
    for item in items:
        if "=" not in item:
            raise CLIError(f"--set: expected KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key.isidentifier():
            raise CLIError(f"--set: {key!r} is not a valid option name")
        if value.strip().lower() in ("true", "false"):
            # the JSON/shell spelling: as a bare string "false" would be truthy
            out[key] = value.strip().lower() == "true"
            continue
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def run_script(module, data, *, engine: str, options: dict, engine_options: dict, device: str,
               seed: int, mask=None, noise=None):
    """Run ``module.model`` on one map with ``engine``; returns (GridPosterior or None, idata).
    (:func:`bayessky.survey.run_model`, kept under its old name.)"""
    from ..survey import noise_option

    return run_model(module, data, engine=engine, options=options, engine_options=engine_options,
                     device=device, seed=seed, mask=mask, noise=noise, noise_name=noise_option(module))


def _first_channel(a):
    """Multi-channel data or maps: the figure shows the first channel (the .npy files hold all)."""
    return None if a is None else a.reshape(-1, *a.shape[-2:])[0]


def _save_npy(path: Path, array) -> Path:
    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        np.save(tmp, array)
    return path


def _write_outputs(out: Path, idata, data, mask, module, suffix: str, truths=None, plots: bool = True):
    """Write one map's posterior (and its map mean/std, figures); returns (summary table, files)."""
    import arviz as az

    from ..plot.corner import scalar_variables

    written = [write_netcdf(idata, out / f"posterior{suffix}.nc")]
    scalars = scalar_variables(idata)
    spread, mcmc = _what_draws_know(idata)
    summary = None
    if scalars:
        # columns only where the draws support them: MCMC diagnostics (ess, r_hat, mcse) for MCMC
        # engines, sd and intervals for any posterior draws, the point alone for a MAP without Laplace
        summary = az.summary(idata, var_names=scalars, kind="all" if mcmc else "stats")
        if not spread:
            summary = summary[["mean"]]
    if scalars and plots:
        import matplotlib.pyplot as plt

        from ..plot import corner

        known = {k: v for k, v in (truths or {}).items() if k in scalars}
        plt.close(corner(idata, var_names=scalars, truths=known or None, out=out / f"corner{suffix}.png"))
        written.append(out / f"corner{suffix}.png")
    site = getattr(module, "MAP_SITE", None)
    post = idata.posterior
    if site is None:  # a posterior variable with the data's shape (or one channel's) is the map
        for shape in (tuple(data.shape), tuple(data.shape[-2:])):
            site = next((v for v in post.data_vars if tuple(post[v].shape[2:]) == shape), None)
            if site is not None:
                break
    if site is not None and site in post:
        draws = np.asarray(post[site]).reshape(-1, *post[site].shape[2:])
        mean, std = draws.mean(0), (draws.std(0) if spread else None)
        written.append(_save_npy(out / f"map_mean{suffix}.npy", mean))
        if spread:  # a MAP point has no std; zeros would read as certainty
            written.append(_save_npy(out / f"map_std{suffix}.npy", std))
        if plots:
            import matplotlib.pyplot as plt

            from ..plot import posterior_maps

            mean1 = _first_channel(mean)
            # the map site need not be what was observed (cmb_lensing's MAP_SITE is phi, the data are
            # temperature channels): the data and mask panels are drawn only when they match its shape
            data1, mask1 = _first_channel(data), _first_channel(mask)
            plt.close(posterior_maps(
                mean1, _first_channel(std),
                data=data1 if data1 is not None and data1.shape == mean1.shape else None,
                mask=mask1 if mask1 is not None and mask1.shape == mean1.shape else None,
                out=out / f"maps{suffix}.png"))
            written.append(out / f"maps{suffix}.png")
    return summary, written


def _what_draws_know(idata) -> tuple[bool, bool]:
    """(the draws carry posterior spread, they are MCMC draws with chains to diagnose): a MAP run
    without a Laplace approximation is one point; grid, SVI and Laplace draws are independent."""
    post = idata.posterior
    spread = post.sizes.get("chain", 1) * post.sizes.get("draw", 1) > 1
    engine = getattr(idata, "attrs", {}).get("engine") or post.attrs.get("engine")
    return spread, spread and engine in ("nuts", "hmc", "mclmc", "emcee")


def _summary_rows(summary, i: int, truths: dict) -> list[dict]:
    if summary is None:
        return []
    rows = []
    for name, row in summary.iterrows():
        rec = {"variable": str(name), "map": i, **row.to_dict()}
        if str(name) in truths:
            rec["truth"] = truths[str(name)]
        rows.append(rec)
    return rows


def _explicit_params(fn) -> set[str]:
    """Names the model takes explicitly (not through ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _check_device(text: str) -> None:
    """``cpu`` or ``cuda[:i]`` that exists here (the engines run on no other device type)."""
    if parse_device(text).type not in ("cpu", "cuda"):
        raise CLIError(f"--device: expected cpu or cuda[:i], got {text!r}")


def _engine_settings(module, args) -> tuple[str, dict, dict]:
    """(engine, engine options, model options) from the script's DEFAULTS and the --set values."""
    defaults = dict(getattr(module, "DEFAULTS", {}) or {})
    sets = parse_sets(args.set)
    engine = args.engine or sets.pop("engine", None) or defaults.pop("engine", "nuts")
    defaults.pop("engine", None)
    if engine not in ENGINES:
        raise CLIError(f"--engine: expected one of {ENGINES}, got {engine!r}")
    all_engine_keys = set().union(*ENGINE_KEYS.values())
    model_params = _explicit_params(module.model)
    for key in sets:
        # a user's --set for another engine would be dropped silently (run.json would not even
        # show it): refuse, unless the model itself takes an option of that name
        if key in all_engine_keys and key not in ENGINE_KEYS[engine] and key not in model_params:
            owners = [e for e in ENGINES if key in ENGINE_KEYS[e]]
            which = "engine" if len(owners) == 1 else "engines"
            raise CLIError(f"--set {key}: an option of {which} {', '.join(repr(e) for e in owners)}, "
                           f"not of {engine!r}")
    merged = {**defaults, **sets}
    engine_options = {k: v for k, v in merged.items() if k in ENGINE_KEYS[engine]}
    # the script's DEFAULTS may hold settings of other engines (e.g. warmup_steps for a grid run):
    # those are dropped; a user's --set of a model option that shares an engine key's name is kept
    options = {k: v for k, v in merged.items() if k not in all_engine_keys
               or (k in sets and k in model_params and k not in ENGINE_KEYS[engine])}
    return engine, engine_options, options


def _preflight(module, inputs, engine: str, options: dict, noise_name, args,
               options_of_engine: dict) -> None:
    """Engine option, model option, mask and noise errors are the command's (exit 2), not every map's."""
    import torch

    from ..survey import check_model_runs, grid_axes, model_kwargs

    if args.noise is not None and noise_name is None:
        raise CLIError(f"--noise: model {args.script!r} declares no NOISE_OPTION (no noise option to set)")
    if noise_name is not None and noise_name in options and args.noise is not None:
        raise CLIError(f"--noise: also given as --set {noise_name}=...; give one of them")
    from ..infer import check_options

    try:  # the engine's own checks, once, before any output exists or any map runs
        check_options(engine, options_of_engine)
    except (ValueError, TypeError) as err:
        raise CLIError(f"--set: {err}") from None
    first = inputs.get(0)
    like = torch.zeros((), dtype=torch.get_default_dtype())
    model_kwargs(module, options, mask=first.mask, noise=first.noise, noise_name=noise_name, like=like)
    if engine == "grid":
        grid_axes(module, options)
    for i in range(min(inputs.n, 8)):  # the first readable map; bad maps are recorded, not refused
        m = inputs.get(i)
        if m.error is None:
            check_model_runs(module, m.data, options, mask=m.mask, noise=m.noise, noise_name=noise_name)
            break


def _block_size(args, engine: str, n: int, workers: int) -> int:
    if args.block_size is not None:
        if args.block_size < 1:
            raise CLIError(f"--block-size: expected a positive integer, got {args.block_size}")
        if engine != "grid":
            raise CLIError(f"--block-size: only for the grid engine ({engine!r} runs one map per task)")
        return args.block_size
    if engine != "grid":
        return 1
    return max(1, min(8, -(-n // (2 * workers))))  # >= 2 blocks per worker while maps last


def run(args: argparse.Namespace) -> int:
    from ..survey import (
        JobSpec,
        JobState,
        build_manifest,
        cluster_plan,
        combine_posteriors,
        execute,
        load_inputs,
        make_tasks,
        model_identity,
        noise_option,
        open_client,
        out_lock,
    )

    module = load_model_or_script(args.script)
    engine, engine_options, options = _engine_settings(module, args)
    _check_device(args.device)
    if args.retries < 0:
        raise CLIError(f"--retries: expected 0 or more, got {args.retries}")
    inputs = load_inputs(args.data, mask=args.mask, noise=args.noise, key=args.key,
                         map_shape=getattr(module, "MAP_SHAPE", None))
    noise_name = noise_option(module)
    _preflight(module, inputs, engine, options, noise_name, args, engine_options)
    plan = cluster_plan(workers=args.workers, scheduler=args.scheduler, cluster=args.cluster,
                        cluster_config=args.cluster_config)
    block = _block_size(args, engine, inputs.n, args.workers or 1)
    out = check_out_dir(args.out)
    identity = {"spec": str(args.script), **model_identity(str(args.script), module)}
    execution = {"workers": args.workers, "scheduler": args.scheduler, "cluster": args.cluster,
                 "block_size": block, "data": str(args.data)}
    manifest = build_manifest(model=identity, inputs=inputs.hashes(), engine=engine,
                              engine_options=engine_options, options=options, seed=args.seed, n_maps=inputs.n,
                              device=args.device, execution=execution)
    job = JobSpec(model=str(args.script), engine=engine, options=options, engine_options=engine_options,
                  device=args.device, seed=args.seed, threads=1, noise_name=noise_name,
                  # the engine's own bar for a single map run here; many maps show the maps bar
                  progress=not getattr(args, "quiet", False) and inputs.n == 1 and plan is None)
    from tqdm.auto import tqdm

    with out_lock(out):
        state = JobState(out, manifest, restart=args.restart)
        todo = state.pending()
        kept = inputs.n - len(todo)
        if kept:
            print(f"bayessky run: resuming: {kept} of {inputs.n} map(s) already done in {out}/",
                  file=sys.stderr)
        state.flush(force=True)
        with open_client(plan) as client:
            results = execute(job, make_tasks(todo, block), inputs, client, retries=args.retries)
            quiet = inputs.n == 1 or getattr(args, "quiet", False)
            for res in tqdm(results, total=len(todo), desc="maps", disable=quiet, unit="map"):
                if res.error is not None:
                    state.record_failure(res.index, res.error)
                    continue
                m = inputs.get(res.index)
                summary, files = _write_outputs(out, res.idata, m.data, m.mask, module,
                                                state.suffix(res.index), m.truths, plots=not args.no_plots)
                state.record_done(res.index, files, _summary_rows(summary, res.index, m.truths))
        state.flush(force=True)
        if args.combine and inputs.n > 1 and state.records:
            combine_posteriors({i: out / f"posterior{state.suffix(i)}.nc" for i in state.records},
                               out / "posterior.nc")
    if (out / "summary.csv").is_file() and inputs.n <= 20:
        import pandas as pd

        print(pd.read_csv(out / "summary.csv", index_col=0).to_string())
    done, failed = len(state.records), len(state.failures)
    if failed:
        first = min(state.failures)
        print(f"bayessky run: {failed} of {inputs.n} map(s) failed (see {out}/failures.csv; map {first}: "
              f"{state.failures[first]}); {done} done", file=sys.stderr)
        return EXIT_SOME_FAILED
    print(f"bayessky run: wrote {inputs.n} posterior(s) to {out}/", file=sys.stderr)
    return 0
