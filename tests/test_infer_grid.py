"""Grid engine: the hi-toy exact likelihood on a grid vs an independent numpy implementation of
the hi-toy-v1 specification (bayessky.families.hi_toy); GridPosterior quadrature, credible regions
and sampling vs closed forms and brute force; stacks of maps; one-line errors."""

import os

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy import stats

from bayessky import infer
from bayessky.infer import GridPosterior

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


# -- independent numpy implementation of hi-toy-v1's exact log-likelihood (bayessky.families.hi_toy's spec) --
def np_hi_toy_loglik(maps, omega_m, sigma_8, box=25.0):
    """log p(g | Omega_m, sigma_8) for linear maps (..., N, N); scalar parameters."""
    g = np.log10(maps) - 8.0
    n = g.shape[-1]
    k1 = 2 * np.pi * np.fft.fftfreq(n, box / n)
    k = np.sqrt(k1[:, None] ** 2 + k1[None, :] ** 2)
    kf = 2 * np.pi / box
    q = k / (omega_m * 0.6711)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.log(1 + 2.34 * q) / (2.34 * q) * (
            1 + 3.89 * q + (16.1 * q) ** 2 + (5.46 * q) ** 3 + (6.71 * q) ** 4) ** -0.25
    t = np.where(q == 0, 1.0, t)
    shape = (k / kf) * t**2
    norm = np.mean(shape * np.exp(-(k * 1.0) ** 2))
    S = sigma_8**2 * shape / norm + 0.01
    G = np.fft.fft2(g)
    return (-0.5 * np.sum(np.abs(G) ** 2 / (n * n * S), axis=(-2, -1))
            - 0.5 * np.sum(np.log(2 * np.pi * S)))


def hi_model(hi_toy):
    def model(data):
        om = pyro.sample("Omega_m", dist.Uniform(torch.tensor(0.1, dtype=F64), 0.5))
        s8 = pyro.sample("sigma_8", dist.Uniform(torch.tensor(0.6, dtype=F64), 1.0))
        ll = hi_toy.log_likelihood(data, om, s8)
        pyro.factor("map", ll.sum(-1) if data.ndim == 3 else ll)
    return model


def centres(lo, hi, n):
    step = (hi - lo) / n
    return np.linspace(lo + step / 2, hi - step / 2, n)


AXES = {"Omega_m": centres(0.1, 0.5, 40), "sigma_8": centres(0.6, 1.0, 40)}


def np_grid_weights(maps):
    ll = np.array([[np.sum(np_hi_toy_loglik(maps, a, b)) for b in AXES["sigma_8"]] for a in AXES["Omega_m"]])
    w = np.exp(ll - ll.max())
    return w / w.sum(), ll


def test_grid_hi_toy_equals_numpy_formula():
    hi_toy = pytest.importorskip("bayessky.families.hi_toy")
    maps = hi_toy.sample(3, 0.3, 0.8, size=16, seed=7)  # (3, 16, 16) numpy, linear maps
    post = infer.grid(hi_model(hi_toy), torch.as_tensor(maps), grid=AXES)
    w_ref, ll_ref = np_grid_weights(maps)  # joint posterior of the 3 maps; uniform prior inside the box
    assert post.weights.shape == (40, 40)
    print(f"\ngrid-hi-toy: max |w - w_numpy| = {np.abs(post.weights - w_ref).max():.2e}")
    assert np.abs(post.weights - w_ref).max() < 1e-6, np.abs(post.weights - w_ref).max()
    np.testing.assert_allclose(post.log_likelihood[0], ll_ref, rtol=1e-10)
    # evidence: sum_j L_j p(theta_j) dV with p = 1 / (0.4 * 0.4) and dV = 0.01^2
    log_ev = np.log(np.sum(np.exp(ll_ref - ll_ref.max()))) + ll_ref.max() + np.log(0.01**2 / 0.16)
    assert abs(post.log_evidence - log_ev) < 1e-8
    uni = infer.grid(hi_model(hi_toy), torch.as_tensor(maps), grid=AXES, prior="uniform")
    assert np.abs(uni.weights - w_ref).max() < 1e-12 + 1e-6


