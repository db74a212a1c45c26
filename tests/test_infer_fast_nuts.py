"""bayessky.infer.fast_nuts: batched multinomial NUTS checked against closed forms and Pyro's NUTS.

Tolerances come from the Monte Carlo standard error (MCSE = sd / sqrt(ESS), ESS from ArviZ's
``ess(method="mean")``, the ESS that governs the error of a sample mean):
a mean is accepted within 4 MCSE (two-sided p ~ 6e-5 per coordinate under a correct sampler).
Second moments are checked through the MCSE of the draws of x^2 in the same way.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special

import bayessky.infer.fast_nuts as fast_nuts
from bayessky.infer._adaptation import DualAveraging, Welford, adaptation_schedule
from bayessky.infer.fast_nuts import sample

az = pytest.importorskip("arviz")


def _ess(draws: np.ndarray, method: str = "mean") -> np.ndarray:
    """ArviZ ESS of (chains, draws, D) per coordinate."""
    ds = az.convert_to_dataset({"x": draws})
    return np.asarray(az.ess(ds, method=method)["x"].values)


def _mean_and_mcse(draws: np.ndarray):
    ess = _ess(draws)
    flat = draws.reshape(-1, draws.shape[-1])
    return flat.mean(0), flat.std(0) / np.sqrt(ess), ess


def _gaussian_10d():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(10, 10, generator=g, dtype=torch.float64)
    cov = a @ a.T / 10 + 0.2 * torch.eye(10, dtype=torch.float64)
    mean = torch.linspace(-2.0, 3.0, 10, dtype=torch.float64)
    prec = torch.linalg.inv(cov)

    def potential(q):
        x = q - mean
        return 0.5 * ((x @ prec) * x).sum(-1)

    return potential, mean, cov


@pytest.mark.parametrize("dense", [False, True])
def test_correlated_gaussian_moments(dense):
    """10-D correlated Gaussian: means within 4 MCSE, second moments within 4 MCSE of x^2."""
    potential, mean, cov = _gaussian_10d()
    out = sample(potential, torch.zeros(4, 10, dtype=torch.float64), 400, 300, dense_mass=dense, seed=11,
                 progress_bar=False)
    x = out["samples"].numpy()
    assert x.shape == (4, 400, 10)
    m, mcse, _ = _mean_and_mcse(x)
    assert _ess(x, "bulk").min() > 300  # the sampler mixes (1600 draws; NumPyro gets ~1000+ here)
    z = (m - mean.numpy()) / mcse
    assert np.abs(z).max() < 4.0, z
    # Variances: E[(x - mu)^2] with its own MCSE.
    sq = (x - mean.numpy()) ** 2
    m2, mcse2, _ = _mean_and_mcse(sq)
    z2 = (m2 - cov.diag().numpy()) / mcse2
    assert np.abs(z2).max() < 4.0, z2
    assert not out["diverging"].any()
    assert out["accept_prob"].mean() > 0.6
    if dense:
        # The adapted inverse mass approaches the posterior covariance (Stan shrinkage aside);
        # a 250-draw covariance estimate in 10-D has relative errors of order sqrt(2/250) ~ 0.1.
        m_inv = out["inverse_mass_matrix"]
        assert m_inv.shape == (4, 10, 10)
        rel = torch.linalg.matrix_norm(m_inv.mean(0) - cov) / torch.linalg.matrix_norm(cov)
        assert rel < 0.25, rel
    else:
        assert out["inverse_mass_matrix"].shape == (4, 10)


def test_skewed_log_gamma_target():
    """q = log x with x ~ Gamma(a, b): E[q] = digamma(a) - log b, Var[q] = trigamma(a) (closed form)."""
    a = torch.tensor([0.7, 3.0], dtype=torch.float64)
    b = torch.tensor([1.0, 2.5], dtype=torch.float64)

    def potential(q):  # -log Gamma(e^q; a, b) - q   (Jacobian of x = e^q)
        return -(a * q - b * q.exp()).sum(-1)

    out = sample(potential, torch.zeros(4, 2, dtype=torch.float64), 1000, 300, seed=1, progress_bar=False)
    x = out["samples"].numpy()
    m, mcse, _ = _mean_and_mcse(x)
    ref_mean = special.digamma(a.numpy()) - np.log(b.numpy())
    assert np.abs((m - ref_mean) / mcse).max() < 4.0, (m, ref_mean, mcse)
    ref_var = special.polygamma(1, a.numpy())
    m2, mcse2, _ = _mean_and_mcse((x - ref_mean) ** 2)
    assert np.abs((m2 - ref_var) / mcse2).max() < 4.0, (m2, ref_var, mcse2)
    # Skewness: the third central moment is polygamma(2, a) < 0 (log-gamma is left-skewed). ESS
    # estimates of cubes are unreliable at this length, so the tolerance comes from the measured
    # seed-to-seed spread of m3 / polygamma(2, a) at 4 x 1000 draws: sd 0.34 and 0.28 (NumPyro:
    # 0.22 and 0.30; both unbiased over 24 seeds); 1.0 is about 3 sd.
    m3 = ((x.reshape(-1, 2) - ref_mean) ** 3).mean(0)
    ratio = m3 / special.polygamma(2, a.numpy())
    assert np.all(np.abs(ratio - 1) < 1.0) and np.all(m3 < 0), ratio


def test_same_seed_same_draws_and_float32():
    """Same seed -> identical output; another seed -> different; dtype follows initial_params."""

    def potential(q):
        return 0.5 * (q**2).sum(-1) + 0.1 * q[:, 0] ** 4

    q0 = torch.zeros(3, 4)
    a = sample(potential, q0, 30, 30, seed=7, progress_bar=False)
    b = sample(potential, q0, 30, 30, seed=7, progress_bar=False)
    c = sample(potential, q0, 30, 30, seed=8, progress_bar=False)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a["samples"], c["samples"])
    assert a["samples"].dtype == torch.float32 and a["step_size"].dtype == torch.float32
    assert a["diverging"].dtype == torch.bool and a["tree_depth"].shape == (3, 30)
    # The global torch RNG drives seed=None, so torch.manual_seed reproduces it.
    torch.manual_seed(1)
    d = sample(potential, q0, 5, 5, progress_bar=False)
    torch.manual_seed(1)
    e = sample(potential, q0, 5, 5, progress_bar=False)
    assert torch.equal(d["samples"], e["samples"])


def test_parallel_chains_give_the_vectorized_draws():
    """Per-chain generators make a chain's draws independent of its neighbours: the chains split
    over 2 forked processes give bit-identical output to one batch, 3 processes (blocks of 2, 1, 1)
    the same up to the rounding of batch-size-dependent kernels, and the first chain run alone the
    same as chain 0 of the batch. (The diagonal potential keeps every row's arithmetic separate.)"""
    w = torch.linspace(0.5, 3.0, 10, dtype=torch.float64)

    def potential(q):
        return 0.5 * ((q - 1.0) ** 2 * w).sum(-1) + 0.05 * (q[:, :2] ** 4).sum(-1)

    q0 = torch.randn(4, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    kw = dict(num_samples=60, warmup_steps=60, seed=5, progress_bar=False)
    vec = sample(potential, q0, **kw)
    two = sample(potential, q0, chain_method="parallel", processes=2, **kw)
    three = sample(potential, q0, chain_method="parallel", processes=3, **kw)
    alone = sample(potential, q0[:1], **kw)
    assert set(two) == set(vec)
    for k in vec:
        assert two[k].shape == vec[k].shape and two[k].dtype == vec[k].dtype, k
        assert torch.equal(two[k], vec[k]), k
        # rounding differences of 1e-16 grow along trajectories (Hamiltonian flow is chaotic)
        torch.testing.assert_close(three[k], vec[k], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(alone[k], vec[k][:1], rtol=1e-6, atol=1e-6)
    assert vec["num_steps"].float().mean() > 2  # real trajectories, not a degenerate sampler
    assert not torch.equal(vec["samples"][0], vec["samples"][1])  # chains are not copies


def test_parallel_worker_failure_is_reported_by_the_parent():
    def potential(q):
        raise ValueError("boom in the model")

    with pytest.raises(RuntimeError, match="worker 0 failed: ValueError: boom in the model"):
        sample(potential, torch.zeros(2, 3), 5, 5, chain_method="parallel", processes=2,
               progress_bar=False)
    with pytest.raises(ValueError, match="chain_method"):
        sample(lambda q: (q**2).sum(-1), torch.zeros(2, 3), 5, 5, chain_method="threads",
               progress_bar=False)
    with pytest.raises(ValueError, match="processes"):
        sample(lambda q: (q**2).sum(-1), torch.zeros(2, 3), 5, 5, chain_method="parallel",
               processes=0, progress_bar=False)


def test_agrees_with_pyro_nuts_on_5d_target():
    """Same non-Gaussian 5-D target in Pyro's NUTS (an independent implementation): first and
    second moments agree within 4 combined MCSE."""
    pyro = pytest.importorskip("pyro")
    from pyro.infer import MCMC, NUTS

    g = torch.Generator().manual_seed(0)
    mix = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))[0] * torch.tensor(
        [0.5, 1.0, 1.5, 2.0, 1.0], dtype=torch.float64)
    shift = torch.tensor([1.0, -1.0, 0.5, 0.0, 2.0], dtype=torch.float64)

    def potential(q):  # logistic-tailed, correlated: sum log cosh(A (q - shift)) + a weak quartic
        z = (q - shift) @ mix.T
        return (torch.nn.functional.softplus(2 * z) - z).sum(-1) + 0.01 * ((q - shift) ** 4).sum(-1)

    out = sample(potential, torch.zeros(4, 5, dtype=torch.float64), 500, 300, seed=2, progress_bar=False)
    ours = out["samples"].numpy()

    pyro.set_rng_seed(4)
    kernel = NUTS(potential_fn=lambda p: potential(p["q"].unsqueeze(0))[0], target_accept_prob=0.8)
    init = {"q": torch.zeros(5, dtype=torch.float64)}
    mcmc = MCMC(kernel, num_samples=600, warmup_steps=300, initial_params=init, disable_progbar=True)
    mcmc.run()
    theirs = mcmc.get_samples(group_by_chain=True)["q"].numpy()

    for stat in (lambda x: x, lambda x: (x - shift.numpy()) ** 2):
        m1, e1, _ = _mean_and_mcse(stat(ours))
        m2, e2, _ = _mean_and_mcse(stat(theirs))
        z = (m1 - m2) / np.sqrt(e1**2 + e2**2)
        assert np.abs(z).max() < 4.0, z


def test_divergences_flagged_with_huge_step():
    """Leapfrog on N(0, I) with step 10 > 2 is unstable (the update matrix has an eigenvalue
    of modulus ~98): every trajectory diverges at its first leaf, so every draw is flagged and no
    draw moves. With step 0.2 nothing diverges."""

    def potential(q):
        return 0.5 * (q**2).sum(-1)

    q0 = torch.full((4, 5), 0.3, dtype=torch.float64)
    out = sample(potential, q0, 20, 0, step_size=10.0, seed=0, progress_bar=False)
    assert out["diverging"].all()
    assert torch.equal(out["samples"], q0.unsqueeze(1).expand(4, 20, 5))
    assert (out["num_steps"] == 1).all() and (out["tree_depth"] == 1).all()
    assert torch.equal(out["step_size"], torch.full((4,), 10.0, dtype=torch.float64))
    ok = sample(potential, q0, 20, 0, step_size=0.2, seed=0, progress_bar=False)
    assert not ok["diverging"].any()
    # Energy bookkeeping: for a Gaussian, energy - potential = kinetic >= 0.
    assert (ok["energy"] >= ok["potential_energy"]).all()


def test_host_and_tensor_code_paths_agree():
    """The numpy-scalar (CPU) and all-tensor (accelerator) bookkeeping give the same draws."""
    potential, _, _ = _gaussian_10d()
    q0 = torch.zeros(3, 10, dtype=torch.float64)
    outs = []
    try:
        for host in (True, False):
            fast_nuts._HOST_SCALARS = host
            outs.append(sample(potential, q0, 40, 60, seed=3, progress_bar=False))
    finally:
        fast_nuts._HOST_SCALARS = None
    assert torch.allclose(outs[0]["samples"], outs[1]["samples"], atol=1e-8)
    assert torch.equal(outs[0]["tree_depth"], outs[1]["tree_depth"])
    assert torch.equal(outs[0]["num_steps"], outs[1]["num_steps"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda():
    potential, mean, cov = _gaussian_10d()
    m, c = mean.cuda().float(), cov.cuda().float()
    prec = torch.linalg.inv(c)

    def pot(q):
        x = q - m
        return 0.5 * ((x @ prec) * x).sum(-1)

    out = sample(pot, torch.zeros(4, 10, device="cuda"), 300, 300, seed=0, progress_bar=False)
    assert out["samples"].device.type == "cuda" and out["diverging"].device.type == "cuda"
    flat = out["samples"].reshape(-1, 10)
    # 1200 draws with ESS > 300: the mean error is below 4 sd / sqrt(300) ~ 0.23 sd.
    assert ((flat.mean(0) - m).abs() / c.diag().sqrt()).max() < 0.25


def test_stan_window_schedule_and_welford():
    """Stan's documented windows for 1000 warm-up iterations (75 / 25, 50, 100, 200, 500 / 50);
    Welford matches numpy's covariance; dual averaging moves log-step towards the target."""
    assert adaptation_schedule(1000) == [(0, 74), (75, 99), (100, 149), (150, 249), (250, 449), (450, 949),
                                         (950, 999)]
    assert adaptation_schedule(100) == [(0, 14), (15, 89), (90, 99)]  # 15% / 75% / 10%
    assert adaptation_schedule(10) == [(0, 9)]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 2, 3)) @ rng.standard_normal((3, 3))
    for dense in (False, True):
        w = Welford(2, 3, dense, dtype=torch.float64)
        for row in torch.as_tensor(x):
            w.update(row)
        cov = w.covariance(regularize=False).numpy()
        for c in range(2):
            ref = np.cov(x[:, c].T)
            np.testing.assert_allclose(cov[c], ref if dense else np.diag(ref), rtol=1e-10)
    da = DualAveraging(torch.zeros(1, dtype=torch.float64))
    lo = da.update(torch.tensor([0.1], dtype=torch.float64), 0.8)  # accept too low -> smaller step
    assert lo.item() < 0


def test_bad_inputs_are_refused_by_name():
    pot = lambda q: 0.5 * (q**2).sum(-1)  # noqa: E731
    with pytest.raises(ValueError, match="initial_params"):
        sample(pot, torch.zeros(5), 10, 10, progress_bar=False)
    with pytest.raises(ValueError, match="potential_fn"):
        sample(lambda q: (q**2).sum(), torch.zeros(2, 3), 10, 10, progress_bar=False)
    with pytest.raises(ValueError, match="initial_params"):
        sample(lambda q: (q**2).sum(-1) / 0 * 0, torch.zeros(2, 3), 10, 10, progress_bar=False)
    with pytest.raises(ValueError, match="target_accept"):
        sample(pot, torch.zeros(2, 3), 10, 10, target_accept=1.2, progress_bar=False)
    with pytest.raises(ValueError, match="step_size"):
        sample(pot, torch.zeros(2, 3), 10, 0, step_size=-1.0, progress_bar=False)
    found = sample(pot, torch.zeros(2, 3), 2, 0, seed=0, progress_bar=False)["step_size"]  # heuristic
    assert math.isfinite(float(found[0])) and float(found[0]) > 0


def _gaussian_model(data):
    import pyro
    import pyro.distributions as dist

    x = pyro.sample("x", dist.Normal(0.0, 1.0).expand([8]).to_event(1))
    pyro.sample("obs", dist.Normal(x, 0.5).to_event(1), obs=data)


def test_traced_potential_matches_the_model_and_is_used():
    from bayessky.infer._model import FlatPotential, TracedPotential

    data = torch.linspace(-1.0, 1.0, 8)
    pot = FlatPotential(_gaussian_model, (data,), num_chains=3)
    traced = TracedPotential(pot)
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    for fn in (traced, pot):  # traced first: the trace must not rely on an earlier eager call
        x = z.clone().requires_grad_(True)
        u = fn(x)
        (g,) = torch.autograd.grad(u.sum(), x)
        if fn is traced:
            u_t, g_t = u.detach(), g
    # closed form: U(z) = |z|^2 / 2 + |data - z|^2 / (2 * 0.25) + const, so dU/dz = z - 4 (data - z)
    assert torch.allclose(g_t, z - 4.0 * (data - z), atol=1e-5)
    assert torch.allclose(u_t, u.detach(), atol=1e-5) and torch.allclose(g_t, g, atol=1e-5)
    assert set(traced.traces) == {(3, 8)} and not traced.eager


def test_traced_potential_refuses_a_value_dependent_model():
    import pyro
    import pyro.distributions as dist

    from bayessky.infer._model import FlatPotential, TracedPotential

    def model(data):
        x = pyro.sample("x", dist.Normal(0.0, 1.0).expand([4]).to_event(1))
        # a Python float taken from a value: a trace would freeze it at the example point
        pyro.factor("penalty", -float(x.detach().abs().max()) * x.pow(2).sum(-1))
        pyro.sample("obs", dist.Normal(x, 1.0).to_event(1), obs=data)

    pot = FlatPotential(model, (torch.zeros(4),), num_chains=2)
    traced = TracedPotential(pot, name="nuts")
    z = torch.randn(2, 4, generator=torch.Generator().manual_seed(2))
    with pytest.warns(UserWarning, match="nuts: jit=True: the traced potential disagrees"):
        u = traced(z)
    assert traced.eager and torch.allclose(u, pot(z))


def test_jit_fast_backend_gives_the_eager_draws():
    import bayessky.infer as bi

    data = torch.linspace(-1.0, 1.0, 8)
    kw = dict(num_samples=30, warmup_steps=30, num_chains=2, backend="fast", seed=4,
              progress_bar=False, chain_method="vectorized")
    eager = bi.nuts(_gaussian_model, data, **kw).posterior["x"].values
    jit = bi.nuts(_gaussian_model, data, jit=True, **kw).posterior["x"].values
    np.testing.assert_allclose(jit, eager, atol=1e-4)


def test_traced_potential_keeps_exact_gradients_on_the_lensing_model():
    # TorchScript's optimising executor re-plans a trace after its first runs; on this model
    # (complex FFTs, in-place slice writes) its derivatives for phi were wrong from the second
    # call on. Every call must match the eager gradient.
    from bayessky.infer._model import FlatPotential, TracedPotential
    from bayessky.models import cmb_lensing as cl

    sim = cl.simulate(n_side=16, seed=0)
    pot = FlatPotential(cl.model, (torch.as_tensor(sim["data"], dtype=torch.float32),), num_chains=2)
    traced = TracedPotential(pot)
    z = pot.initial[:2].clone()
    x = z.clone().requires_grad_(True)
    (g_eager,) = torch.autograd.grad(pot(x).sum(), x)
    for _ in range(4):
        x = z.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(traced(x).sum(), x)
        torch.testing.assert_close(g, g_eager, rtol=1e-4, atol=1e-3 * float(g_eager.abs().max()))
    assert not traced.eager
