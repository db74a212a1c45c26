"""Run a model on one map, or the grid engine on a block of maps, with an engine of bayessky.infer.

This is what ``bayessky run`` does per map, wherever the map runs (the parent process or a Dask
worker). A map's result depends only on its data, mask, noise and seed: the grid engine's block
evaluation gives every map the same chunks of grid points as a one-map run
(:func:`bayessky.infer.grid`), and each map's draws come from its own seed.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType

from .errors import SurveyError

__all__ = ["model_kwargs", "run_model", "run_grid_block", "grid_axes", "check_model_runs"]


def model_kwargs(module: ModuleType, options: dict, *, mask=None, noise=None, noise_name: str | None = None,
                 like=None) -> dict:
    """The keyword arguments of ``module.model``: its options, the mask and the noise (as tensors
    like ``like``); options meant for the script's ``grid(...)`` are left out."""
    import torch

    params = inspect.signature(module.model).parameters
    accepts_var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    grid_params = _grid_params(module)
    kwargs = {k: v for k, v in options.items() if k in params or (accepts_var_kw and k not in grid_params)}
    as_t = {"dtype": like.dtype, "device": like.device}
    if mask is not None:
        if "mask" not in params and not accepts_var_kw:
            raise SurveyError("--mask: the script's model takes no 'mask' option")
        kwargs["mask"] = torch.as_tensor(mask, **as_t)
    if noise is not None:
        if noise_name is None:
            raise SurveyError("--noise: the model declares no NOISE_OPTION (its noise rms option)")
        kwargs[noise_name] = torch.as_tensor(noise, **as_t)
    unknown = [k for k in options if k not in kwargs and k not in grid_params]
    if unknown:
        raise SurveyError(f"--set: the script's model has no option(s) {unknown}")
    return kwargs


def _grid_params(module: ModuleType) -> set[str]:
    grid = getattr(module, "grid", None)
    return set(inspect.signature(grid).parameters) if callable(grid) else set()


def _option_error(module: ModuleType, what: str, options: dict, err: BaseException) -> SurveyError:
    """A model's failure on the run's options as one line naming them (torch's and numpy's own
    messages name none), with the line of a user's script that raised."""
    from .model_spec import describe_error

    packaged = getattr(module, "__name__", "").startswith("bayessky.")
    where = describe_error(err, None if packaged else getattr(module, "__file__", None))
    given = ", ".join(f"{k}={v!r}" for k, v in options.items())
    flag = f"--set {given}" if given else "model"
    return SurveyError(f"{flag}: {what} failed: {where}")


def grid_axes(module: ModuleType, options: dict) -> dict:
    """The script's grid axes (``grid`` a dict, or a function of the options returning one)."""
    grid = getattr(module, "grid", None)
    if callable(grid):
        opts = {k: v for k, v in options.items() if k in _grid_params(module)}
        try:
            grid = grid(**opts)
        except (Exception, SystemExit) as err:  # noqa: BLE001 -- the script's own code: one line
            raise _option_error(module, "the model's grid(...)", opts, err) from None
    if not grid:
        raise SurveyError("--engine grid: the script defines no 'grid' of parameter axes")
    return grid


def check_model_runs(module: ModuleType, data, options: dict, *, mask=None, noise=None,
                     noise_name: str | None = None) -> None:
    """Run the model once on ``data`` (a Pyro trace, no inference) before any output exists, so that
    an option it cannot use (``--set grid_size=abc``, a negative noise) and a model with nothing to
    infer are the command's one-line errors, not failures recorded for every map. Without options
    a failure of this run is the data's, left to be recorded for the map that caused it."""
    import pyro
    import torch

    like = torch.zeros((), dtype=torch.get_default_dtype())
    t = torch.as_tensor(data, dtype=like.dtype)
    kwargs = model_kwargs(module, options, mask=mask, noise=noise, noise_name=noise_name, like=like)
    given = {k: v for k, v in options.items() if k in kwargs}
    try:
        with torch.no_grad(), torch.random.fork_rng(), pyro.poutine.block():
            tr = pyro.poutine.trace(module.model).get_trace(t, **kwargs)
    except (Exception, SystemExit) as err:  # noqa: BLE001 -- the script's own code: one line
        if not given:
            return
        raise _option_error(module, "the model", given, err) from None
    latent = [n for n, site in tr.nodes.items() if site["type"] == "sample" and not site["is_observed"]]
    if not latent:
        source = getattr(module, "__file__", None)
        name = Path(source).name if source else getattr(module, "__name__", "the model")
        raise SurveyError(f"model: {name} has no latent sample sites (every site is observed); nothing "
                          "to infer")


def run_model(module: ModuleType, data, *, engine: str, options: dict, engine_options: dict, device: str,
              seed: int, mask=None, noise=None, noise_name: str | None = None, progress: bool = False):
    """Run ``module.model`` on one map (array ``(*map)``) with ``engine``; returns
    ``(GridPosterior or None, InferenceData)``. ``progress``: the engine's progress bar."""
    if engine == "grid":
        post, idatas = run_grid_block(module, [data], engine_options=engine_options, options=options,
                                      device=device, seeds=[seed], mask=mask, noise=noise,
                                      noise_name=noise_name, progress=progress)
        return post, idatas[0]
    import pyro
    import torch

    from .. import infer

    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    t = torch.as_tensor(data, dtype=torch.get_default_dtype(), device=device)
    kwargs = model_kwargs(module, options, mask=mask, noise=noise, noise_name=noise_name, like=t)
    eopts = dict(engine_options)
    if engine == "svi" and getattr(module, "guide", None) is not None and "guide" not in eopts:
        eopts["guide"] = module.guide
    idata = getattr(infer, engine)(module.model, t, seed=seed, progress_bar=progress, **eopts, **kwargs)
    return None, idata


def run_grid_block(module: ModuleType, maps, *, engine_options: dict, options: dict, device: str, seeds,
                   mask=None, noise=None, noise_name: str | None = None, progress: bool = False):
    """The grid engine on a block of maps sharing one mask and noise: one ``infer.grid(stack=True)``
    call (the model is traced and its sites checked once per block, not once per map); map k's
    draws use ``seeds[k]``. Returns (GridPosterior of the block, [InferenceData per map])."""
    import numpy as np
    import pyro
    import torch

    from .. import infer
    from ..infer import GridPosterior

    pyro.set_rng_seed(int(seeds[0]))
    t = torch.as_tensor(np.stack([np.asarray(m) for m in maps]), dtype=torch.get_default_dtype(),
                        device=device)
    kwargs = model_kwargs(module, options, mask=mask, noise=noise, noise_name=noise_name, like=t)
    eopts = dict(engine_options)
    num_samples = eopts.pop("num_samples", 2000)
    post = infer.grid(module.model, t, grid=grid_axes(module, options), stack=True, progress_bar=progress,
                      **eopts, **kwargs)
    idatas = []
    for k, seed in enumerate(seeds):
        one = GridPosterior(post.axes, post.log_prior[k:k + 1], post.log_likelihood[k:k + 1])
        idatas.append(one.to_inference_data(num_samples, seed=int(seed)))
    return post, idatas