def test_grid_stack_one_posterior_per_map():
    hi_toy = pytest.importorskip("bayessky.families.hi_toy")
    maps = hi_toy.sample(3, [0.2, 0.3, 0.4], [0.7, 0.8, 0.9], size=16, seed=11)
    post = infer.grid(hi_model(hi_toy), torch.as_tensor(maps), grid=AXES, stack=True, chunk_size=300)
    assert post.weights.shape == (3, 40, 40)
    for m in range(3):
        w_ref, _ = np_grid_weights(maps[m])
        assert np.abs(post.weights[m] - w_ref).max() < 1e-6
    idatas = post.to_inference_data(num_samples=100)
    assert len(idatas) == 3 and idatas[1].posterior["Omega_m"].shape == (1, 100)


def gauss_model(data):
    mu = pyro.sample("mu", dist.Normal(torch.tensor(1.0, dtype=F64), 2.0))
    tau = pyro.sample("tau", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0))
    with pyro.plate("n", data.shape[-1]):
        pyro.sample("x", dist.Normal(mu.unsqueeze(-1) + 0.5 * tau.unsqueeze(-1), 1.0), obs=data)


GAUSS_X = torch.tensor([0.8, 1.9, 1.4, 2.6, 1.1], dtype=F64)


def gauss_closed_form():
    """theta = (mu, tau) ~ N(m0, P0^-1), x = A theta + e: Gaussian posterior and evidence."""
    A = np.tile([1.0, 0.5], (5, 1))
    m0, P0 = np.array([1.0, 0.0]), np.diag([1 / 4.0, 1.0])
    P = P0 + A.T @ A
    cov = np.linalg.inv(P)
    mean = cov @ (P0 @ m0 + A.T @ GAUSS_X.numpy())
    ev = stats.multivariate_normal(A @ m0, np.eye(5) + A @ np.linalg.inv(P0) @ A.T).logpdf(GAUSS_X.numpy())
    return mean, cov, ev


def test_grid_moments_evidence_regions_vs_closed_form_nonuniform_axes():
    mean, cov, log_ev = gauss_closed_form()
    sd = np.sqrt(np.diag(cov))
    # non-uniform axes (denser near the mode) exercise the Voronoi cell volumes
    u = np.linspace(-1, 1, 161)
    axes = {"mu": mean[0] + 7 * sd[0] * np.sign(u) * u**2, "tau": mean[1] + 7 * sd[1] * np.sign(u) * u**2}
    post = infer.grid(gauss_model, GAUSS_X, grid=axes)
    # quadrature errors of a midpoint rule with these cells: < 1e-3 sd on moments, < 1e-3 in log Z
    for i, k in enumerate(("mu", "tau")):
        assert abs(post.mean[k] - mean[i]) < 1e-3 * sd[i]
        assert abs(post.std[k] / sd[i] - 1) < 2e-3
        assert abs(post.marginal(k).sum() - 1) < 1e-12
    assert abs(post.log_evidence - log_ev) < 1e-3
    # HPD region vs brute force: cells by decreasing density (mass / cell area) until the mass is reached
    w = post.weights
    area = np.outer(np.gradient(axes["mu"]), np.gradient(axes["tau"]))  # = cell areas for these axes
    dens = w / area
    for level in (0.68, 0.95):
        region = post.credible_region(level)
        order = np.argsort(-dens, axis=None, kind="stable")
        n_in = np.searchsorted(np.cumsum(w.reshape(-1)[order]), level) + 1
        brute = np.zeros(w.size, dtype=bool)
        brute[order[:n_in]] = True
        # the region is the density contour: it equals the brute-force set up to cells tied at the
        # threshold (this grid is symmetric about the Gaussian's mean, so ties come in pairs)
        flat = region.reshape(-1)
        t = dens.reshape(-1)[order[n_in - 1]]
        tied = np.isclose(dens.reshape(-1), t, rtol=1e-9)
        assert np.array_equal(flat[~tied], brute[~tied])
        assert w[region].sum() >= level
        # points inside the region vs the exact ellipse {d^2 <= chi2_2(level)}: agree away from the edge
        g = np.stack(np.meshgrid(axes["mu"], axes["tau"], indexing="ij"), -1) - mean
        d2 = np.einsum("...i,ij,...j->...", g, np.linalg.inv(cov), g)
        q = stats.chi2.ppf(level, 2)
        assert region[d2 < 0.9 * q].all() and not region[d2 > 1.1 * q].any()
    # draws from the weights: means within 4 MC standard errors; jitter keeps draws inside cells
    idata = post.to_inference_data(num_samples=4000, seed=1, jitter=True)
    for i, k in enumerate(("mu", "tau")):
        v = idata.posterior[k].values.reshape(-1)
        assert abs(v.mean() - mean[i]) < 4 * sd[i] / np.sqrt(4000)
    assert idata.attrs["engine"] == "grid"


