"""Check an engine's options without a model: ``check_options("nuts", {"num_chains": 0})``.

Why: every engine checks its arguments first, but only once it is called on a model and data. A
front end that fans one set of options out to thousands of maps (``bayessky run``) should refuse a
bad option once, before it creates outputs or starts tasks, not record the same error for every
map. The checks run here are the engines' own (each engine module's ``_check_args``, called by the
engine itself), so the two cannot drift apart; options that need the model (``init_strategy``
values, ``walkers`` against the dimension, ``grid`` axes) are checked as far as they can be
without it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping

from ._model import init_strategy_fn

__all__ = ["check_options", "ENGINES"]

#: engine -> (module, checker): the checker takes the engine's keyword arguments it checks
_CHECKERS = {
    "nuts": (".mcmc", "_check_nuts_args"),
    "hmc": (".mcmc", "_check_hmc_args"),
    "mclmc": (".microcanonical", "_check_args"),
    "svi": (".variational", "_check_args"),
    "map": (".optimize", "_check_args"),
    "emcee": (".ensemble", "_check_args"),
    "grid": (".grid_posterior", "_check_args"),
}
ENGINES = tuple(_CHECKERS)


def check_options(engine: str, options: Mapping[str, object]) -> None:
    """Raise ``ValueError`` (one line, naming the engine and the option) if ``options`` would make
    ``bayessky.infer.<engine>`` refuse its arguments; the engine's defaults fill the rest.

    Unknown option names are refused too (the engine would raise ``TypeError``), except that the
    grid engine also takes ``num_samples`` (the draws of ``GridPosterior.to_inference_data``).
    """
    if engine not in _CHECKERS:
        raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
    module_name, checker_name = _CHECKERS[engine]
    module = importlib.import_module(module_name, __package__)
    engine_fn = getattr(module, engine)
    checker = getattr(module, checker_name)
    sig = inspect.signature(engine_fn).parameters
    known = {n for n, p in sig.items() if p.kind == p.KEYWORD_ONLY}
    checked = {n for n, p in inspect.signature(checker).parameters.items()
               if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    unknown = sorted(set(options) - known - checked)
    if unknown:
        raise ValueError(f"{engine}: unknown option(s) {unknown} (options: {sorted(known | checked)})")
    empty = inspect.Parameter.empty
    values = {n: sig[n].default for n in checked if n in sig and sig[n].default is not empty}
    values.update({k: v for k, v in options.items() if k in checked})
    checker(**values)
    strategy = options.get("init_strategy", sig["init_strategy"].default if "init_strategy" in sig else None)
    if strategy is not None and strategy != "map":
        init_strategy_fn(strategy, f"{engine}: init_strategy")
