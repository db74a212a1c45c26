"""Shared pieces of the survey tests: a conjugate model script with a mask and a noise option, its
closed-form posterior, and a reader of a posterior file's values."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

# mu ~ N(0, 1); d_p ~ N(mu, sigma_p^2) on the observed pixels (mask 1): a grid posterior whose mean
# is known in closed form. SLOW (seconds, from the environment) stretches each task, so a test can
# kill a run in the middle; it is not part of the model, so the script's hash does not change.
MASKED_MEAN = """
import os, time
import pyro, pyro.distributions as dist, torch

DEFAULTS = {"engine": "grid", "num_samples": 200}
NOISE_OPTION = "sigma"


def grid(n=301):
    time.sleep(float(os.environ.get("BAYESSKY_TEST_SLOW", "0")))
    return {"mu": torch.linspace(-3.0, 5.0, n, dtype=torch.float64)}


def model(data, mask=None, sigma=1.0):
    if float(data.mean()) > 100:
        raise ValueError("map too bright for this model")
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    m = torch.ones_like(data) if mask is None else mask
    sigma = torch.as_tensor(sigma, dtype=data.dtype) * torch.ones_like(data)
    pyro.sample("obs", dist.Normal(mu, sigma).mask(m > 0.5).to_event(data.dim()), obs=data)
"""


def write_script(folder: Path, text: str = MASKED_MEAN, name: str = "masked_mean.py") -> str:
    path = Path(folder) / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def save(folder: Path, name: str, arr) -> str:
    path = Path(folder) / name
    np.save(path, np.asarray(arr))
    return str(path)


def closed_form_mean(d, mask, sigma) -> float:
    """Posterior mean of mu: sum(m d / s^2) / (sum(m / s^2) + 1)."""
    w = np.asarray(mask, float) / np.broadcast_to(np.asarray(sigma, float), np.shape(d)) ** 2
    return float((w * d).sum() / (w.sum() + 1.0))


def posterior_values(path) -> dict:
    """{variable: array} of a posterior file's posterior group, and its grid attrs."""
    import arviz as az

    idata = az.from_netcdf(path)
    out = {k: idata.posterior[k].values.copy() for k in idata.posterior.data_vars}
    out["__attrs__"] = {k: float(v) for k, v in idata.attrs.items() if k.startswith(("grid_", "log_"))}
    return out


def assert_same_posterior(a, b) -> None:
    """Bit-identical draws and grid moments."""
    va, vb = posterior_values(a), posterior_values(b)
    assert va.keys() == vb.keys()
    for k in va:
        if k == "__attrs__":
            assert va[k] == vb[k], (a, b)
        else:
            np.testing.assert_array_equal(va[k], vb[k], err_msg=f"{a} vs {b}: {k}")
