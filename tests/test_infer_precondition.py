"""Preconditioning (bayessky.infer.precondition) against the closed-form Wiener posterior.

Problem: a 12 x 12 periodic Gaussian random field s ~ GaussianRandomField(S), red spectrum
S(kappa) ~ (kappa^2 + 4)^-1 (unit pixel variance), observed as d = M (s + n), n ~ N(0, sigma^2)
white, through MapNormal, with a hole and a strip masked. Reference, independent of the FFT code:
the dense covariance C_ij = (1/N) sum_k S_k cos(k.(x_i - x_j)) from explicit wave vectors and the
Wiener posterior (observed set O) mean = C[:, O] (C[O, O] + sigma^2)^-1 d_O,
cov = C - C[:, O] (C[O, O] + sigma^2)^-1 C[O, :]. The same cosine sums with sqrt(W) give the
Fourier preconditioner T as a dense matrix.
"""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from bayessky import infer
from bayessky.distributions import GaussianRandomField, MapNormal
from bayessky.infer._compat import get_group
from bayessky.infer.precondition import (
    DensePreconditioner,
    DiagonalPreconditioner,
    FourierPreconditioner,
    from_model,
    laplace,
    precondition,
)

N = 12
SIGMA = 0.5


pytestmark = pytest.mark.usefixtures("one_thread")


def _cosine_matrix(per_mode):
    """(1/N) sum_k a_k cos(k.(x_i - x_j)): the circulant with per-mode values a, no FFT."""
    f = np.fft.fftfreq(N)
    xs = np.stack(np.meshgrid(np.arange(N), np.arange(N), indexing="ij"), -1).reshape(-1, 2)
    ks = 2 * np.pi * np.stack(np.meshgrid(f, f, indexing="ij"), -1).reshape(-1, 2)
    sep = xs[:, None, :] - xs[None, :, :]
    return (np.cos(np.einsum("ijd,kd->ijk", sep, ks)) * per_mode.reshape(-1)).sum(-1) / N**2


def model(data, mask=None, spectrum=None):
    s = pyro.sample("s", GaussianRandomField(spectrum))
    pyro.sample("d", MapNormal(s, SIGMA, mask), obs=data)


@pytest.fixture(scope="module")
def problem():
    f = np.fft.fftfreq(N)
    kappa = np.sqrt(np.add.outer(f**2, f**2)) * N
    S = 1.0 / (kappa**2 + 4.0)
    S /= S.mean()
    rng = np.random.default_rng(3)
    mask = np.ones((N, N))
    mask[4:6, :] = 0
    mask[8:11, 2:6] = 0
    C = _cosine_matrix(S)
    s_true = np.linalg.cholesky(C + 1e-12 * np.eye(N * N)) @ rng.standard_normal(N * N)
    d = mask * (s_true.reshape(N, N) + SIGMA * rng.standard_normal((N, N)))
    O = mask.reshape(-1) > 0
    K = C[np.ix_(O, O)] + SIGMA**2 * np.eye(int(O.sum()))
    mean = C[:, O] @ np.linalg.solve(K, d.reshape(-1)[O])
    cov = C - C[:, O] @ np.linalg.solve(K, C[O, :])
    return {"S": S, "mask": mask, "d": d, "C": C, "mean": mean, "cov": cov,
            "kw": {"mask": torch.tensor(mask), "spectrum": torch.tensor(S)}}


def _dense(pre, dim):
    """T as a dense matrix, column j = T e_j (x0 = 0)."""
    return pre.apply(torch.eye(dim, dtype=torch.float64)).T.numpy()


def test_fourier_is_the_root_of_the_full_sky_wiener_covariance(problem):
    # M = 1: the posterior covariance (C^-1 + 1/sigma^2)^-1 is diagonal in Fourier space, so
    # T T^T must equal it exactly, and log|det T| = (1/2) log det of it
    d = torch.tensor(problem["d"])
    pre = from_model("fourier", model, (d,), {"spectrum": torch.tensor(problem["S"])},
                     names=["s"], shapes={"s": (N, N)})
    C = problem["C"]
    cov = C - C @ np.linalg.solve(C + SIGMA**2 * np.eye(N * N), C)
    T = _dense(pre, N * N)
    assert np.abs(T @ T.T - cov).max() < 1e-10
    assert np.abs(T - T.T).max() < 1e-12  # W(k) = W(-k): a real symmetric operator
    assert pre.log_abs_det == pytest.approx(0.5 * np.linalg.slogdet(cov)[1], abs=1e-8)