def test_grid_non_vectorisable_model_falls_back_to_loop():
    def looped(data):
        mu = pyro.sample("mu", dist.Normal(torch.tensor(1.0, dtype=F64), 2.0))
        tau = pyro.sample("tau", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0))
        m = float(mu) + 0.5 * float(tau)  # python floats: cannot be batched or vmapped
        pyro.sample("x", dist.Normal(torch.tensor(m, dtype=F64), 1.0).expand([5]).to_event(1), obs=data)

    axes = {"mu": np.linspace(0, 3, 7), "tau": np.linspace(-1, 1, 5)}
    with pytest.warns(UserWarning, match="point by point"):
        post = infer.grid(looped, GAUSS_X, grid=axes)
    # reference: prior x likelihood from scipy at every grid point, normalised in numpy (even axes:
    # equal cells of 0.5 x 0.5, so the weights are the normalised density)
    mu, tau = np.meshgrid(axes["mu"], axes["tau"], indexing="ij")
    log_joint = (stats.norm.logpdf(mu, 1.0, 2.0) + stats.norm.logpdf(tau, 0.0, 1.0)
                 + stats.norm.logpdf(GAUSS_X.numpy()[:, None, None], mu + 0.5 * tau, 1.0).sum(0))
    w = np.exp(log_joint - log_joint.max())
    np.testing.assert_allclose(post.weights, w / w.sum(), rtol=1e-10)
    ref_log_ev = np.log(np.sum(np.exp(log_joint - log_joint.max())) * 0.25) + log_joint.max()
    assert abs(post.log_evidence - ref_log_ev) < 1e-10


def test_prior_outside_support_gets_zero_weight():
    hi_toy = pytest.importorskip("bayessky.families.hi_toy")
    maps = torch.as_tensor(hi_toy.sample(1, 0.3, 0.8, size=16, seed=2)[0])
    axes = {"Omega_m": np.linspace(0.05, 0.55, 11), "sigma_8": np.linspace(0.7, 0.9, 5)}
    post = infer.grid(hi_model(hi_toy), maps, grid=axes)
    outside = (axes["Omega_m"] < 0.1) | (axes["Omega_m"] > 0.5)
    assert (post.weights[outside] == 0).all() and post.weights[~outside].sum() == pytest.approx(1)
    uni = infer.grid(hi_model(hi_toy), maps, grid=axes, prior="uniform")
    assert (uni.weights[outside] > 0).all()


def test_grid_posterior_direct_and_map_estimate():
    lp = np.zeros((1, 3, 2))
    ll = np.log(np.array([[[1, 2], [3, 4], [5, 5]]], dtype=float))
    post = GridPosterior({"a": [0.0, 1.0, 2.0], "b": [0.0, 1.0]}, lp, ll)
    np.testing.assert_allclose(post.weights, ll[0].__array__() * 0 + np.exp(ll[0]) / 20)
    np.testing.assert_allclose(post.marginal("a"), [3 / 20, 7 / 20, 10 / 20])
    assert post.map_estimate == {"a": 2.0, "b": 0.0}
    assert post.mean["a"] == pytest.approx((7 + 20) / 20)


def _one_line(err):
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("axes, match", [
    ({"mu": np.linspace(0, 1, 5)}, "tau"),                                    # missing latent site
    ({"mu": [0.0, 1.0], "tau": [0.0, 1.0], "sigma": [1.0, 2.0]}, "sigma"),    # not a latent site
    ({"mu": [0.0, np.nan, 1.0], "tau": [0.0, 1.0]}, "non-finite"),
    ({"mu": [0.0, np.inf], "tau": [0.0, 1.0]}, "non-finite"),
    ({"mu": [1.0, 0.0], "tau": [0.0, 1.0]}, "increasing"),
    ({"mu": [[0.0, 1.0]], "tau": [0.0, 1.0]}, "1-D"),
    ({}, "non-empty"),
])
def test_grid_bad_axes_one_line(axes, match):
    with pytest.raises(ValueError, match=match) as err:
        infer.grid(gauss_model, GAUSS_X, grid=axes)
    _one_line(err)


