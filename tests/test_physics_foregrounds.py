"""Foreground scalings against Planck's law written independently (scipy.constants), finite
differences, a scipy root of the tSZ null, and limits derived by hand."""

import math

import numpy as np
import pytest
import torch
from scipy import constants as sc
from scipy.optimize import brentq

from bayessky.physics import (
    cmb_to_mjysr,
    cmb_to_rj,
    dB_dT,
    modified_blackbody,
    planck_intensity,
    rj_to_mjysr,
    tsz_spectral_function,
)

TCMB = 2.7255


def planck_si(nu_ghz, t):
    """B_nu(T) in W m^-2 Hz^-1 sr^-1 from scipy's CODATA constants (plain math, no expm1)."""
    nu = nu_ghz * 1e9
    return 2 * sc.h * nu**3 / sc.c**2 / (math.exp(sc.h * nu / (sc.k * t)) - 1)


def dbdt_fd(nu_ghz, t):
    """dB/dT by a 5-point central difference of planck_si: error ~ (h/T)^4 x^4, rounding ~1e-16 T/h."""
    h = 1e-3 * t
    b = [planck_si(nu_ghz, t + k * h) for k in (-2, -1, 1, 2)]
    return (b[0] - 8 * b[1] + 8 * b[2] - b[3]) / (12 * h)


def test_planck_law_and_temperature_derivative():
    for nu in (30.0, 100.0, 143.0, 353.0, 857.0):
        for t in (TCMB, 19.6):
            assert planck_intensity(nu, t) == pytest.approx(planck_si(nu, t) * 1e20, rel=1e-12)
            assert dB_dT(nu, t) == pytest.approx(dbdt_fd(nu, t) * 1e20, rel=1e-8)
        assert cmb_to_mjysr(nu) == pytest.approx(dB_dT(nu, TCMB), rel=1e-14)
        # K_RJ per K_CMB is dB/dT over the RJ slope 2 k nu^2 / c^2
        rj = 2 * sc.k * (nu * 1e9) ** 2 / sc.c**2 * 1e20
        assert rj_to_mjysr(nu) == pytest.approx(rj, rel=1e-12)
        assert cmb_to_rj(nu) == pytest.approx(dB_dT(nu) / rj, rel=1e-12)
    # low-frequency limit: thermodynamic and RJ temperatures agree, 1 - x^2/12 to leading order
    x = sc.h * 1e9 / (sc.k * TCMB)
    assert cmb_to_rj(1.0) == pytest.approx(1 - x**2 / 12, rel=1e-8)


def test_tsz_null_values_and_limits():
    g_ref = lambda nu: (lambda x: x * (math.exp(x) + 1) / (math.exp(x) - 1) - 4)(  # noqa: E731
        sc.h * nu * 1e9 / (sc.k * TCMB))
    root = brentq(tsz_spectral_function, 150.0, 300.0, xtol=1e-10)
    root_ref = brentq(g_ref, 150.0, 300.0, xtol=1e-10)
    # x_null = 3.8300 (Sunyaev-Zeldovich null), i.e. 217.5 GHz for T_CMB = 2.7255 K
    assert root == pytest.approx(root_ref, abs=1e-7) and abs(root - 217.5) < 0.1
    assert sc.h * root * 1e9 / (sc.k * TCMB) == pytest.approx(3.8300, abs=1e-3)
    # 150 GHz: x = 2.6413, x coth(x/2) = 3.0467 by hand -> g = -0.953
    assert tsz_spectral_function(150.0) == pytest.approx(-0.9533, abs=2e-4)
    for nu in (30.0, 90.0, 150.0, 217.0, 353.0, 545.0):
        assert tsz_spectral_function(nu) == pytest.approx(g_ref(nu), rel=1e-12, abs=1e-12)
    # RJ limit: x coth(x/2) = 2 + x^2/6 - x^4/360 + ...
    x = sc.h * 1e9 / (sc.k * TCMB)
    assert tsz_spectral_function(1.0) == pytest.approx(-2 + x**2 / 6 - x**4 / 360, abs=1e-10)
    assert tsz_spectral_function(100.0) < 0 < tsz_spectral_function(353.0)


@pytest.mark.parametrize("beta,t_dust,nu0", [(1.54, 19.6, 353.0), (1.2, 25.0, 545.0), (2.0, 15.0, 100.0)])
def test_modified_blackbody_vs_direct_planck_law(beta, t_dust, nu0):
    for nu in (30.0, 100.0, 143.0, 217.0, 353.0, 857.0):
        intensity = (nu / nu0) ** beta * planck_si(nu, t_dust) / planck_si(nu0, t_dust)
        mbb = modified_blackbody(nu, beta, t_dust, nu0, units="MJy/sr")
        assert mbb == pytest.approx(intensity, rel=1e-12)
        # RJ temperature: I c^2 / (2 k nu^2)
        assert modified_blackbody(nu, beta, t_dust, nu0, units="K_RJ") == pytest.approx(
            intensity * (nu0 / nu) ** 2, rel=1e-12)
        # CMB thermodynamic temperature: I / (dB/dT at T_CMB), the derivative by finite differences
        assert modified_blackbody(nu, beta, t_dust, nu0, units="K_CMB") == pytest.approx(
            intensity * dbdt_fd(nu0, TCMB) / dbdt_fd(nu, TCMB), rel=1e-8)
    assert modified_blackbody(nu0, beta, t_dust, nu0) == pytest.approx(1.0, rel=1e-14)


def test_torch_inputs_gradients_and_types():
    nu = torch.tensor([100.0, 143.0, 217.0], dtype=torch.float64)
    beta = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    td = torch.tensor(20.0, dtype=torch.float64, requires_grad=True)
    s = modified_blackbody(nu, beta, td)
    assert isinstance(s, torch.Tensor) and s.dtype == torch.float64 and s.shape == (3,)
    s.sum().backward()
    eps = 1e-6
    for p, name in ((beta, "beta"), (td, "T_dust")):
        kw = {"beta": 1.5, "T_dust": 20.0}
        kw[name] = float(p.detach()) + eps
        up = modified_blackbody(nu.numpy(), **kw).sum()
        kw[name] = float(p.detach()) - eps
        dn = modified_blackbody(nu.numpy(), **kw).sum()
        assert float(p.grad) == pytest.approx((up - dn) / (2 * eps), rel=1e-6)
    s32 = tsz_spectral_function(torch.tensor([150.0], dtype=torch.float32))
    assert s32.dtype == torch.float32 and float(s32) == pytest.approx(-0.9533, abs=1e-3)
    assert isinstance(tsz_spectral_function(150.0), float)
    assert isinstance(modified_blackbody(np.array([100.0, 200.0])), np.ndarray)
    with pytest.raises(ValueError, match="units"):
        modified_blackbody(100.0, units="Jy")
    with pytest.raises(ValueError, match="nu_GHz"):
        tsz_spectral_function(-1.0)
    with pytest.raises(ValueError, match="T_dust"):
        modified_blackbody(100.0, T_dust=0.0)