@pytest.mark.parametrize("kind", ["fourier", "diagonal"])
def test_preconditioned_potential_is_the_change_of_variables(problem, kind):
    d = torch.tensor(problem["d"])
    pot = infer.potential(model, d, **problem["kw"])
    pre = from_model(kind, model, (d,), problem["kw"], names=pot.names, shapes=pot.shapes)
    # T in closed form: W = S / (1 + S q), q = (observed fraction) / sigma^2; or the diagonal
    # (mean(1/S) + M / sigma^2)^-1/2
    S, mask = problem["S"], problem["mask"]
    if kind == "fourier":
        T = _cosine_matrix(np.sqrt(S / (1 + S * mask.mean() / SIGMA**2)))
    else:
        T = np.diag(((1 / S).mean() + mask.reshape(-1) / SIGMA**2) ** -0.5)
    assert np.abs(_dense(pre, N * N) - T).max() < 1e-10
    x0 = torch.tensor(problem["mean"])
    pre.shift = x0
    u_z = precondition(pot, pre)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(3, N * N, generator=gen, dtype=torch.float64)
    x = x0 + z @ torch.tensor(T).T
    expected = pot(x) - np.linalg.slogdet(T)[1]
    assert torch.allclose(u_z(z), expected, rtol=1e-10, atol=1e-8)
    assert torch.allclose(u_z.to_z(u_z.to_x(z)), z, atol=1e-10)
    # gradient: autograd against central finite differences along random directions
    zz = z.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(u_z(zz).sum(), zz)
    v = torch.randn(3, N * N, generator=gen, dtype=torch.float64)
    h = 1e-5
    fd = (u_z(z + h * v) - u_z(z - h * v)) / (2 * h)
    assert torch.allclose((g * v).sum(-1), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["fourier", "diagonal"])
def test_nuts_preconditioned_matches_wiener_posterior(problem, kind):
    import arviz as az

    idata = infer.nuts(model, torch.tensor(problem["d"]), **problem["kw"], backend="fast",
                       precondition=kind, num_chains=2, warmup_steps=200, num_samples=400, jit=True,
                       chain_method="vectorized", progress_bar=False, seed=1)
    s = get_group(idata, "posterior")["s"].values
    s = s.reshape(-1, N * N)
    std = np.sqrt(np.diag(problem["cov"]))
    mcse = az.mcse(idata, var_names=["s"])["s"].values.reshape(-1)
    z = (s.mean(0) - problem["mean"]) / mcse
    # >= 95 % of pixels within 3 MCSE (expected 99.7 %) and mean z^2 consistent with 1
    assert np.mean(np.abs(z) < 3) >= 0.95, np.mean(np.abs(z) < 3)
    assert 0.5 < np.mean(z**2) < 1.6, np.mean(z**2)
    ratio = s.std(0) / std
    assert abs(ratio.mean() - 1) < 0.05, ratio.mean()
    assert np.mean(np.abs(ratio - 1)) < 0.08, np.mean(np.abs(ratio - 1))
    stats = get_group(idata, "sample_stats")
    assert not stats["diverging"].values.any()
    # lp is the model's own log density, not the preconditioned one (offset by log|det T|)
    pot = infer.potential(model, torch.tensor(problem["d"]), **problem["kw"])
    lp = -pot(torch.tensor(s[:5]))
    assert np.allclose(stats["lp"].values.reshape(-1)[:5], lp.numpy(), rtol=1e-8, atol=1e-6)


