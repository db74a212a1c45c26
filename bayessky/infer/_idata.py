"""Posterior draws of latent sites -> ``arviz.InferenceData`` with deterministic sites and log-likelihoods.

Every engine ends here, so the groups are the same whichever engine ran:

- ``posterior``: latent sites and ``pyro.deterministic`` sites (e.g. decoded maps), (chain, draw, ...);
- ``sample_stats``: what the engine defines (diverging, energy, lp, acceptance_rate, ...);
- ``log_likelihood``: pointwise log p(observed | draw) of every observed site and every
  ``pyro.factor`` term (a factor is how an exact or learned likelihood enters a model);
- ``observed_data``: the observed values (factors have none).

The deterministic sites and log-likelihoods come from ONE model pass per chunk of draws
(vectorised over draws where the model broadcasts), instead of a ``Predictive`` pass plus a
second pass for the likelihood.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ._compat import from_dict
from ._model import BatchEvaluator

__all__ = ["build_inference_data"]


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def build_inference_data(
    evaluator: BatchEvaluator,
    samples: Mapping[str, torch.Tensor],
    sample_stats: Mapping[str, object] | None = None,
    attrs: Mapping | None = None,
    *,
    log_likelihood: bool = True,
    chunk_size: int = 256,
):
    """InferenceData from constrained latent draws ``samples[name]`` of shape (chain, draw, *shape)."""
    info = evaluator.info
    first = next(iter(samples.values()))
    C, S = int(first.shape[0]), int(first.shape[1])
    flat = {k: v.reshape(C * S, *v.shape[2:]) for k, v in samples.items()}
    det = info.names("deterministic")
    obs = info.names("observed", "factor")
    post = {k: _np(v).reshape(C, S, *v.shape[2:]) for k, v in samples.items()}
    loglik: dict[str, np.ndarray] = {}
    if det or (log_likelihood and obs):
        parts_v: dict[str, list] = {k: [] for k in det}
        parts_l: dict[str, list] = {k: [] for k in obs}
        with torch.no_grad():
            for start in range(0, C * S, chunk_size):
                res = evaluator({k: v[start:start + chunk_size] for k, v in flat.items()})
                for k in det:
                    parts_v[k].append(_np(res.values[k]))
                for k in obs:
                    parts_l[k].append(_np(res.log_prob[k]))
        for k in det:
            v = np.concatenate(parts_v[k])
            post[k] = v.reshape(C, S, *v.shape[1:])
        if log_likelihood:
            for k in obs:
                v = np.concatenate(parts_l[k])
                loglik[k] = v.reshape(C, S, *v.shape[1:])
    observed = {k: _np(info.sites[k].value) for k in info.names("observed")}
    stats = {k: np.asarray(v) for k, v in (sample_stats or {}).items()}
    return from_dict({"posterior": post, "sample_stats": stats, "log_likelihood": loglik,
                      "observed_data": observed}, attrs=attrs)
