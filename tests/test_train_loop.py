"""The generic trainer on the per-pixel Gaussian stand-in: closed-form optimum, metrics, exact resume."""

import json
import math
import shutil

import numpy as np
import pytest
import scipy.stats
import test_train_standin as standin
import torch
from test_train_standin import AffineFlow

from bayessky.data.augment import Augment
from bayessky.priors.checkpoint import load_checkpoint
from bayessky.train.loop import STATE_FILE, TrainConfig, evaluate, fit


@pytest.fixture(autouse=True)
def _one_thread():
    yield from standin.single_thread()


@pytest.fixture
def toy_kind(monkeypatch):
    return standin.register_toy(monkeypatch)


SHAPE = (1, 4, 4)


def _data(n, seed, context=False):
    g = torch.Generator().manual_seed(seed)
    mu = torch.linspace(-1, 2, 16).reshape(SHAPE)
    sd = torch.linspace(0.5, 1.5, 16).reshape(SHAPE)
    x = mu + sd * torch.randn(n, *SHAPE, generator=g)
    if not context:
        return x
    c = torch.rand(n, 2, generator=g)
    return x + 0.5 * c[:, :1, None, None], c


def _card(kind, context_dim=0):
    return {"kind": kind, "architecture": {"shape": list(SHAPE), "context_dim": context_dim},
            "transform": [], "data": {"family": "test"}}


def test_converges_to_closed_form_and_reports_exact_metrics(tmp_path, toy_kind):
    train, val = _data(2000, 0), _data(500, 1)
    model = AffineFlow(SHAPE)
    cfg = TrainConfig(epochs=40, batch_size=500, lr=0.05, progress=False, lr_patience=3)
    res = fit(model, train, val, config=cfg, out=tmp_path, card=_card(toy_kind))
    # MLE of a per-pixel Gaussian = sample mean and (biased) sample std of the training maps.
    # Adam ends within its step noise of the MLE (measured: 0.014 in mean, 1.4 % in std);
    # tolerances 0.03 and 3 % leave a factor 2 and are below the MLE's own standard error
    # (sd / sqrt(2000) ~ 0.03), so they test convergence to the optimum, not just "it learned".
    np.testing.assert_allclose(model.mu.detach().numpy(), train.mean(0).numpy(), atol=0.03)
    np.testing.assert_allclose(model.log_s.exp().detach().numpy(), train.std(0, unbiased=False).numpy(),
                               rtol=0.03)
    # the reported held-out NLL is exactly the Gaussian NLL of the final parameters (scipy)
    ref = -scipy.stats.norm.logpdf(val.numpy(), model.mu.detach().numpy(),
                                   model.log_s.exp().detach().numpy()).reshape(500, -1).sum(1).mean()
    m = res.metrics
    assert m["val_nll_per_map"] == pytest.approx(ref, rel=1e-6)  # float32 network, float64 sums
    assert m["val_nll_per_pixel"] == pytest.approx(ref / 16, rel=1e-6)
    assert m["val_bits_per_pixel"] == pytest.approx(ref / (16 * math.log(2)), rel=1e-6)
    # card written and loadable; the loaded model gives the same density
    back, card = load_checkpoint(tmp_path, expected_kind=toy_kind)
    x = val[:5]
    assert torch.equal(back.log_prob(x), model.log_prob(x))
    assert card["metrics"]["val_nll_per_map"] == pytest.approx(ref, rel=1e-6)
    assert card["training"]["lr"] == 0.05 and card["training"]["optimizer"] == "Adam"
    assert card["data"]["n_train"] == 2000 and card["data"]["family"] == "test"
    assert len(json.loads((tmp_path / "history.json").read_text())) == 40


def _resume_run(out, epochs, stop_after=None, kind="toyflow"):
    torch.manual_seed(0)
    model = AffineFlow(SHAPE, context_dim=2)
    train, val = _data(300, 0, context=True), _data(100, 1, context=True)
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=0.3, progress=False, lr_patience=0, lr_factor=0.5)

    def callback(epoch, record):
        if stop_after is not None and epoch == stop_after:
            raise KeyboardInterrupt  # a kill right after the epoch's checkpoint

    return fit(model, train, val, config=cfg, augment=Augment(), out=out, resume=True,
               card=_card(kind, 2), callback=callback)