def test_explicit_preconditioner_on_a_block_and_errors(problem):
    # a two-site model: the Fourier block sits after the scalar site in the flat vector
    S = torch.tensor(problem["S"])

    def two_sites(data):
        b = pyro.sample("a_offset", dist.Normal(0.0, 1.0))
        s = pyro.sample("s", GaussianRandomField(S))
        pyro.sample("d", MapNormal(s + b, SIGMA), obs=data)

    d = torch.tensor(problem["d"])
    pot = infer.potential(two_sites, d)
    assert pot.names == ["a_offset", "s"]
    pre = from_model("fourier", two_sites, (d,), None, names=pot.names, shapes=pot.shapes)
    z = torch.randn(2, pot.dim, dtype=torch.float64)
    x = pre.forward(z)
    assert torch.equal(x[:, 0], z[:, 0])  # the scalar site keeps the identity
    block = FourierPreconditioner(S / (1 + S / SIGMA**2), dim=pot.dim, offset=1)
    assert torch.allclose(block.forward(z), x)
    with pytest.raises(ValueError, match="backend='fast'"):
        infer.nuts(model, d, **problem["kw"], precondition="fourier", num_samples=2, warmup_steps=2)
    def no_field(data):
        pyro.sample("w", dist.Normal(torch.zeros(3), 1.0).to_event(1))

    with pytest.raises(ValueError, match="GaussianRandomField"):
        from_model("fourier", no_field, (d,), None, names=["w"], shapes={"w": (3,)})
    with pytest.raises(ValueError, match="coordinates"):
        precondition(pot, DiagonalPreconditioner(torch.ones(5)))
    with pytest.raises(ValueError, match="W\\(k\\) = W\\(-k\\)"):
        FourierPreconditioner(torch.rand(N, N) + 0.1)


def test_laplace_is_the_inverse_hessian_of_a_correlated_gaussian():
    """On a correlated Gaussian potential the Laplace preconditioner is exact: L L^T = Sigma
    (central differences of a linear gradient have no truncation error), and the change of
    variables whitens the target: the Hessian of U_z is the identity."""
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    sigma = a @ a.T + 0.5 * torch.eye(4, dtype=torch.float64)
    prec = torch.linalg.inv(sigma)
    mu = torch.tensor([0.3, -1.0, 2.0, 0.1], dtype=torch.float64)

    def u(x):
        r = x - mu
        return 0.5 * ((r @ prec) * r).sum(-1)

    pre = laplace(u, mu)
    assert isinstance(pre, DensePreconditioner)
    torch.testing.assert_close(pre.chol @ pre.chol.T, sigma, rtol=1e-8, atol=1e-10)
    z = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(pre.inverse(pre.forward(z)), z)
    # U_z(z) = U(mu + L z) - log|det L| = |z|^2 / 2 + const
    pz = precondition(u, pre)
    torch.testing.assert_close(pz(z) - pz(torch.zeros(1, 4, dtype=torch.float64)), 0.5 * (z ** 2).sum(-1))
    assert pre.log_abs_det == pytest.approx(0.5 * float(torch.logdet(sigma)))


def test_laplace_refuses_a_saddle_and_a_large_dimension():
    def saddle(x):
        return 0.5 * (x[..., 0] ** 2 - x[..., 1] ** 2)

    with pytest.raises(ValueError, match="not positive definite"):
        laplace(saddle, torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="max_dim"):
        laplace(lambda x: (x ** 2).sum(-1), torch.zeros(300))
    with pytest.raises(ValueError, match="not positive definite"):
        DensePreconditioner(-torch.eye(2))


def test_nuts_laplace_preconditioned_matches_a_correlated_posterior():
    """precondition='laplace' through the Pyro user path (start at the MAP): draws of a
    correlated bivariate normal with its closed-form mean and covariance."""
    cov = torch.tensor([[1.0, 0.9], [0.9, 1.0]], dtype=torch.float64)

    def model():
        pyro.sample("x", dist.MultivariateNormal(torch.tensor([1.0, -2.0], dtype=torch.float64),
                                                 covariance_matrix=cov))

    idata = infer.nuts(model, num_samples=600, warmup_steps=150, num_chains=2, backend="fast",
                       chain_method="vectorized", init_strategy="map", precondition="laplace",
                       progress_bar=False, seed=1)
    x = idata.posterior["x"].values.reshape(-1, 2)
    assert np.abs(x.mean(0) - [1.0, -2.0]).max() < 0.12
    np.testing.assert_allclose(np.cov(x.T), cov.numpy(), atol=0.12)
