"""The shipped unconditional flow priors reproduce the held-out NLL written in their cards.

Each card records the mean negative log-density of its 1000 test maps, computed when it was
trained (``examples/train_dust_prior.py``); the maps are regenerated here from the card's seeds
exactly as that script drew them. A change of the Glow code, the transforms or the weight loading
that alters what the shipped files mean shows up as a different number.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bayessky
from bayessky.physics import blobs, dust_toy

TEST_SEED, VAL_SEED, N_TEST = 13_000, 12_000, 1000


def _test_maps(card: dict) -> torch.Tensor:
    data = card["data"]
    size = int(data["size"])
    if data["family"].startswith("dust"):
        x = dust_toy.sample(N_TEST, size, seed=TEST_SEED)
        return torch.as_tensor(np.asarray(x), dtype=torch.float32)[:, None]
    n_blobs = int(data["family"].split("(")[1].split()[0])
    x = torch.as_tensor(blobs.sample(N_TEST, n_blobs, size, seed=TEST_SEED, rule="unit"),
                        dtype=torch.float32)[:, None]
    gen = torch.Generator().manual_seed(VAL_SEED)  # validation noise first, then the test noise
    torch.randn(x.shape, generator=gen)
    return x + float(data["train_noise"]) * torch.randn(x.shape, generator=gen)


@pytest.mark.parametrize("name", ["dust-glow-64", "blob-glow-64"])
def test_shipped_prior_reproduces_its_card(name):
    prior = bayessky.load_prior(name)
    card = prior.card
    assert card["data"]["n_test"] == N_TEST and card["data"]["seeds"]["test"] == TEST_SEED
    x = _test_maps(card).to(prior.dtype)
    with torch.no_grad():
        nll = -torch.cat([prior.log_prob(b) for b in x.split(250)]).double().mean().item()
    expected = card["metrics"]["test_nll_flow_per_map"]
    # float32 sums over 4096 pixels and 16 flow steps: ~1e-3 nats per map of round-off
    assert abs(nll - expected) < 0.05, (nll, expected)