def test_resume_is_exact(tmp_path, toy_kind):
    ref = _resume_run(tmp_path / "ref", 4)
    with pytest.raises(KeyboardInterrupt):
        _resume_run(tmp_path / "cut", 4, stop_after=1)
    assert (tmp_path / "cut" / STATE_FILE).exists() and not (tmp_path / "cut" / "card.json").exists()
    again = _resume_run(tmp_path / "cut", 4)
    for k, v in ref.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[k], v), k
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in ref.history]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in again.history]
    assert ref.metrics == again.metrics
    # the plateau scheduler acted (patience 0): the resumed run carried its state over
    assert len({r["lr"] for r in ref.history}) > 1


def test_fresh_data_every_epoch_converges_and_resumes_exactly(tmp_path, toy_kind):
    """``train`` as a function of the epoch (an infinite generator): each epoch trains on its own
    draw (called with 1, 2, ... once each, and again only for the epoch a resume continues),
    the fit reaches the generating Gaussian (the MLE over all the fresh maps seen), and a run
    killed after epoch 2 and resumed ends bit-identical to the uninterrupted one."""
    calls = []

    def fresh(epoch):
        calls.append(epoch)
        return _data(2000, 100 + epoch)

    def run(out, stop_after=None):
        torch.manual_seed(0)
        model = AffineFlow(SHAPE)
        cfg = TrainConfig(epochs=40, batch_size=500, lr=0.05, progress=False, lr_patience=3)

        def callback(epoch, record):
            if stop_after is not None and epoch == stop_after:
                raise KeyboardInterrupt
        return fit(model, fresh, _data(300, 1), config=cfg, out=out, resume=True, card=_card(toy_kind),
                   callback=callback)

    ref = run(tmp_path / "ref")
    assert calls == list(range(1, 41))
    mu = torch.linspace(-1, 2, 16).reshape(SHAPE)
    sd = torch.linspace(0.5, 1.5, 16).reshape(SHAPE)
    # the generating values within Adam's step noise (0.014 in mean, 1.4 % in std on one fixed
    # 2000-map set, test above) plus the standard error of the maps seen (sd / sqrt(80000) ~ 0.005)
    np.testing.assert_allclose(ref.model.mu.detach().numpy(), mu.numpy(), atol=0.04)
    np.testing.assert_allclose(ref.model.log_s.exp().detach().numpy(), sd.numpy(), rtol=0.04)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", stop_after=2)
    again = run(tmp_path / "cut")
    assert calls == [1, 2] + list(range(3, 41))
    for k, v in ref.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[k], v), k


def test_resume_refuses_another_architecture(tmp_path, toy_kind):
    _resume_run(tmp_path, 1)
    with pytest.raises(ValueError) as info:
        fit(AffineFlow((1, 2, 2)), torch.zeros(4, 1, 2, 2), out=tmp_path, resume=True,
            card={"kind": toy_kind, "architecture": {"shape": [1, 2, 2], "context_dim": 0}},
            config=TrainConfig(epochs=2, progress=False))
    assert "architecture" in str(info.value) and "\n" not in str(info.value)


def test_early_stopping_and_plateau_schedule(toy_kind):
    # frozen location/scale: the loss cannot improve after epoch 1, so with patience p training
    # stops after 1 + p epochs; ReduceLROnPlateau(patience=1, factor=0.5) halves the lr after
    # every 2 non-improving epochs (torch docs): lrs 1, 1, 1, 0.5, 0.5, 0.25
    class Frozen(AffineFlow):
        def log_prob(self, x, context=None):
            return super().log_prob(x).detach() + 0.0 * self.mu.sum()  # zero gradient

    model = Frozen(SHAPE)
    cfg = TrainConfig(epochs=50, lr=1.0, lr_patience=1, lr_factor=0.5, min_lr=0.0, early_stopping=5,
                      progress=False)
    res = fit(model, _data(64, 0), _data(32, 1), config=cfg)
    assert len(res.history) == 6
    assert [r["lr"] for r in res.history] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25]


def test_divergence_and_bad_inputs_are_one_line():
    class Broken(AffineFlow):
        def log_prob(self, x, context=None):
            return super().log_prob(x) * float("nan")

    with pytest.raises(FloatingPointError) as info:
        fit(Broken(SHAPE), _data(8, 0), config=TrainConfig(epochs=1, progress=False))
    assert "diverged" in str(info.value) and "\n" not in str(info.value)
    bad = _data(8, 0)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        fit(AffineFlow(SHAPE), bad, config=TrainConfig(epochs=1, progress=False))
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-1)
    with pytest.raises(ValueError, match="differ"):
        fit(AffineFlow(SHAPE), _data(8, 0), torch.zeros(3, 1, 2, 2),
            config=TrainConfig(epochs=1, progress=False))


