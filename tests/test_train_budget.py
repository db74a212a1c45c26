"""``TrainConfig.max_minutes`` stops inside an epoch (checked between batches) and the trainer shows
the batches of an epoch as well as the epochs."""

from __future__ import annotations

import torch
from test_train_standin import AffineFlow

from bayessky.train.loop import TrainConfig, fit


def test_time_budget_ends_the_epoch_between_batches():
    x = torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    # a budget spent by the first batch: that batch alone is the (partial) epoch, then training stops
    cfg = TrainConfig(epochs=5, batch_size=8, max_minutes=1e-9, progress=False)
    res = fit(AffineFlow((1, 4, 4)), x, config=cfg)
    assert len(res.history) == 1
    assert res.history[0]["partial_epoch"] == 8 / 64


def test_without_a_budget_epochs_are_whole(capsys):
    x = torch.randn(32, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    res = fit(AffineFlow((1, 4, 4)), x, config=TrainConfig(epochs=2, batch_size=8, progress=True))
    assert len(res.history) == 2 and all("partial_epoch" not in r for r in res.history)
    err = capsys.readouterr().err
    assert "batch" in err and "epoch" in err  # the batch bar of each epoch and the epoch bar