def test_grid_bad_options_one_line():
    axes = {"mu": [0.0, 1.0], "tau": [0.0, 1.0]}
    for kw, match in (({"prior": "flat"}, "prior"), ({"chunk_size": 0}, "chunk_size"),
                      ({"memory_budget_mb": -1}, "memory_budget_mb")):
        with pytest.raises(ValueError, match=match) as err:
            infer.grid(gauss_model, GAUSS_X, grid=axes, **kw)
        _one_line(err)

    def vec_model(data):
        pyro.sample("v", dist.Normal(torch.zeros(2, dtype=F64), 1.0).to_event(1))

    with pytest.raises(ValueError, match="scalar") as err:
        infer.grid(vec_model, None, grid={"v": [0.0, 1.0]})
    _one_line(err)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_grid_on_cuda_matches_cpu():
    hi_toy = pytest.importorskip("bayessky.families.hi_toy")
    maps = hi_toy.sample(2, 0.3, 0.8, size=16, seed=7)
    cpu = infer.grid(hi_model(hi_toy), torch.as_tensor(maps), grid=AXES)
    gpu = infer.grid(hi_model(hi_toy), torch.as_tensor(maps, device="cuda"), grid=AXES)
    assert np.abs(cpu.weights - gpu.weights).max() < 1e-9


def test_grid_dtype_stack_and_budget_are_validated():
    axes = {"mu": [0.0, 1.0], "tau": [0.0, 1.0]}
    # an integer dtype would truncate the grid values
    with pytest.raises(TypeError, match="dtype") as err:
        infer.grid(gauss_model, GAUSS_X, grid=axes, dtype=torch.int64)
    _one_line(err)
    # a 1-D "stack" would make each number its own data set
    with pytest.raises(ValueError, match=r"stack=True .*data of shape \(") as err:
        infer.grid(gauss_model, GAUSS_X.reshape(-1), grid=axes, stack=True)
    _one_line(err)
    # the CLI passes --set memory_budget_mb=inf as the string 'inf'
    for bad in (float("inf"), float("nan"), "inf", "lots", 0, True):
        with pytest.raises(ValueError, match="memory_budget_mb") as err:
            infer.grid(gauss_model, GAUSS_X, grid=axes, memory_budget_mb=bad)
        _one_line(err)
    ref = infer.grid(gauss_model, GAUSS_X, grid=axes)
    as_str = infer.grid(gauss_model, GAUSS_X, grid=axes, memory_budget_mb="64")
    np.testing.assert_allclose(as_str.weights, ref.weights)


