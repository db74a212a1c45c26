"""Conformance suite that every bayessky prior passes (in the style of Pyro's distribution conformance tests).

Each case is a tiny, randomly initialised network of one kind wrapped as a prior with a
log10 + standardise data transform: Glow, ConditionalGlow, MapMAF (flows, exact density) and a
VAE decoder (with and without a latent MAF) and a GAN generator (latent priors). A new prior kind
gets every check below by adding one entry to ``CASES``.

References used by the checks are independent of the code under test: the change of variables
is written out here with the analytic log-Jacobian of log10 and standardise; batched results are
compared with loops; gradients with central finite differences; sampling with Pyro's nearest-
neighbour goodness-of-fit statistic (scipy p-value, tests/_gof.py); NUTS with a dense grid posterior.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from _errors import refused
from _gof import nn_gof
from pyro.infer import MCMC, NUTS

import bayessky
from bayessky.distributions.flow import FlowDistribution
from bayessky.distributions.transforms import transform_from_config
from bayessky.nn.gan import GAN
from bayessky.nn.glow import ConditionalGlow, Glow
from bayessky.nn.maf import MapMAF
from bayessky.nn.vae import VAE
from bayessky.priors import FlowPrior, LatentVariablePrior, load_prior, save_prior

NAMES = ["Omega_m", "sigma_8"]
LOW, HIGH = [0.1, 0.6], [0.5, 1.0]
MEAN, STD = 8.0, 0.5  # standardise(log10 x): y = (log10 x - 8) / 0.5
TRANSFORM = [{"name": "log10"}, {"name": "standardise", "mean": MEAN, "std": STD}]
LN_LN10 = math.log(math.log(10.0))


def _perturb(net: torch.nn.Module, scale: float, seed: int) -> torch.nn.Module:
    # zero-initialised output layers make a fresh flow the identity; perturb every weight so the
    # density, and its dependence on the context, are non-trivial
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net


def _build(kind: str, size: int = 4, scale: float = 0.15) -> torch.nn.Module:
    torch.manual_seed(0)
    shape = (1, size, size)
    levels = 1 if size == 2 else 2
    if kind == "glow":
        net = Glow(shape, levels=levels, steps=2, hidden=8)
    elif kind == "cglow":
        net = ConditionalGlow(shape, 2, levels=levels, steps=2, hidden=8, context_low=LOW, context_high=HIGH)
    elif kind == "maf":
        net = MapMAF(shape, context_dim=2, transforms=2, hidden=(16,), context_low=LOW, context_high=HIGH)
    elif kind == "vae":
        net = VAE((1, 16, 16), latent_dim=4, channels=(4, 4, 4))
    elif kind == "vae-flow":
        net = VAE((1, 16, 16), latent_dim=4, channels=(4, 4, 4),
                  latent_flow={"features": 4, "transforms": 2, "hidden": [8]})
    elif kind == "gan":
        net = GAN((1, 8, 8), latent_dim=4, width=4)
    else:
        raise ValueError(kind)
    net = _perturb(net.double(), scale if kind in ("glow", "cglow", "maf") else 0.0, seed=1)
    return net.eval().requires_grad_(False)


FLOWS = ("glow", "cglow", "maf")
LATENTS = ("vae", "vae-flow", "gan")
CASES = FLOWS + LATENTS
CONDITIONAL = ("cglow", "maf")


def _card(kind: str) -> dict:
    ctx = {"names": NAMES, "low": LOW, "high": HIGH} if kind in CONDITIONAL else None
    return {"kind": kind.split("-")[0], "context": ctx, "transform": TRANSFORM}


def make_prior(kind: str, size: int = 4, scale: float = 0.15):
    net = _build(kind, size, scale)
    if kind in FLOWS:
        return FlowPrior(net, _card(kind))
    return LatentVariablePrior(net, _card(kind))


def _contexts(p: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low, high = torch.tensor(LOW, dtype=torch.float64), torch.tensor(HIGH, dtype=torch.float64)
    return low + (high - low) * torch.rand(p, 2, generator=g, dtype=torch.float64)


def _maps(shape, seed: int = 0) -> torch.Tensor:
    """Positive maps in user units: 10^(8 + 0.5 g), g standard normal."""
    g = torch.Generator().manual_seed(seed)
    return 10.0 ** (MEAN + STD * torch.randn(shape, generator=g, dtype=torch.float64))


@pytest.fixture(autouse=True)
def _one_thread():
    # the networks here are tiny: on a loaded 2-core machine intra-op thread hand-offs cost 10x
    # the arithmetic (measured 0.3 s vs 0.03 s per gradient of a 4x4 ConditionalGlow)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _dist(prior, ctx=None):
    return prior.distribution(ctx if prior.context_names else None)


@pytest.fixture(params=CASES)
def kind(request):
    return request.param


# -- shapes, batching, expand ---------------------------------------------------------------------
def test_shapes_batching_expand(kind):
    prior = make_prior(kind)
    torch.manual_seed(0)
    if kind in FLOWS:
        d = _dist(prior, _contexts(3))
        if not prior.context_names:
            d = d.expand((3,))
        assert d.batch_shape == (3,) and d.event_shape == (4, 4)
        x = d.sample((2,))
        assert x.shape == (2, 3, 4, 4) and bool((x > 0).all())
        assert bool(d.support.check(x).all())
        assert d.log_prob(x).shape == (2, 3)
        e = d.expand((5, 3))
        assert e.batch_shape == (5, 3) and e.log_prob(x[0]).shape == (5, 3)
        assert torch.allclose(e.log_prob(x[0])[2], d.log_prob(x[0]))
        assert e.rsample((2,)).shape == (2, 5, 3, 4, 4)
    else:
        def model():
            with pyro.plate("a", 2, dim=-2), pyro.plate("b", 3, dim=-1):
                return prior.sample("m")

        tr = pyro.poutine.trace(model).get_trace()
        assert tr.nodes["m_latent"]["value"].shape == (2, 3, 4)
        assert tr.nodes["m"]["value"].shape == (2, 3, 16 if "vae" in kind else 8, 16 if "vae" in kind else 8)
        assert bool((tr.nodes["m"]["value"] > 0).all())
        assert prior.generate(5).shape[0] == 5


def test_one_map_many_contexts_equals_loop(kind):
    prior = make_prior(kind)
    if kind in FLOWS:
        ctx = _contexts(5, seed=1) if prior.context_names else None
        x1, xs = _maps((4, 4), seed=2), _maps((5, 4, 4), seed=3)
        d = _dist(prior, ctx) if ctx is not None else _dist(prior).expand((5,))
        single = [FlowDistribution(prior.net, None if ctx is None else ctx[i], TRANSFORM) for i in range(5)]
        loop1 = torch.stack([s.log_prob(x1) for s in single])
        loopn = torch.stack([s.log_prob(xs[i]) for i, s in enumerate(single)])
        assert torch.allclose(d.log_prob(x1), loop1, rtol=1e-10, atol=1e-9)  # one map x P contexts
        assert torch.allclose(d.log_prob(xs), loopn, rtol=1e-10, atol=1e-9)  # P maps x P contexts
    else:
        z = torch.randn(5, 4, dtype=torch.float64)
        loop = torch.stack([prior.decode(z[i]) for i in range(5)])
        assert torch.allclose(prior.decode(z), loop, rtol=1e-10)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_device_and_dtype_move(kind, device):
    prior = make_prior(kind)
    ctx, x = _contexts(3, seed=4), _maps((3, 4, 4), seed=5)
    z = torch.randn(3, 4, dtype=torch.float64)
    ref = _dist(prior, ctx).log_prob(x) if kind in FLOWS else prior.decode(z)
    prior.to(device=device, dtype=torch.float32)
    assert prior.device.type == device and prior.dtype == torch.float32
    if kind in FLOWS:
        d = _dist(prior, ctx.float().to(device))
        got = d.log_prob(x.float().to(device))
        s = d.sample((2,))
        assert s.device.type == device and s.dtype == torch.float32
        # float32 round-off on |log p| ~ 10-50 nats
        assert torch.allclose(got.cpu().double(), ref, rtol=1e-4, atol=1e-3)
    else:
        got = prior.decode(z.float().to(device))
        assert got.device.type == device
        assert torch.allclose(got.cpu().double(), ref, rtol=1e-4)
        m = pyro.poutine.trace(lambda: prior.sample("m")).get_trace().nodes["m"]["value"]
        assert m.device.type == device and m.dtype == torch.float32


# -- densities against an independent change of variables ---------------------------------------
def test_log_prob_vs_change_of_variables(kind):
    prior = make_prior(kind)
    if kind in FLOWS:
        ctx, x = _contexts(3, seed=6), _maps((3, 4, 4), seed=7)
        y = ((torch.log10(x) - MEAN) / STD).unsqueeze(1)  # network space (3, 1, 4, 4)
        # d y / d x = 1 / (x ln10 std) per pixel
        log_jac = (-torch.log(x) - LN_LN10 - math.log(STD)).sum(dim=(-2, -1))
        ref = prior.net.log_prob(y, ctx if prior.context_names else None) + log_jac
        got = _dist(prior, ctx).log_prob(x)
        assert torch.allclose(got, ref, rtol=1e-12, atol=1e-9)
    else:
        tr = pyro.poutine.trace(lambda: prior.sample("m")).get_trace()
        z = tr.nodes["m_latent"]["value"]
        g = prior.net.generator(z[None]) if kind == "gan" else prior.net.decoder(z[None])
        ref = 10.0 ** (MEAN + STD * g[0, 0])
        assert torch.allclose(tr.nodes["m"]["value"], ref, rtol=1e-12)
        lp = tr.nodes["m_latent"]["fn"].log_prob(z)
        if kind == "vae-flow":  # the latent site's density is the latent MAF's
            assert torch.allclose(lp, prior.net.latent_flow.log_prob(z[None])[0])
        else:
            assert torch.allclose(lp, (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum())


def _gof_pvalues(prior, ctx, temperature: float) -> list[float]:
    # temperature scales only the base draws of sample(); log_prob stays the model's density
    d = prior.distribution(ctx, temperature=temperature)
    pvalues = []
    for seed in range(5):
        torch.manual_seed(seed)
        x = d.sample((4500,))
        pvalues.append(nn_gof(x, d.log_prob(x)))
    return pvalues


@pytest.mark.parametrize("flow_kind", FLOWS)
def test_samples_match_log_prob_goodness_of_fit(flow_kind):
    """Pyro's nearest-neighbour goodness-of-fit test of samples against exp(log_prob), in user units,
    with scipy's chi^2 p-value (tests/_gof.py: Pyro's own chi2sf returns ~1 for huge chi^2).

    Tiny 1x2x2 flows (4-D maps; the test needs > 1000 * dim draws). The test assumes a locally
    flat density inside each nearest-neighbour ball, which 4500 draws in 4-D do not achieve: on
    exact N(0, I) samples it returns p < 5e-3 (Pyro's TEST_FAILURE_RATE) in 12 % of seeds
    (measured, 60 seeds), and more for skewed densities (log10 std 0.5 gave p = 0 or 1 for
    correct code). So: log10 std 0.1, weights perturbed by 0.1, five sample sets, and at least
    three must pass. Measured for correct code: 5 of 5 pass per kind (smallest p 0.009); a sampler
    at temperature 1.3 gives p < 1e-90 on every set (1.1 already fails all five). The exact
    check of the density is test_log_prob_vs_change_of_variables; this one checks that sample()
    draws from it.
    """
    prior = make_prior(flow_kind, size=2, scale=0.1)
    prior.transform = transform_from_config([{"name": "log10"},
                                             {"name": "standardise", "mean": 0.0, "std": 0.1}])
    ctx = torch.tensor([0.3, 0.8], dtype=torch.float64) if prior.context_names else None
    pvalues = _gof_pvalues(prior, ctx, 1.0)
    assert sum(p > 5e-3 for p in pvalues) >= 3, pvalues
    # negative control: samples 30 % too wide in network space must be rejected outright
    wide = _gof_pvalues(prior, ctx, 1.3)
    assert max(wide) < 1e-20, wide


# -- persistence ----------------------------------------------------------------------------------
def test_save_load_round_trip(kind, tmp_path):
    prior = make_prior(kind)
    folder = save_prior(prior, tmp_path / kind, {"metrics": {"val_nll_per_map": 1.5}})
    loaded = load_prior(folder)
    assert type(loaded) is type(prior) and loaded.kind == kind.split("-")[0]
    assert loaded.card["metrics"]["val_nll_per_map"] == 1.5
    assert loaded.card["transform"] == TRANSFORM
    assert loaded.context_names == (NAMES if kind in CONDITIONAL else None)
    assert not loaded.net.training and not any(p.requires_grad for p in loaded.net.parameters())
    if kind in FLOWS:
        ctx, x = _contexts(3, seed=8), _maps((3, 4, 4), seed=9)
        assert torch.equal(_dist(loaded, ctx).log_prob(x), _dist(prior, ctx).log_prob(x))
        if kind in CONDITIONAL:
            assert loaded.context_bounds == {"Omega_m": (0.1, 0.5), "sigma_8": (0.6, 1.0)}
    else:
        z = torch.randn(3, 4, dtype=torch.float64)
        assert torch.equal(loaded.decode(z), prior.decode(z))


class _Payload:
    """Unpickling this would create a marker file: the loader must never get that far."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("damage", ["pickle", "torch_save", "truncated", "other_architecture"])
def test_bad_checkpoint_refused_with_one_line(kind, damage, tmp_path):
    prior = make_prior(kind)
    folder = save_prior(prior, tmp_path / "good")
    weights = folder / "weights.safetensors"
    marker = tmp_path / "unpickled"
    if damage == "pickle":
        _Payload.marker = marker
        weights.write_bytes(pickle.dumps({"state": _Payload()}))
    elif damage == "torch_save":
        torch.save({"w": torch.zeros(3)}, weights)
    elif damage == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    else:
        # weights of the same kind with other widths, card hash updated so the shape check speaks
        other = make_prior(kind)
        bigger = {"glow": lambda: Glow((1, 4, 4), levels=2, steps=2, hidden=16),
                  "cglow": lambda: ConditionalGlow((1, 4, 4), 2, levels=2, steps=2, hidden=16,
                                                   context_low=LOW, context_high=HIGH),
                  "maf": lambda: MapMAF((1, 4, 4), context_dim=2, transforms=2, hidden=(32,),
                                        context_low=LOW, context_high=HIGH),
                  "vae": lambda: VAE((1, 16, 16), latent_dim=4, channels=(4, 8, 4)),
                  "vae-flow": lambda: VAE((1, 16, 16), latent_dim=4, channels=(4, 8, 4),
                                          latent_flow={"features": 4, "transforms": 2, "hidden": [8]}),
                  "gan": lambda: GAN((1, 8, 8), latent_dim=4, width=8)}[kind]()
        other.net = bigger.double()
        src = save_prior(other, tmp_path / "other")
        weights.write_bytes((src / "weights.safetensors").read_bytes())
        card = json.loads((folder / "card.json").read_text())
        card["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
        (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError) as err:
        load_prior(folder)
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 300, msg
    assert {"pickle": "pickle", "torch_save": "zip", "truncated": "truncated",
            "other_architecture": "shape"}[damage] in msg, msg
    assert not marker.exists()


def test_name_resolution(tmp_path, monkeypatch):
    prior = make_prior("cglow")
    save_prior(prior, tmp_path / "env" / "my-prior")
    monkeypatch.setenv("BAYESSKY_MODELS", str(tmp_path / "env"))
    assert bayessky.load_prior("my-prior").kind == "cglow"
    monkeypatch.delenv("BAYESSKY_MODELS")
    save_prior(make_prior("gan"), tmp_path / "cwd" / "models" / "my-gan")
    monkeypatch.chdir(tmp_path / "cwd")
    assert bayessky.load_prior("models/my-gan").kind == "gan"  # a relative folder path
    with pytest.raises(FileNotFoundError, match="no prior named"):
        bayessky.load_prior("my-gan")  # a bare name is not looked up in ./models: only the env and shipped
    with pytest.raises(FileNotFoundError, match="no prior named"):
        bayessky.load_prior("no-such-prior")


# -- gradients ------------------------------------------------------------------------------------
def test_gradients_vs_finite_differences(kind):
    """Context gradients (conditional flows), map gradients (unconditional flow), latent gradients
    (decoders) against central differences; float64, h = 1e-6: error ~ h^2 + 1e-16 / h."""
    prior = make_prior(kind)
    h = 1e-6
    if kind in CONDITIONAL:
        x = _maps((2, 4, 4), seed=10)

        def f(c):
            return prior.distribution(c).log_prob(x).sum()

        c0 = torch.tensor([0.3, 0.8], dtype=torch.float64)
    elif kind in FLOWS:
        g = torch.Generator().manual_seed(11)

        def f(v):
            x = 10.0 ** (MEAN + STD * v.reshape(4, 4))
            return prior.distribution().log_prob(x)

        c0 = torch.randn(16, generator=g, dtype=torch.float64)
    else:
        w = torch.randn(16 if "vae" in kind else 8, 16 if "vae" in kind else 8, dtype=torch.float64)

        def f(z):
            return (torch.log10(prior.decode(z)) * w).sum()

        c0 = torch.randn(4, dtype=torch.float64)
    c = c0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(c), c)
    fd = torch.stack([(f(c0 + h * e) - f(c0 - h * e)) / (2 * h) for e in torch.eye(len(c0), dtype=c0.dtype)])
    assert torch.allclose(grad, fd, rtol=1e-5, atol=1e-6), (grad, fd)
    assert grad.abs().max() > 1e-3  # the dependence is real, not a detached zero


# -- use inside Pyro ------------------------------------------------------------------------------
def test_sample_sites_in_pyro_model(kind):
    prior = make_prior(kind)
    ctx = torch.tensor([0.3, 0.8], dtype=torch.float64)

    def model():
        with pyro.plate("maps", 2):
            return prior.sample("dust", ctx if prior.context_names else None)

    tr = pyro.poutine.trace(model).get_trace()
    tr.compute_log_prob()
    site = tr.nodes["dust"]
    assert site["type"] == "sample"
    if kind in FLOWS:
        assert isinstance(site["fn"], FlowDistribution) and site["value"].shape == (2, 4, 4)
        ref = FlowDistribution(prior.net, ctx if prior.context_names else None, TRANSFORM)
        ref = ref.log_prob(site["value"])
        assert torch.allclose(site["log_prob"], ref)
    else:
        lat = tr.nodes["dust_latent"]
        assert lat["type"] == "sample" and not lat["is_observed"] and lat["value"].shape == (2, 4)
        assert site["infer"].get("_deterministic") is True
        assert torch.equal(site["value"], prior.decode(lat["value"]))


@pytest.mark.parametrize("flow_kind", CONDITIONAL)
def test_nuts_moves_a_context_parameter(flow_kind):
    """1-D posterior over Omega_m (sigma_8 fixed) from maps drawn at Omega_m = 0.3: NUTS mean and
    std vs a 2001-point grid of the same posterior (uniform prior on the training range)."""
    prior = make_prior(flow_kind, size=2)  # 1x2x2 maps keep the ~1000 gradient evaluations cheap
    torch.manual_seed(2)
    data = prior.distribution(torch.tensor([0.3, 0.8], dtype=torch.float64)).sample((40,))
    s8 = torch.tensor(0.8, dtype=torch.float64)

    def model():
        om = pyro.sample("Omega_m", dist.Uniform(torch.tensor(0.1, dtype=torch.float64),
                                                 torch.tensor(0.5, dtype=torch.float64)))
        with pyro.plate("maps", data.shape[0]):
            pyro.sample("x", prior.distribution(torch.stack([om, s8])), obs=data)

    grid = torch.linspace(0.1, 0.5, 2001, dtype=torch.float64)[1:-1]
    with torch.no_grad():
        ll = prior.distribution(torch.stack([grid, s8.expand_as(grid)], -1)).log_prob(data[:, None]).sum(0)
    w = torch.softmax(ll, 0)
    mean = float((w * grid).sum())
    std = float((w * (grid - mean) ** 2).sum().sqrt())
    assert std < 0.08  # the maps inform Omega_m (a uniform posterior has std 0.115)

    pyro.set_rng_seed(3)
    mcmc = MCMC(NUTS(model), num_samples=150, warmup_steps=80, disable_progbar=True)
    mcmc.run()
    om = mcmc.get_samples()["Omega_m"].numpy()
    n_eff = float(mcmc.diagnostics()["Omega_m"]["n_eff"])  # measured 26 (maf) - 66 (cglow) of 150
    # 4 Monte-Carlo standard errors of the mean; the std's relative error is ~1/sqrt(2 n_eff) < 15%
    assert abs(om.mean() - mean) < 4 * std / math.sqrt(n_eff), (om.mean(), mean, std, n_eff)
    assert 0.6 < om.std() / std < 1.5, (om.std(), std)
    assert np.all((om > 0.1) & (om < 0.5))


# -- argument validation --------------------------------------------------------------------------
@pytest.mark.parametrize("flow_kind", FLOWS)
def test_argument_validation_one_line(flow_kind):
    prior = make_prior(flow_kind)
    ctx = torch.tensor([0.3, 0.8], dtype=torch.float64)
    d = _dist(prior, ctx)
    x = _maps((4, 4))
    bad = {"trailing shape": x[:3], "NaN": torch.where(torch.arange(16).reshape(4, 4) == 5, float("nan"), x),
           "support": -x}
    for what, value in bad.items():
        with pytest.raises(ValueError, match=what) as err:
            d.log_prob(value)
        assert str(err.value).startswith("value:") and "\n" not in str(err.value)
    if prior.context_names:
        with pytest.raises(ValueError, match=r"context: Omega_m outside the training range \[0.1, 0.5\]"):
            prior.distribution({"Omega_m": 0.7, "sigma_8": 0.8})
        with pytest.raises(ValueError, match="context: required"):
            prior.distribution()
        with pytest.raises(ValueError, match=r"expected shape \(\.\.\., 2\)"):
            prior.distribution(torch.tensor([0.3]))
        named = prior.distribution({"Omega_m": 0.3, "sigma_8": 0.8}).log_prob(x)
        assert torch.equal(named, d.log_prob(x))
    else:
        with pytest.raises(ValueError, match="unconditional"):
            FlowDistribution(prior.net, ctx)


# -- boundary checks that hold with Pyro's validation off (MCMC and bayessky.infer switch it off) --
def _one_line_value_error(fn, *needles):
    with pytest.raises(ValueError) as err:
        fn()
    msg = str(err.value).splitlines()[0]
    for needle in needles:
        assert needle in msg, msg
    return msg


@pytest.mark.parametrize("flow_kind", CONDITIONAL)
def test_context_range_checked_with_validation_off(flow_kind):
    prior = make_prior(flow_kind)
    x = _maps((4, 4))
    with pyro.validation_enabled(False):
        _one_line_value_error(lambda: prior.distribution({"Omega_m": 0.7, "sigma_8": 0.8}),
                              "context:", "Omega_m outside the training range")
    # an explicit validate_args=False turns off the O(map) value checks, not the context check
    _one_line_value_error(lambda: prior.distribution({"Omega_m": 0.3, "sigma_8": 1.4}, validate_args=False),
                          "context:", "sigma_8 outside the training range")
    # the engines' vmap path: one out-of-range member of the batch is enough
    s8 = torch.tensor(0.8, dtype=torch.float64)

    def one(om):
        return prior.distribution({"Omega_m": om, "sigma_8": s8}).log_prob(x)

    ok = torch.func.vmap(one)(torch.tensor([0.2, 0.3, 0.4], dtype=torch.float64))
    assert ok.shape == (3,) and torch.isfinite(ok).all()
    _one_line_value_error(lambda: torch.func.vmap(one)(torch.tensor([0.2, 0.3, 0.9], dtype=torch.float64)),
                          "context:", "Omega_m outside the training range", "max 0.9")


@pytest.mark.parametrize("flow_kind", CONDITIONAL)
def test_grid_engine_refuses_a_prior_wider_than_the_training_box(flow_kind):
    from bayessky import infer

    prior = make_prior(flow_kind)
    x = _maps((4, 4))

    def model(data, wide=False):
        om = pyro.sample("Omega_m", dist.Uniform(0.0, 2.0) if wide else dist.Uniform(0.1, 0.5))
        s8 = pyro.sample("sigma_8", dist.Uniform(0.6, 1.0))
        pyro.sample("map", prior.distribution({"Omega_m": om, "sigma_8": s8}), obs=data)

    inside = {"Omega_m": torch.linspace(0.1, 0.5, 5, dtype=torch.float64),
              "sigma_8": torch.linspace(0.6, 1.0, 4, dtype=torch.float64)}
    post = infer.grid(model, x, grid=inside)  # the training box itself, end points included
    assert 0.1 <= float(post.mean["Omega_m"]) <= 0.5
    wide = dict(inside, Omega_m=torch.linspace(0.05, 1.9, 5, dtype=torch.float64))
    _one_line_value_error(lambda: infer.grid(model, x, True, grid=wide), "context:",
                          "Omega_m outside the training range")


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
@pytest.mark.parametrize("kind_", ["cglow", "gan"])
def test_temperature_must_be_positive_and_finite(kind_, temperature):
    prior = make_prior(kind_)
    ctx = {"Omega_m": 0.3, "sigma_8": 0.8} if prior.context_names else None
    if kind_ in FLOWS:
        _one_line_value_error(lambda: prior.distribution(ctx, temperature=temperature), "temperature:")
    _one_line_value_error(lambda: prior.generate(2, ctx, temperature=temperature), "temperature:")


# -- load_prior / generate / decode boundary checks -----------------------------------------------
@pytest.mark.parametrize("arg, exc, name", [
    ({"dtype": torch.int32}, TypeError, "dtype"),
    ({"dtype": "float"}, TypeError, "dtype"),
    ({"device": "gpu"}, ValueError, "device"),
    pytest.param({"device": "cuda"}, ValueError, "device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")),
])
def test_load_prior_device_and_dtype_checked(tmp_path, arg, exc, name):
    folder = save_prior(make_prior("gan"), tmp_path / "p")
    refused(exc, name, lambda: load_prior(folder, **arg))
    refused(exc, name, lambda: bayessky.load_prior(folder, **arg))
    # the same checks guard .to()
    refused(exc, name, lambda: make_prior("gan").to(**arg))


