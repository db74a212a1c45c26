r"""Foreground frequency scalings and CMB unit conversions (Planck's law, dust, thermal SZ).

Units. A sky signal is quoted as specific intensity :math:`I_\nu` (MJy/sr), Rayleigh-Jeans
brightness temperature :math:`T_{RJ} = c^2 I_\nu / (2 k_B \nu^2)` (K_RJ), or CMB
thermodynamic temperature :math:`\delta T = \delta I_\nu / (\partial B_\nu/\partial T)|_{T_{CMB}}`
(K_CMB). With :math:`x = h\nu / k_B T_{CMB}`:

.. math::
    \frac{\partial B_\nu}{\partial T}\Big|_{T_{CMB}} = \frac{2 k_B \nu^2}{c^2}
    \frac{x^2 e^x}{(e^x - 1)^2}, \qquad
    \frac{T_{RJ}}{\delta T_{CMB}} = \frac{x^2 e^x}{(e^x - 1)^2}.

Every function accepts floats, numpy arrays or torch tensors (any device, differentiable in
every tensor argument) and returns the same kind; frequencies are in GHz.

References:
    Planck 2013 IX, "HFI spectral response", A&A 571, A9 (2014), arXiv:1303.5070 (unit
    conversions). Planck 2018 XI, "Polarized dust foregrounds", arXiv:1801.04945 (beta_d = 1.54,
    T_d = 19.6 K at 353 GHz). Sunyaev & Zeldovich, Comments Astrophys. Space Phys. 4, 173 (1972).
"""

from __future__ import annotations

import numpy as np
import torch

from .._validate import check_positive

__all__ = [
    "T_CMB", "H_PLANCK", "K_BOLTZMANN", "C_LIGHT",
    "planck_intensity", "dB_dT", "cmb_to_rj", "cmb_to_mjysr", "rj_to_mjysr",
    "modified_blackbody", "tsz_spectral_function",
]

T_CMB = 2.7255  # K (Fixsen 2009)
H_PLANCK = 6.62607015e-34  # J s (exact, SI 2019)
K_BOLTZMANN = 1.380649e-23  # J / K (exact)
C_LIGHT = 299792458.0  # m / s (exact)
_MJY = 1e-20  # W m^-2 Hz^-1 per MJy

_UNITS = ("K_CMB", "K_RJ", "MJy/sr")


def _as_math(*args):
    """Torch tensors (float64 unless a tensor argument says otherwise) and whether to return numpy."""
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if tensors:
        ref = tensors[0]
        dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
        out = [a if isinstance(a, torch.Tensor) and a.is_floating_point() else torch.as_tensor(a, dtype=dtype)
               for a in args]
        return [o.to(device=ref.device) for o in out], False
    return [torch.as_tensor(np.asarray(a, dtype=np.float64)) for a in args], True


def _out(t: torch.Tensor, as_numpy: bool):
    if not as_numpy:
        return t
    a = t.numpy()
    return float(a) if a.ndim == 0 else a


def _x(nu_ghz, T):
    return H_PLANCK * nu_ghz * 1e9 / (K_BOLTZMANN * T)


def planck_intensity(nu_GHz, T):
    r"""Planck's law :math:`B_\nu(T) = \frac{2 h \nu^3}{c^2} \frac{1}{e^{h\nu/k_B T} - 1}` in MJy/sr.

    Example:
        >>> round(planck_intensity(353.0, 2.7255), 2)   # the CMB at 353 GHz
        129.81
    """
    check_positive(nu_GHz, "nu_GHz")
    check_positive(T, "T")
    (nu, t), np_out = _as_math(nu_GHz, T)
    nu_hz = nu * 1e9
    b = 2 * H_PLANCK * nu_hz**3 / C_LIGHT**2 / torch.expm1(_x(nu, t))
    return _out(b / _MJY, np_out)


def dB_dT(nu_GHz, T=T_CMB):
    r""":math:`\partial B_\nu / \partial T` in MJy/sr per K, at temperature ``T`` (default T_CMB)."""
    check_positive(nu_GHz, "nu_GHz")
    check_positive(T, "T")
    (nu, t), np_out = _as_math(nu_GHz, T)
    x = _x(nu, t)
    nu_hz = nu * 1e9
    # x^2 e^x / (e^x - 1)^2 written with expm1 for accuracy at low frequency.
    g = x * x * torch.exp(x) / torch.expm1(x) ** 2
    return _out(2 * K_BOLTZMANN * nu_hz**2 / C_LIGHT**2 * g / _MJY, np_out)


def cmb_to_rj(nu_GHz):
    r"""K_RJ per K_CMB: :math:`x^2 e^x / (e^x - 1)^2` with x = h nu / k T_CMB (-> 1 as nu -> 0)."""
    check_positive(nu_GHz, "nu_GHz")
    (nu,), np_out = _as_math(nu_GHz)
    x = _x(nu, T_CMB)
    return _out(x * x * torch.exp(x) / torch.expm1(x) ** 2, np_out)