def test_grid_map_batch_evaluates_data_sets_together_and_matches_closed_form():
    """map_batch: data sets x grid points in one model call where the data is one observed site's
    value. Each of 7 data sets gets its closed-form Gaussian posterior and evidence, equal to a
    one-at-a-time run; the model ran far fewer times. A model that uses its data in a
    pyro.factor cannot be batched that way and gives exactly the one-at-a-time numbers."""
    gen = torch.Generator().manual_seed(5)
    stack = GAUSS_X + torch.randn(7, 5, generator=gen, dtype=F64)
    axes = {"mu": np.linspace(-3.0, 5.0, 41), "tau": np.linspace(-4.0, 4.0, 31)}
    calls = []

    def counted(data):
        calls.append(1)
        gauss_model(data)

    # a chunk holds the whole grid of 7 data sets: one call per data set, or one for 1..6 together
    # processes=1: calls made in forked workers would not be counted here
    one = infer.grid(counted, stack, grid=axes, stack=True, chunk_size=41 * 31 * 7, processes=1)
    n_one, calls[:] = len(calls), []
    batched = infer.grid(counted, stack, grid=axes, stack=True, chunk_size=41 * 31 * 7, map_batch=7,
                         processes=1)
    assert len(calls) < n_one  # 6 data sets in one call, after 4 calls spent on checking
    np.testing.assert_allclose(batched.log_likelihood, one.log_likelihood, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(batched.log_evidence, one.log_evidence, rtol=1e-12)
    A = np.tile([1.0, 0.5], (5, 1))
    m0, P0 = np.array([1.0, 0.0]), np.diag([1 / 4.0, 1.0])
    cov = np.linalg.inv(P0 + A.T @ A)
    for m in range(7):
        x = stack[m].numpy()
        mean = cov @ (P0 @ m0 + A.T @ x)
        assert batched.mean["mu"][m] == pytest.approx(mean[0], abs=2e-3)
        assert batched.mean["tau"][m] == pytest.approx(mean[1], abs=2e-3)
        ev = stats.multivariate_normal(A @ m0, np.eye(5) + A @ np.linalg.inv(P0) @ A.T).logpdf(x)
        assert batched.log_evidence[m] == pytest.approx(ev, abs=2e-3)

    hi_toy = pytest.importorskip("bayessky.families.hi_toy")
    maps = torch.as_tensor(hi_toy.sample(3, [0.2, 0.3, 0.4], [0.7, 0.8, 0.9], size=16, seed=11))
    small = {k: v[::4] for k, v in AXES.items()}
    a = infer.grid(hi_model(hi_toy), maps, grid=small, stack=True)
    b = infer.grid(hi_model(hi_toy), maps, grid=small, stack=True, map_batch=3)
    assert np.array_equal(a.log_likelihood, b.log_likelihood)
    with pytest.raises(ValueError, match="map_batch"):
        infer.grid(hi_model(hi_toy), maps, grid=small, stack=True, map_batch=0)


def test_grid_in_forked_processes_is_bit_identical_and_matches_closed_form():
    """processes=2: the chunks of 5 data sets shared by two forked single-thread processes give
    the one-process numbers bit for bit, hence each data set's closed-form Gaussian posterior."""
    gen = torch.Generator().manual_seed(6)
    stack = GAUSS_X + torch.randn(5, 5, generator=gen, dtype=F64)
    axes = {"mu": np.linspace(-3.0, 5.0, 41), "tau": np.linspace(-4.0, 4.0, 31)}
    one = infer.grid(gauss_model, stack, grid=axes, stack=True, chunk_size=97, processes=1)
    two = infer.grid(gauss_model, stack, grid=axes, stack=True, chunk_size=97, processes=2)
    assert np.array_equal(one.log_likelihood, two.log_likelihood)
    assert np.array_equal(one.log_prior, two.log_prior)
    A = np.tile([1.0, 0.5], (5, 1))
    m0, P0 = np.array([1.0, 0.0]), np.diag([1 / 4.0, 1.0])
    cov = np.linalg.inv(P0 + A.T @ A)
    for m in range(5):
        mean = cov @ (P0 @ m0 + A.T @ stack[m].numpy())
        assert two.mean["mu"][m] == pytest.approx(mean[0], abs=2e-3)
        assert two.mean["tau"][m] == pytest.approx(mean[1], abs=2e-3)


def test_grid_auto_processes_fork_only_when_it_pays(monkeypatch):
    from bayessky.infer import grid_posterior

    forked = []
    real = grid_posterior.run_forked

    def spy(items, *a, **k):
        forked.append(len(items))
        return real(items, *a, **k)

    monkeypatch.setattr(grid_posterior, "run_forked", spy)
    axes = {"mu": np.linspace(-3.0, 5.0, 41), "tau": np.linspace(-4.0, 4.0, 31)}
    small = infer.grid(gauss_model, GAUSS_X, grid=axes)  # milliseconds: stays in this process
    assert forked == []
    monkeypatch.setattr(grid_posterior, "_FORK_WORTH_S", 0.0)  # as if every point were slow
    monkeypatch.setattr(grid_posterior, "usable_cores", lambda: 2)
    big = infer.grid(gauss_model, GAUSS_X, grid=axes)
    assert len(forked) == 1 and forked[0] >= 2
    assert np.array_equal(small.log_likelihood, big.log_likelihood)


def test_grid_processes_errors_are_one_line(monkeypatch):
    from bayessky.infer import grid_posterior

    axes = {"mu": np.linspace(-3.0, 5.0, 41), "tau": np.linspace(-4.0, 4.0, 31)}
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match=r"^grid: processes must be a positive integer or None"):
            infer.grid(gauss_model, GAUSS_X, grid=axes, processes=bad)

    parent = os.getpid()

    def failing(data):  # fails inside a worker process only
        if os.getpid() != parent:
            raise ValueError("model: failed in a worker")
        gauss_model(data)

    with pytest.raises(ValueError, match="^model: failed in a worker"):
        infer.grid(failing, GAUSS_X, grid=axes, chunk_size=100, processes=2)
    monkeypatch.setattr(grid_posterior, "can_fork", lambda: False)  # e.g. inside a Dask worker
    with pytest.raises(ValueError, match="processes=2 needs a process that can fork"):
        infer.grid(gauss_model, GAUSS_X, grid=axes, processes=2)
    assert infer.grid(gauss_model, GAUSS_X, grid=axes).mean["mu"] > 0  # auto: here, no fork