@pytest.mark.parametrize("arg, exc", [("", ValueError), ("  ", ValueError), (None, TypeError),
                                      (123, TypeError)])
def test_load_prior_name_checked(tmp_path, monkeypatch, arg, exc):
    # '' used to resolve to the current folder and report a missing card.json
    save_prior(make_prior("gan"), tmp_path)
    monkeypatch.chdir(tmp_path)
    refused(exc, "name_or_path", lambda: bayessky.load_prior(arg))


@pytest.mark.parametrize("kind_", ["cglow", "gan", "vae-flow"])
@pytest.mark.parametrize("n, exc", [(0, ValueError), (-1, ValueError), (2.7, ValueError), ("2", TypeError)])
def test_generate_count_checked(kind_, n, exc):
    prior = make_prior(kind_)
    ctx = {"Omega_m": 0.3, "sigma_8": 0.8} if prior.context_names else None
    refused(exc, "n", lambda: prior.generate(n, ctx))
    assert prior.generate(2.0, ctx).shape[0] == 2  # an integral float is a count


def test_latent_decode_and_noise_checked():
    prior = make_prior("gan")
    refused(ValueError, "z", lambda: prior.decode(torch.full((4,), float("nan"), dtype=torch.float64)))
    refused(ValueError, "z", lambda: prior.decode(torch.tensor(0.0, dtype=torch.float64)))
    refused(TypeError, "z", lambda: prior.decode("abc"))
    assert prior.decode(np.zeros(4)).shape == (8, 8)
    refused(ValueError, "noise", lambda: LatentVariablePrior(prior.net, prior.card, noise=float("inf")))