def rj_to_mjysr(nu_GHz):
    r"""MJy/sr per K_RJ: :math:`2 k_B \nu^2 / c^2`."""
    check_positive(nu_GHz, "nu_GHz")
    (nu,), np_out = _as_math(nu_GHz)
    return _out(2 * K_BOLTZMANN * (nu * 1e9) ** 2 / C_LIGHT**2 / _MJY, np_out)


def cmb_to_mjysr(nu_GHz):
    r"""MJy/sr per K_CMB: :math:`\partial B_\nu/\partial T` at T_CMB (about 483.7 at 143 GHz)."""
    return dB_dT(nu_GHz, T_CMB)


def _unit_factor(nu, units: str):
    """Multiplier from MJy/sr to ``units`` at frequency nu (GHz, tensor)."""
    if units == "MJy/sr":
        return torch.ones_like(nu)
    x = _x(nu, T_CMB)
    rj = 2 * K_BOLTZMANN * (nu * 1e9) ** 2 / C_LIGHT**2 / _MJY
    if units == "K_RJ":
        return 1 / rj
    return torch.expm1(x) ** 2 / (x * x * torch.exp(x)) / rj  # K_CMB


def modified_blackbody(nu_GHz, beta=1.54, T_dust=19.6, nu0_GHz=353.0, units: str = "K_CMB"):
    r"""Thermal-dust scaling from ``nu0_GHz`` to ``nu_GHz``, :math:`s(\nu)` with
    :math:`m(\nu) = s(\nu)\, m(\nu_0)` for a map ``m`` in ``units``.

    The intensity is a modified blackbody :math:`I_\nu \propto \nu^{\beta} B_\nu(T_d)`, so

    .. math::
        s(\nu) = \frac{(\nu/\nu_0)^{\beta} B_\nu(T_d)}{B_{\nu_0}(T_d)} \cdot
        \frac{u(\nu)}{u(\nu_0)},

    where ``u`` converts MJy/sr to ``units``: 1 for MJy/sr, :math:`c^2/2k\nu^2` for K_RJ
    (giving the familiar :math:`(\nu/\nu_0)^{\beta-2}` Planck ratio in RJ) and
    :math:`1/(\partial B_\nu/\partial T)_{T_{CMB}}` for K_CMB.

    Arguments:
        nu_GHz: frequency (scalar, array or tensor), GHz.
        beta: spectral index (default 1.54, Planck 2018 XI). Tensor -> differentiable.
        T_dust: dust temperature in K (default 19.6 K).
        nu0_GHz: reference frequency (default 353 GHz).
        units: ``"K_CMB"``, ``"K_RJ"`` or ``"MJy/sr"``.

    Returns:
        The scaling, broadcast over the arguments; equals 1 at ``nu0_GHz``.

    Example:
        >>> round(modified_blackbody(353.0), 12)
        1.0
        >>> 0.03 < modified_blackbody(143.0) < 0.05    # K_CMB, 143 vs 353 GHz
        True
    """
    if units not in _UNITS:
        raise ValueError(f"units: expected one of {list(_UNITS)}, got {units!r}")
    check_positive(nu_GHz, "nu_GHz")
    check_positive(T_dust, "T_dust")
    check_positive(nu0_GHz, "nu0_GHz")
    (nu, b, td, nu0), np_out = _as_math(nu_GHz, beta, T_dust, nu0_GHz)
    # B_nu(T_d) ratio in a form that stays finite: (nu/nu0)^3 expm1(x0) / expm1(x)
    x, x0 = _x(nu, td), _x(nu0, td)
    ratio = (nu / nu0) ** (b + 3) * torch.expm1(x0) / torch.expm1(x)
    s = ratio * _unit_factor(nu, units) / _unit_factor(nu0, units)
    return _out(s, np_out)


def tsz_spectral_function(nu_GHz):
    r"""Thermal SZ spectral function :math:`g(x) = x \coth(x/2) - 4`, x = h nu / k T_CMB.

    The non-relativistic tSZ temperature change is :math:`\delta T / T_{CMB} = g(x)\, y`
    (K_CMB units); g = -2 in the RJ limit, about -0.95 at 150 GHz, zero at 217.5 GHz.

    Example:
        >>> round(tsz_spectral_function(150.0), 3)
        -0.953
    """
    check_positive(nu_GHz, "nu_GHz")
    (nu,), np_out = _as_math(nu_GHz)
    x = _x(nu, T_CMB)
    # coth(x/2) = (e^x + 1) / (e^x - 1) = 1 + 2 / expm1(x)
    return _out(x * (1 + 2 / torch.expm1(x)) - 4, np_out)