def test_vae_objective_is_the_negative_elbo():
    # evaluate() must report -mean ELBO under its fixed seed; reference: the model's own
    # elbo drawn with the same seed in one batch (an independent call path)
    from bayessky.nn.vae import VAE

    torch.manual_seed(0)
    vae = VAE((1, 16, 16), latent_dim=4, channels=(4, 4, 4))
    x = 3.0 * torch.randn(20, 1, 16, 16)
    got = evaluate(vae, x, "elbo", batch_size=64, seed=5)
    vae.eval()
    with torch.no_grad():
        torch.manual_seed(5)
        ref = -vae.elbo(x).double().mean().item()
    assert got == pytest.approx(ref, rel=1e-6)
    # white noise of std 3: the decoder's sigma starts at 1, -ELBO ~ 256 * 5.4 nats; the best a
    # model can do is the true NLL, 256 * 2.5 nats. A few steps must remove a good part of the gap.
    before = evaluate(vae, x, "elbo", seed=5)
    fit(vae, x, objective="elbo", config=TrainConfig(epochs=6, batch_size=10, lr=0.05, progress=False))
    after = evaluate(vae, x, "elbo", seed=5)
    assert 256 * 2.5 - 30 < after < before - 0.25 * (before - 256 * 2.5)


def test_write_prior_merges_the_given_card_over_the_trainer_record(tmp_path, toy_kind):
    """write_prior (both trainers' end step): the caller's card entries win, sizes and metrics
    are added, and the card comes back as read from the folder."""
    from bayessky.train._common import write_prior

    net = AffineFlow(SHAPE)
    card = _card(toy_kind)
    card["training"] = {"note": "given", "lr": 0.5}
    card["metrics"] = {"extra": 1.0}
    out = write_prior(tmp_path, net, card, {"lr": 0.1, "epochs_run": 3},
                      {"val_nll_per_map": 2.0, "extra": 0.0}, n_train=10, n_val=None)
    assert out["training"] == {"lr": 0.5, "epochs_run": 3, "note": "given"}
    assert out["data"] == {"n_train": 10, "family": "test"}
    assert out["metrics"] == {"val_nll_per_map": 2.0, "extra": 1.0}
    assert json.loads((tmp_path / "card.json").read_text())["data"]["n_train"] == 10
    loaded, _ = load_checkpoint(tmp_path)
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    out = write_prior(tmp_path, net, _card(toy_kind), {}, {}, n_train=10, n_val=4)
    assert out["data"] == {"n_train": 10, "n_val": 4, "family": "test"}


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile's CPU backend needs a C++ compiler")
def test_compiled_training_follows_the_eager_run(tmp_path):
    """TrainConfig(compile=True): the same conditional Glow, data and seed trained through
    torch.compile give the eager run's losses and weights up to float32 rounding (fused kernels
    sum in another order), ActNorm's data-dependent init included; evaluation stays eager."""
    from bayessky.nn import ConditionalGlow

    x, c = _data(96, 0, context=True)
    x = torch.cat([x, x.flip(-1)], -1).repeat(1, 1, 2, 1)  # (96, 1, 8, 8)
    runs = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        net = ConditionalGlow((1, 8, 8), 2, levels=1, steps=2, hidden=8)
        # two full batches per epoch: one batch shape, one compilation (tens of seconds on CI)
        cfg = TrainConfig(epochs=2, batch_size=48, lr=1e-3, progress=False, compile=compiled)
        runs[compiled] = fit(net, (x, c), val=(x[:32], c[:32]), config=cfg)
    eager, comp = runs[False], runs[True]
    for key in ("train_nll_per_map", "val_nll_per_map"):
        a = [h[key] for h in eager.history]
        b = [h[key] for h in comp.history]
        np.testing.assert_allclose(b, a, rtol=2e-4)  # Adam amplifies last-bit gradient differences
    for (name, p), q in zip(eager.model.state_dict().items(), comp.model.state_dict().values()):
        if p.is_floating_point():
            # Adam moves a parameter by ~lr per step whatever its gradient's size, so near-zero
            # gradients that round differently can part by up to steps x lr (4 x 1e-3)
            assert torch.allclose(p, q, rtol=1e-2, atol=4e-3), name
    assert comp.history[-1]["val_nll_per_map"] == pytest.approx(
        evaluate(comp.model, (x[:32], c[:32])), rel=1e-6)
    with pytest.raises(ValueError, match="compile: expected True or False"):
        TrainConfig(compile="yes")
