"""``bayessky run MODEL --data FILE``: run a Pyro model with an engine, write the outputs.

MODEL is a packaged model's name (``bayessky models`` lists them, e.g. ``hi_parameters``) or a
model script (.py, e.g. a copy of ``inference/hi_parameters.py`` you edited). Either defines
``model(data, **options)`` (a Pyro model observing ``data``), and may define ``guide`` (for
SVI), ``grid`` (a dict of axes, or a function of the options returning one, for the grid engine),
``DEFAULTS`` (engine settings, e.g. ``{"engine": "grid", "num_samples": 500}``) and ``MAP_SITE``
(the name of the site holding the reconstructed map, for map-level inference).
``--set key=value`` values are parsed as Python literals; keys that are engine settings go to the
engine, the others to ``model`` as options.

    bayessky run hi_parameters --data maps.npy --engine grid
    bayessky run my_model.py --data maps.npy --engine nuts --set num_samples=500
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import inspect
import json
import sys
from pathlib import Path

import numpy as np

from . import CLIError, parse_device
from ._write import check_out_dir, write_csv, write_netcdf

__all__ = ["add_parser", "run", "load_script", "load_model_or_script", "run_script"]

ENGINES = ("nuts", "hmc", "svi", "map", "grid", "emcee")
# settings accepted by each engine front end in bayessky.infer (the rest go to the model)
ENGINE_KEYS = {
    "nuts": {"num_samples", "warmup_steps", "num_chains", "target_accept_prob", "dense_mass",
             "init_strategy", "jit", "max_tree_depth", "backend", "chain_method"},
    "hmc": {"num_samples", "warmup_steps", "num_chains", "target_accept_prob", "dense_mass",
            "init_strategy", "jit", "num_steps", "step_size"},
    "svi": {"guide", "steps", "num_samples", "lr", "final_lr", "init_strategy"},
    "map": {"steps", "optimizer", "laplace", "num_samples", "init_strategy"},
    "grid": {"prior", "chunk_size", "memory_budget_mb", "num_samples"},
    "emcee": {"walkers", "steps", "burn", "thin", "init_strategy"},
}


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a packaged model or a model script on data with an engine",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("script", metavar="MODEL", help="a packaged model's name (see 'bayessky models') "
                   "or a model script (.py) defining model(data, **options)")
    p.add_argument("--data", required=True, help="map(s): .npy, .npz or FITS; a stack gives one "
                   "posterior per map")
    p.add_argument("--mask", help="mask file (1 = observed, 0 = masked), same formats")
    p.add_argument("--engine", choices=ENGINES, help="engine (default: the script's DEFAULTS, else nuts)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="option for the script or the engine (repeatable)")
    p.add_argument("--out", default="bayessky-run", help="output folder")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--key", help="array name inside an .npz data file")
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


def load_script(path: str | Path):
    """Import a model script as a module; it must define a callable ``model``."""
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"script: no such file {str(path)!r}")
    spec = importlib.util.spec_from_file_location(f"bayessky_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # a broken user script: report its error in one line
        raise CLIError(f"script: {path.name} failed to import: {type(err).__name__}: {err}") from err
    if not callable(getattr(module, "model", None)):
        raise CLIError(f"script: {path.name} does not define a function 'model(data, **options)'")
    return module


def load_model_or_script(spec: str | Path):
    """A packaged model (``spec`` a key of :data:`bayessky.models.MODELS`) or a model script (a path).

    A packaged model's name wins over a file of that name in the working folder (write
    ``./NAME`` for the file); anything else is a one-line error naming the packaged models.
    """
    from ..models import MODELS, load_model

    text = str(spec)
    if text in MODELS:
        return load_model(text)
    if Path(text).is_file():
        return load_script(text)
    known = ", ".join(sorted(MODELS)) or "none"
    if text.endswith(".py") or "/" in text or "\\" in text:
        raise CLIError(f"script: no such file {text!r} (or give a packaged model: {known})")
    raise CLIError(f"model: {text!r} is neither a packaged model ({known}) nor a model script (.py)")


def _load_array(path: str, name: str, key: str | None = None) -> np.ndarray:
    """Any rank is read: :func:`run` checks the shape against what the script expects."""
    from ..data.io import load_maps

    try:
        arr = load_maps(path, key=key, ndim=range(1, 6), name=name)
    except (OSError, ValueError, KeyError) as err:
        msg = str(err).splitlines()[0]
        msg = msg[len(name) + 2:] if msg.startswith(f"{name}: ") else msg  # name the flag once
        raise CLIError(f"{name}: cannot read {path!r}: {msg}") from err
    arr = np.asarray(arr, dtype=np.float64)
    n_bad = int((~np.isfinite(arr)).sum())
    if n_bad:
        raise CLIError(f"{name}: {path!r} contains {n_bad} NaN/inf values")
    return arr


def run_script(module, data, *, engine: str, options: dict, engine_options: dict, device: str,
               seed: int, mask=None):
    """Run ``module.model`` on one map with ``engine``; returns (idata or GridPosterior, idata)."""
    import pyro
    import torch

    from .. import infer

    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    t = torch.as_tensor(data, dtype=torch.get_default_dtype(), device=device)
    params = inspect.signature(module.model).parameters
    accepts_var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    grid = getattr(module, "grid", None)
    # options may also be meant for the script's grid(...) (e.g. its resolution)
    grid_params = set(inspect.signature(grid).parameters) if callable(grid) else set()
    kwargs = {k: v for k, v in options.items() if k in params or (accepts_var_kw and k not in grid_params)}
    if mask is not None:
        if "mask" not in params and not accepts_var_kw:
            raise CLIError("--mask: the script's model takes no 'mask' option")
        kwargs["mask"] = torch.as_tensor(mask, dtype=t.dtype, device=device)
    unknown = [k for k in options if k not in kwargs and k not in grid_params]
    if unknown:
        raise CLIError(f"--set: the script's model has no option(s) {unknown}")
    fn = getattr(infer, engine)
    eopts = dict(engine_options)
    if engine == "grid":
        if callable(grid):
            grid = grid(**{k: v for k, v in options.items() if k in grid_params})
        if not grid:
            raise CLIError("--engine grid: the script defines no 'grid' of parameter axes")
        num_samples = eopts.pop("num_samples", 2000)
        post = fn(module.model, t, grid=grid, **eopts, **kwargs)
        return post, post.to_inference_data(num_samples, seed=seed)
    if engine == "svi" and getattr(module, "guide", None) is not None and "guide" not in eopts:
        eopts["guide"] = module.guide
    idata = fn(module.model, t, seed=seed, **eopts, **kwargs)
    return None, idata


def _first_channel(a):
    """Multi-channel data or maps: the figure shows the first channel (the .npy files hold all)."""
    return None if a is None else a.reshape(-1, *a.shape[-2:])[0]


def _write_outputs(out: Path, idata, grid_post, data, mask, module, suffix: str, truths=None):
    import arviz as az

    from ..plot import corner, posterior_maps
    from ..plot.corner import scalar_variables

    written = []
    written.append(write_netcdf(idata, out / f"posterior{suffix}.nc"))
    scalars = scalar_variables(idata)
    summary = az.summary(idata, var_names=scalars or None, kind="all") if scalars else None
    if scalars:
        corner(idata, var_names=scalars, truths=truths, out=out / f"corner{suffix}.png")
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
        mean, std = draws.mean(0), draws.std(0)
        np.save(out / f"map_mean{suffix}.npy", mean)
        np.save(out / f"map_std{suffix}.npy", std)
        mean1 = _first_channel(mean)
        # the map site need not be what was observed (cmb_lensing's MAP_SITE is phi, the data are
        # temperature channels): the data and mask panels are drawn only when they match its shape
        data1, mask1 = _first_channel(data), _first_channel(mask)
        posterior_maps(mean1, _first_channel(std),
                       data=data1 if data1 is not None and data1.shape == mean1.shape else None,
                       mask=mask1 if mask1 is not None and mask1.shape == mean1.shape else None,
                       out=out / f"maps{suffix}.png")
        written += [out / f"map_mean{suffix}.npy", out / f"map_std{suffix}.npy", out / f"maps{suffix}.png"]
    return summary, written


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


def run(args: argparse.Namespace) -> int:
    module = load_model_or_script(args.script)
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
    _check_device(args.device)
    # MAP_SHAPE fixes what one observation is: (n_freq, H, W) data is one multi-channel map for a
    # script that declares it, a stack of n_freq maps otherwise
    expected = getattr(module, "MAP_SHAPE", None)
    event_ndim = len(expected) if expected is not None else 2
    data = _load_array(args.data, "--data", args.key)
    mask = _load_array(args.mask, "--mask") if args.mask else None
    if data.ndim not in (event_ndim, event_ndim + 1):
        one = "(H, W)" if expected is None else str(tuple(expected))
        raise CLIError(f"--data: expected one map {one} or a stack (n, *map), got shape {data.shape}")
    stack = data if data.ndim == event_ndim + 1 else data[None]
    if expected is not None and tuple(stack.shape[1:]) != tuple(expected):
        raise CLIError(f"--data: the script expects maps of shape {tuple(expected)}, got {stack.shape[1:]}")
    if mask is not None:
        if mask.shape not in (stack.shape[1:], stack.shape[-2:]):
            raise CLIError(f"--mask: shape {mask.shape} does not match the maps' {stack.shape[1:]}")
        if ((mask < 0) | (mask > 1)).any():
            raise CLIError("--mask: values must lie in [0, 1]")
    out = check_out_dir(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summaries = []
    from tqdm.auto import tqdm

    for i, m in enumerate(tqdm(stack, desc="maps", disable=len(stack) == 1)):
        suffix = "" if len(stack) == 1 else f"_{i:03d}"
        grid_post, idata = run_script(module, m, engine=engine, options=options,
                                      engine_options=engine_options, device=args.device,
                                      seed=args.seed + i, mask=mask)
        summary, _ = _write_outputs(out, idata, grid_post, m, mask, module, suffix)
        if summary is not None:
            summary.insert(0, "map", i)
            summaries.append(summary)
    if summaries:
        import pandas as pd

        table = pd.concat(summaries)
        write_csv(table, out / "summary.csv")
        print(table.to_string())
    meta = {"script": str(args.script), "data": str(args.data), "engine": engine, "n_maps": len(stack),
            "engine_options": engine_options, "options": options, "seed": args.seed}
    (out / "run.json").write_text(json.dumps(meta, indent=2, default=str))
    print(f"bayessky run: wrote {len(stack)} posterior(s) to {out}/", file=sys.stderr)
    return 0
