"""Glow / ConditionalGlow and their layers against independent references.

References used: torch's pixel_(un)shuffle (squeeze), numpy's wrap padding, einsum (1x1 conv), dense
Jacobians from torch.autograd.functional.jacobian with slogdet (every log-determinant), scipy's
normal log-density (change of variables), central finite differences (context gradients), Pyro's
goodness-of-fit test (samples against log_prob), explicit loops (broadcasting), torch.roll
(periodic equivariance) and the closed-form offsets of the flattened latents.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _gof import nn_gof  # Pyro's statistic, scipy's p-value
from scipy import stats

from bayessky.nn import ConditionalGlow, Glow
from bayessky.nn.coupling import AffineCoupling, inject
from bayessky.nn.glow import FlowSteps, SplitPrior, TopPrior
from bayessky.nn.layers import circular_pad, conv1x1, conv_input, squeeze, unsqueeze

F64 = torch.float64
BOUNDS = ([0.1, 0.6], [0.5, 1.0])


def randomize(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> torch.nn.Module:
    """Perturb every parameter so that no layer is an identity (zero-initialised convs, priors)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype))
    for m in module.modules():  # mark ActNorms initialised: tests control the weights
        if hasattr(m, "initialized"):
            m.initialized.fill_(True)
        if hasattr(m, "_all_initialized"):
            m._all_initialized = True
    return module


def logdet_bruteforce(fn, x: torch.Tensor) -> torch.Tensor:
    """log|det d fn(x) / dx| for ONE sample x from its dense Jacobian (float64 autograd).

    ``fn`` maps a batch (N, *shape) to (N, ...), sample by sample. The Jacobian is computed in one
    backward pass: D copies of x go through ``fn`` and the gradient of sum_i y_i[i] gives row i
    of the Jacobian in copy i (the samples of a batch do not interact).
    """
    d = x.numel()
    xs = x.detach().reshape(1, -1).repeat(d, 1).requires_grad_(True)
    y = fn(xs.reshape(d, *x.shape)).reshape(d, -1)
    assert y.shape == (d, d)
    (jac,) = torch.autograd.grad(y.diagonal().sum(), xs)
    return torch.linalg.slogdet(jac)[1]


