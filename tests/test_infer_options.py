"""``infer.check_options`` refuses exactly what the engines refuse, before any model runs.

Reference: each engine itself, called on a small model with the same options -- the error it
raises must be the one ``check_options`` raised, and options every engine accepts must pass both.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from bayessky import infer
from bayessky.infer import check_options


def _model(data):  # two latent sites: mclmc's isokinetic dynamics need at least two dimensions
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    nu = pyro.sample("nu", dist.Normal(0.0, 1.0))
    pyro.sample("obs", dist.Normal(mu + nu, 1.0).expand(data.shape).to_event(1), obs=data)


DATA = torch.tensor([0.5, -0.2, 1.0])

BAD = [
    ("nuts", {"num_chains": 0}),
    ("nuts", {"warmup_steps": -1}),
    ("nuts", {"target_accept_prob": 1.5}),
    ("nuts", {"max_tree_depth": 0}),
    ("nuts", {"backend": "jax"}),
    ("nuts", {"chain_method": "parallel"}),  # an option of backend="fast" only
    ("nuts", {"backend": "fast", "chain_method": "threads"}),
    ("nuts", {"precondition": "laplace"}),  # backend="pyro"
    ("nuts", {"seed": -3}),
    ("nuts", {"init_strategy": "mapp"}),
    ("hmc", {"step_size": 0.0}),
    ("hmc", {"num_steps": 0}),
    ("hmc", {"num_samples": 2.5}),
    ("mclmc", {"integrator": "euler"}),
    ("mclmc", {"target_accept": 1.0}),
    ("mclmc", {"thinning": 0}),
    ("svi", {"guide": "nf"}),
    ("svi", {"lr": -0.1}),
    ("svi", {"steps": 0}),
    ("svi", {"init_strategy": {"mu": float("nan")}}),
    ("map", {"optimizer": "sgd"}),
    ("map", {"laplace": True, "num_samples": 0}),
    ("emcee", {"steps": 10, "burn": 10}),
    ("emcee", {"walkers": 7}),
    ("grid", {"map_batch": 0}),
    ("grid", {"chunk_size": 0}),
    ("grid", {"prior": "flat"}),
    ("grid", {"processes": 0}),
    ("grid", {"memory_budget_mb": float("inf")}),
]


def _call(engine, options):
    kw = dict(options)
    if engine == "grid":
        kw.pop("num_samples", None)
        axes = {"mu": torch.linspace(-3, 3, 21), "nu": torch.linspace(-3, 3, 21)}
        return infer.grid(_model, DATA, grid=axes, **kw)
    small = {"nuts": dict(num_samples=5, warmup_steps=5), "hmc": dict(num_samples=5, warmup_steps=5),
             "mclmc": dict(num_samples=5, warmup_steps=5), "svi": dict(steps=5, num_samples=5),
             "map": dict(steps=5), "emcee": dict(steps=20)}[engine]
    return getattr(infer, engine)(_model, DATA, progress_bar=False, **{**small, **kw})


@pytest.mark.parametrize("engine, options", BAD, ids=[f"{e}-{'-'.join(o)}" for e, o in BAD])
def test_check_options_raises_what_the_engine_raises(engine, options):
    with pytest.raises(ValueError) as ours:
        check_options(engine, options)
    with pytest.raises(ValueError) as theirs:
        _call(engine, options)
    assert str(ours.value) == str(theirs.value)
    assert str(ours.value).startswith(f"{engine}:") and "\n" not in str(ours.value)


@pytest.mark.parametrize("engine", ["nuts", "hmc", "mclmc", "svi", "map", "emcee", "grid"])
def test_options_the_engine_accepts_pass(engine):
    good = {"nuts": {"backend": "fast", "chain_method": "vectorized", "dense_mass": True,
                     "init_strategy": "map", "num_chains": 2},
            "hmc": {"num_steps": 3}, "mclmc": {"num_chains": 2, "integrator": "leapfrog"},
            "svi": {"guide": "mvn", "lr": 0.01}, "map": {"laplace": True, "num_samples": 10},
            "emcee": {"walkers": 8}, "grid": {"map_batch": 2, "num_samples": 50}}[engine]
    check_options(engine, good)
    _call(engine, good)  # and the engine runs with them


def test_unknown_options_and_engines_are_named():
    with pytest.raises(ValueError, match=r"nuts: unknown option\(s\) \['steps'\]"):
        check_options("nuts", {"steps": 3})
    with pytest.raises(ValueError, match="engine: expected one of"):
        check_options("gibbs", {})