def context(n, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    low, high = torch.tensor(BOUNDS[0], dtype=dtype), torch.tensor(BOUNDS[1], dtype=dtype)
    return low + (high - low) * torch.rand(n, 2, generator=g, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# reshaping and padding helpers


def test_squeeze_matches_pixel_unshuffle():
    x = torch.randn(3, 2, 8, 6)
    assert torch.equal(squeeze(x), torch.nn.functional.pixel_unshuffle(x, 2))
    assert torch.equal(unsqueeze(squeeze(x)), x)
    y = torch.randn(3, 8, 4, 3)
    assert torch.equal(unsqueeze(y), torch.nn.functional.pixel_shuffle(y, 2))


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("hw", [(1, 1), (2, 2), (5, 4)])
def test_circular_pad_and_conv_input_match_numpy_wrap(p, hw):
    x = torch.randn(2, 3, *hw, dtype=F64)
    ref = np.pad(x.numpy(), ((0, 0), (0, 0), (p, p), (p, p)), mode="wrap")
    np.testing.assert_array_equal(circular_pad(x, p).numpy(), ref)
    c = torch.randn(2, 2, dtype=F64)
    buf = conv_input(x, c, p)
    assert buf.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(buf[:, :3].numpy(), ref)
    const = np.broadcast_to(c.numpy()[:, :, None, None], buf[:, 3:].shape)
    np.testing.assert_array_equal(buf[:, 3:].numpy(), const)


@pytest.mark.parametrize("hw", [(8, 8), (2, 2), (1, 1)])  # the bmm path and the tiny-map GEMM path
def test_conv1x1_matches_einsum(hw):
    x, w, b = torch.randn(3, 5, *hw, dtype=F64), torch.randn(4, 5, dtype=F64), torch.randn(4, dtype=F64)
    ref = torch.einsum("oc,bchw->bohw", w, x) + b[:, None, None]
    torch.testing.assert_close(conv1x1(x, w, b), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(conv1x1(x, w), ref - b[:, None, None], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# single layers: invertibility (float32) and log-determinant (float64 dense Jacobian)

SHAPES = [(4, 2, 2), (2, 8, 8)]  # a squeezed 1x4x4 map and a 2x8x8 map


def _layers(shape, dtype=F64, scale=0.3):
    """(name, forward(x) -> (y, ld), inverse(y) -> (x, ld)) for every invertible layer."""
    torch.manual_seed(1)
    c = shape[0]
    ctx = context(2, dtype=dtype)
    out = []
    def row0(t, n):  # the first row of per-sample arguments, broadcast to a batch of n
        return None if t is None else t[:1].expand(n, *t.shape[1:])

    for periodic in (True, False):
        for d in (0, 2):
            cp = randomize(AffineCoupling(c, 6, context_dim=d, periodic=periodic).to(dtype), scale)
            cc = ctx if d else None
            out.append((f"coupling-p{periodic}-d{d}", lambda x, cp=cp, cc=cc: cp(x, row0(cc, len(x))),
                        lambda y, cp=cp, cc=cc: cp.inverse(y, row0(cc, len(y)))))
    ls, sh = 0.5 * torch.randn(1, c, dtype=dtype), torch.randn(1, c, dtype=dtype)
    out.append(("injector", lambda x: inject(x, row0(ls, len(x)), row0(sh, len(x))),
                lambda y: inject(y, row0(ls, len(y)), row0(sh, len(y)), inverse=True)))
    for d in (0, 2):
        st = randomize(FlowSteps(3, c, 6, context_dim=d).to(dtype), scale)
        inj = ([(0.3 * torch.randn(1, c, dtype=dtype), torch.randn(1, c, dtype=dtype)) for _ in range(3)]
               if d else None)
        cc = ctx if d else None

        def sub(n, inj=inj):
            return None if inj is None else [(row0(a, n), row0(b, n)) for a, b in inj]

        out.append((f"steps-d{d}", lambda x, st=st, cc=cc, sub=sub: st(x, row0(cc, len(x)), sub(len(x))),
                    lambda y, st=st, cc=cc, sub=sub: st.inverse(y, row0(cc, len(y)), sub(len(y)))))
    return out


@pytest.mark.parametrize("shape", SHAPES)
def test_layers_invert_and_logdet_matches_jacobian(shape):
    for name, fwd, inv in _layers(shape):
        x = torch.randn(2, *shape, dtype=F64)
        y, ld = fwd(x.clone())
        xr, ld_inv = inv(y.clone())
        # float64 round trip; log-dets of the two directions cancel
        torch.testing.assert_close(xr, x, rtol=0, atol=1e-10, msg=name)
        torch.testing.assert_close(ld_inv, -ld, rtol=0, atol=1e-10, msg=name)
        for i in range(2):
            ref = logdet_bruteforce(lambda v, fwd=fwd: fwd(v)[0], x[i])
            err = abs(float(ld[i].detach()) - float(ref))
            assert err < 1e-8 * max(1.0, abs(float(ref))), (name, float(ld[i]), float(ref))


@pytest.mark.parametrize("shape", SHAPES)
def test_layers_invert_in_float32(shape):
    # moderately random weights (scale 0.1): float32 round-off is amplified by the inverse's
    # expansion, which for a coupling can reach 1 / min_scale = 100 per layer
    for name, fwd, inv in _layers(shape, torch.float32, scale=0.1):
        x = torch.randn(2, *shape)
        with torch.no_grad():
            y, ld = fwd(x.clone())
            xr, ld_inv = inv(y.clone())
        assert (xr - x).abs().max() < 1e-4, name
        assert (ld + ld_inv).abs().max() < 1e-4 * max(1.0, float(ld.abs().max())), name


def test_priors_logdet_matches_jacobian():
    torch.manual_seed(2)
    ctx = context(2)
    sp = randomize(SplitPrior(2, 2, periodic=True, context_dim=2, context_width=4).double())
    tp = randomize(TopPrior(4, context_dim=2, context_width=4).double())
    keep, z = torch.randn(2, 2, 4, 4, dtype=F64), torch.randn(2, 2, 4, 4, dtype=F64)
    eps, ld = sp.standardize(z, keep, ctx)
    torch.testing.assert_close(sp.unstandardize(eps, keep, ctx)[0], z)
    zt = torch.randn(2, 4, 1, 1, dtype=F64)
    et, ldt = tp.standardize(zt, ctx)
    torch.testing.assert_close(tp.unstandardize(et, ctx)[0], zt)
    for i in range(2):
        ref = logdet_bruteforce(lambda v, i=i: sp.standardize(v, keep[i:i + 1].expand(len(v), -1, -1, -1),
                                                                ctx[i:i + 1].expand(len(v), -1))[0], z[i])
        assert abs(float(ld[i].detach() - ref)) < 1e-10
        ref = logdet_bruteforce(lambda v, i=i: tp.standardize(v, ctx[i:i + 1].expand(len(v), -1))[0], zt[i])
        assert abs(float(ldt[i].detach() - ref)) < 1e-10


def test_periodic_coupling_commutes_with_shifts():
    torch.manual_seed(3)
    cp = randomize(AffineCoupling(4, 8, context_dim=2, periodic=True).double())
    x, c = torch.randn(2, 4, 8, 8, dtype=F64), context(2)
    y, ld = cp(x, c)
    for shift in [(1, 0), (0, 3), (5, 7)]:
        ys, lds = cp(torch.roll(x, shift, dims=(2, 3)), c)
        torch.testing.assert_close(ys, torch.roll(y, shift, dims=(2, 3)), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(lds, ld, rtol=1e-12, atol=1e-12)
    # the zero-padded coupling is not equivariant (the reference must be able to fail)
    cz = randomize(AffineCoupling(4, 8, periodic=False).double())
    diff = cz(torch.roll(x, (1, 0), dims=(2, 3)))[0] - torch.roll(cz(x)[0], (1, 0), dims=(2, 3))
    assert diff.abs().max() > 1e-3


def test_periodic_glow_density_invariant_under_block_shifts():
    """A periodic Glow with L levels is equivariant to shifts by multiples of 2^L pixels."""
    flow = randomize(ConditionalGlow((1, 8, 8), 2, levels=2, steps=2, hidden=6, context_low=BOUNDS[0],
                                     context_high=BOUNDS[1]).double()).eval()
    x, c = torch.randn(3, 1, 8, 8, dtype=F64), context(3)
    lp = flow.log_prob(x, c)
    shifted = flow.log_prob(torch.roll(x, (4, -4), dims=(2, 3)), c)
    torch.testing.assert_close(shifted, lp, rtol=1e-12, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# ActNorm initialisation


def test_glow_actnorm_init_on_first_batch_and_not_after_load():
    torch.manual_seed(4)
    x = 5.0 + 3.0 * torch.randn(32, 1, 8, 8, dtype=F64)
    flow = Glow((1, 8, 8), levels=2, steps=2, hidden=6).double()
    flow(x)
    # independent check of the first step: its input is squeeze(x); its ActNorm output must be
    # standardised per channel over (batch, H, W)
    steps = flow.levels[0].steps
    xs = squeeze(x)
    out = xs * torch.exp(steps.an_log_scale[0])[None, :, None, None] + steps.an_bias[0][None, :, None, None]
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(4, dtype=F64), atol=1e-12, rtol=0)
    var = out.var(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(var, torch.ones(4, dtype=F64), atol=1e-5, rtol=0)  # 1 - 2 eps / std
    assert bool(steps.initialized.all()) and bool(flow.levels[1].steps.initialized.all())
    fresh = Glow((1, 8, 8), levels=2, steps=2, hidden=6).double()
    fresh.load_state_dict(flow.state_dict())
    fresh(torch.randn(32, 1, 8, 8, dtype=F64))  # training mode, other data
    for (k, v), (_, w) in zip(flow.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(v, w), k
    # a fresh model does initialise (the check above can fail)
    other = Glow((1, 8, 8), levels=2, steps=2, hidden=6).double()
    other(torch.randn(32, 1, 8, 8, dtype=F64))
    assert not torch.equal(other.levels[0].steps.an_bias, torch.zeros_like(other.levels[0].steps.an_bias))


# ---------------------------------------------------------------------------------------------
# whole models


def _models(shape, dtype=F64, scale=0.2):
    torch.manual_seed(5)
    g = randomize(Glow(shape, levels=2, steps=2, hidden=6).to(dtype), scale).eval()
    cg = randomize(ConditionalGlow(shape, 2, levels=2, steps=2, hidden=6, context_low=BOUNDS[0],
                                   context_high=BOUNDS[1]).to(dtype), scale).eval()
    return [(g, None), (cg, context(3, dtype=dtype))]


@pytest.mark.parametrize("shape", [(1, 4, 4), (2, 8, 8)])
def test_models_invert_in_float32(shape):
    # weights perturbed by 0.1: at 0.2 the random network's latents reach 1e4 and float32
    # round-off alone breaks 1e-4 (float64 still inverts to 1e-11 there)
    for flow, c in _models(shape, torch.float32, scale=0.1):
        x = torch.randn(3, *shape)
        for mode in (torch.enable_grad, torch.no_grad, torch.inference_mode):  # graph and in-place paths
            with mode():
                latents, _ = flow(x, c)
                xr = flow.inverse(latents, c)
            assert (xr - x).abs().max() < 1e-4, (type(flow).__name__, mode.__name__)


@pytest.mark.parametrize("shape", [(1, 4, 4), (2, 8, 8)])
def test_models_logdet_and_log_prob_by_change_of_variables(shape):
    for flow, c in _models(shape):
        x = torch.randn(3, *shape, dtype=F64)
        latents, ld = flow(x, c)
        lp = flow.log_prob(x, c)
        for i in range(3):
            ci = None if c is None else c[i:i + 1]
            ref_ld = logdet_bruteforce(lambda v, ci=ci, f=flow: f.flatten_latents(f(v, ci)[0]), x[i])
            assert abs(float(ld[i].detach() - ref_ld)) < 1e-8 * max(1.0, abs(float(ref_ld)))
            z = flow.flatten_latents(latents)[i].detach().numpy()
            ref_lp = stats.norm.logpdf(z).sum() + float(ref_ld)
            assert abs(float(lp[i].detach()) - ref_lp) < 1e-8 * max(1.0, abs(ref_lp))
        # inference paths (cached weights, in-place couplings) give the same density
        with torch.inference_mode():
            torch.testing.assert_close(flow.log_prob(x, c), lp, rtol=1e-12, atol=1e-10)


def test_sample_and_log_prob_agree_with_log_prob():
    for flow, c in _models((1, 4, 4)):
        x, lp = flow.sample_and_log_prob(3, c, generator=torch.Generator().manual_seed(0))
        # the map goes through inverse then forward: float64 round-off ~1e-10 relative
        torch.testing.assert_close(flow.log_prob(x, c), lp, rtol=1e-8, atol=1e-8)


def test_context_gradients_match_finite_differences():
    flow, _ = _models((1, 4, 4))[1]
    x = torch.randn(2, 1, 4, 4, dtype=F64)
    c = context(2).requires_grad_(True)
    grad = torch.autograd.grad(flow.log_prob(x, c).sum(), c)[0]
    w = torch.randn(2, 1, 4, 4, dtype=F64)

    def draw(cc):
        return (flow.sample(2, cc, generator=torch.Generator().manual_seed(7)) * w).sum()

    grad_s = torch.autograd.grad(draw(c), c)[0]
    h = 1e-6
    for i in range(2):
        for j in range(2):
            e = torch.zeros_like(c)
            e[i, j] = h
            with torch.no_grad():
                fd = (flow.log_prob(x, c + e).sum() - flow.log_prob(x, c - e).sum()) / (2 * h)
                fd_s = (draw(c + e) - draw(c - e)) / (2 * h)
            # central differences in float64: truncation ~h^2 * f''' and rounding ~1e-16 * |f| / h
            assert abs(float(grad[i, j] - fd)) < 1e-5 * max(1.0, abs(float(fd))), (i, j, float(fd))
            assert abs(float(grad_s[i, j] - fd_s)) < 1e-5 * max(1.0, abs(float(fd_s)))
    assert grad.abs().max() > 1e-3  # the context matters


def test_one_map_many_contexts_equals_loop():
    flow, _ = _models((2, 8, 8))[1]
    x = torch.randn(1, 2, 8, 8, dtype=F64)
    grid = context(7, seed=3)
    lp = flow.log_prob(x, grid)
    loop = torch.stack([flow.log_prob(x[0], g) for g in grid])
    assert lp.shape == (7,)
    torch.testing.assert_close(lp, loop, rtol=1e-12, atol=1e-10)
    # a shared context against many maps, and general broadcasting of batch shapes
    xs = torch.randn(4, 2, 8, 8, dtype=F64)
    loop = torch.stack([flow.log_prob(v, grid[0]) for v in xs])
    torch.testing.assert_close(flow.log_prob(xs, grid[0]), loop)
    lp2 = flow.log_prob(xs[:, None], grid[None, :3])
    assert lp2.shape == (4, 3)
    torch.testing.assert_close(lp2[2, 1], flow.log_prob(xs[2], grid[1]))


@pytest.mark.parametrize("conditional", [False, True])
def test_graph_free_passes_in_chunks_equal_whole_batch(conditional, monkeypatch):
    """log_prob, forward, inverse and sample without a graph run in chunks (7 samples -> 4
    chunks of <= 2 here): same values as one whole-batch pass."""
    import bayessky.nn.glow as glow_module

    flow, _ = _models((2, 8, 8))[int(conditional)]
    flow.eval()
    x = torch.randn(7, 2, 8, 8, dtype=F64)
    c = context(7, seed=4) if conditional else None

    def passes():
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            return flow.log_prob(x, c), flow(x, c), flow.sample(7, c, temperature=0.5, generator=gen)

    whole = passes()
    monkeypatch.setattr(glow_module, "_CHUNK_BYTES", 2 * flow._act_numel * 8)  # 2 float64 samples
    with torch.no_grad():
        assert flow._chunks(7) == 4
    chunked = passes()
    torch.testing.assert_close(chunked[0], whole[0], rtol=1e-12, atol=1e-10)
    for a, b in zip(chunked[1][0], whole[1][0]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(chunked[1][1], whole[1][1], rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(chunked[2], whole[2], rtol=1e-9, atol=1e-10)  # samples reach 1e20
    torch.testing.assert_close(flow.inverse(chunked[1][0], c), x, rtol=1e-9, atol=1e-9)


def _whiten(x: torch.Tensor, log_p: torch.Tensor):
    """A fixed affine change of variables to unit covariance (exact for densities: log p - log|A|).

    Pyro's nearest-neighbour test assumes the density is nearly constant over each neighbour
    ball; isotropic samples make that hold much better."""
    a = torch.linalg.inv(torch.linalg.cholesky(torch.cov(x.T)))
    return (x - x.mean(0)) @ a.T, log_p - torch.logdet(a)


@pytest.mark.parametrize("conditional, seed", [(False, 0), (True, 1)])
def test_goodness_of_fit_on_1x2x2(conditional, seed):
    from pyro.distributions.testing.gof import auto_goodness_of_fit

    torch.manual_seed(6)
    if conditional:
        flow = ConditionalGlow((1, 2, 2), 2, levels=1, steps=3, hidden=8, context_low=BOUNDS[0],
                               context_high=BOUNDS[1])
        c = torch.tensor([0.3, 0.8], dtype=F64)
    else:
        flow, c = Glow((1, 2, 2), levels=1, steps=3, hidden=8), None
    flow = randomize(flow.double(), 0.15).eval()  # clearly non-Gaussian, not heavy-tailed
    n = 20000  # the vector test needs > 1000 * dim samples
    with torch.no_grad():
        x = flow.sample(n, c, generator=torch.Generator().manual_seed(seed))
        lp = flow.log_prob(x, c)
        wrong = flow.log_prob(x * 1.1, c) + 4 * np.log(1.1)  # the density of x / 1.1, not of x
    w, lw = _whiten(x.reshape(n, 4), lp)
    gauss = torch.distributions.MultivariateNormal(torch.zeros(4, dtype=F64), torch.eye(4, dtype=F64))
    gof = auto_goodness_of_fit(w, lw.exp())
    # fixed seeds; the test is somewhat anti-conservative (exact Gaussians gave p down to 1e-3 in
    # trials), so the bar is 0.01 for the model, and both controls must fall below it
    assert gof > 0.01 and nn_gof(w, lw) > 0.01, gof
    assert nn_gof(w, wrong - lp + lw) < 0.01
    assert nn_gof(w, gauss.log_prob(w)) < 0.01  # the model is not Gaussian


def test_latents_flatten_with_product_offsets():
    flow = Glow((2, 8, 8), levels=3, steps=1, hidden=4).eval()
    assert flow.latent_shapes == [(4, 4, 4), (8, 2, 2), (32, 1, 1)]
    x = torch.randn(2, 2, 8, 8)
    latents, _ = flow(x)
    flat = flow.flatten_latents(latents)
    assert flat.shape == (2, 128)
    offsets = np.cumsum([0] + [int(np.prod(s)) for s in flow.latent_shapes])  # 0, 64, 96, 128
    np.testing.assert_array_equal(offsets, [0, 64, 96, 128])
    for z, a, b in zip(latents, offsets[:-1], offsets[1:]):
        torch.testing.assert_close(flat[:, a:b], z.reshape(2, -1))
    back = flow.unflatten_latents(flat)
    for z, zb in zip(latents, back):
        torch.testing.assert_close(zb, z)
    torch.testing.assert_close(flow.inverse(back), x, atol=1e-4, rtol=0)


def test_architecture_round_trip_and_cache_invalidation():
    flow, c = _models((1, 8, 8))[1]
    arch = json.loads(json.dumps(flow.architecture))
    clone = ConditionalGlow(**arch).double()
    clone.load_state_dict(flow.state_dict())
    clone.eval()
    x = torch.randn(2, 1, 8, 8, dtype=F64)
    with torch.no_grad():
        before = clone.log_prob(x, c[:2])  # fills the folded-weight cache
    torch.testing.assert_close(before, flow.log_prob(x, c[:2]))
    with torch.no_grad():
        clone.levels[0].steps.lower.add_(0.1)  # in-place change: the cache must notice
        cached = clone.log_prob(x, c[:2])
    fresh = clone.log_prob(x, c[:2])  # graph mode never uses the cache
    torch.testing.assert_close(cached, fresh)
    assert (cached - before).abs().max() > 1e-6
    assert Glow(**Glow((1, 4, 4), 1, 1, 4).architecture).dim == 16


def test_bad_inputs_raise_one_line_errors():
    flow = ConditionalGlow((1, 8, 8), 2, 2, 1, 4)
    with pytest.raises(ValueError, match="x"):
        flow.log_prob(torch.randn(2, 1, 4, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="context"):
        flow.log_prob(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="context"):
        flow.sample(3, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="shape"):
        Glow((1, 6, 6), levels=2, steps=1, hidden=4)
    with pytest.raises(ValueError, match="context"):
        Glow((1, 4, 4), 1, 1, 4).log_prob(torch.randn(1, 1, 4, 4), torch.zeros(2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    flow, c = _models((1, 8, 8))[1]
    x = torch.randn(2, 1, 8, 8, dtype=F64)
    ref = flow.log_prob(x, c[:2])
    torch.testing.assert_close(flow.cuda().log_prob(x.cuda(), c[:2].cuda()).cpu(), ref)
