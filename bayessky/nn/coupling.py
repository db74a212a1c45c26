"""Glow's affine coupling (optionally conditional), the affine injector and batched context MLPs.

The conditional layers follow HIGlow (Friedman & Hassan 2022), which takes them from SRFlow
(Lugmayr et al. 2020): the coupling network sees the condition as constant image channels, and an
affine injector scales and shifts every channel by amounts computed from the condition alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .layers import conv_input

__all__ = ["AffineCoupling", "affine_coupling", "init_coupling_weights", "ContextMLP",
           "inject", "ACTIVATIONS", "INJECTOR_LOG_SCALE_RANGE"]

# Activations applied to a fresh convolution / linear output. ReLU and tanh run in place: their
# backward needs only their output, and the producing layer does not keep it, so this is autograd-
# safe and saves one allocation per hidden layer.
ACTIVATIONS = {"relu": torch.relu_, "tanh": torch.tanh_, "silu": F.silu, "elu": F.elu}

# HIGlow clamps the injector's log-scale to [log 1e-3, 5]: the condition may shrink a channel by
# at most 1000x or stretch it by at most e^5, which keeps sampling at extreme conditions finite
INJECTOR_LOG_SCALE_RANGE = (math.log(1e-3), 5.0)


def affine_coupling(x: torch.Tensor, context: torch.Tensor | None, weights: Sequence[torch.Tensor], *,
                    periodic: bool = True, min_scale: float = 0.01, activation: str = "relu",
                    inverse: bool = False, inplace: bool = False):
    r"""Functional affine coupling (see :class:`AffineCoupling`); ``weights`` = (w1, b1, w2, b2, w3, b3).

    ``inplace=True`` lets the layer overwrite ``x`` (and return it) when no autograd graph is being
    recorded: the caller promises ``x`` is a temporary it owns. This removes the concatenation and
    the temporaries of the scale computation on the inference path.

    Returns:
        (y, log|det J| (B,)) of the applied direction.
    """
    w1, b1, w2, b2, w3, b3 = weights
    act = ACTIVATIONS[activation]
    ca = x.shape[1] // 2
    cb = x.shape[1] - ca
    xa, xb = x.split([ca, cb], 1)
    pad = 0 if periodic else 1
    if periodic and context is not None:
        # with periodic padding, convolving the constant context channels gives a constant per
        # sample and hidden channel: the same function as concatenating them, at none of the cost
        h = F.conv2d(conv_input(xa, None, 2), w1[:, :ca], b1)
        h = act(h.add_((context @ w1[:, ca:].sum(dim=(2, 3)).T)[:, :, None, None]))
    else:
        h = act(F.conv2d(conv_input(xa, context, 2 if periodic else 0), w1, b1, padding=pad))
    h = act(F.conv2d(h, w2, b2))
    # back to NCHW so that t, r and x_b are contiguous runs and the arithmetic below vectorises
    h = F.conv2d(h, w3, b3, padding=pad).contiguous()
    t, r = h.split([cb, cb], 1)
    if inplace and min_scale > 0 and not torch.is_grad_enabled():
        s = r.sigmoid_().mul_(1.0 - min_scale).add_(min_scale)
        if inverse:
            xb.div_(s).sub_(t)
        else:
            xb.add_(t).mul_(s)
        ld = s.log_().sum(dim=(1, 2, 3))
        return x, (-ld if inverse else ld)
    if min_scale == 0.0:
        log_s = F.logsigmoid(r)
        s = torch.exp(log_s)
    else:
        s = torch.sigmoid(r) * (1.0 - min_scale) + min_scale
        log_s = torch.log(s)
    yb = xb / s - t if inverse else (xb + t) * s
    ld = log_s.sum(dim=(1, 2, 3))
    return torch.cat([xa, yb], 1), (-ld if inverse else ld)


def init_coupling_weights(channels: int, hidden: int, context_dim: int, dtype=None) -> list[torch.Tensor]:
    """Fresh (w1, b1, w2, b2, w3, b3): PyTorch's default conv init for the first two layers, zeros
    for the last with the scale logits' bias at 2 (Glow's ``sigmoid(h + 2)``)."""
    dtype = dtype or torch.get_default_dtype()
    ca = channels // 2
    cb = channels - ca
    convs = [nn.Conv2d(ca + context_dim, hidden, 3), nn.Conv2d(hidden, hidden, 1)]
    out = []
    for conv in convs:
        out += [conv.weight.detach().to(dtype), conv.bias.detach().to(dtype)]
    b3 = torch.zeros(2 * cb, dtype=dtype)
    b3[cb:] = 2.0
    out += [torch.zeros(2 * cb, hidden, 3, 3, dtype=dtype), b3]
    return out


class AffineCoupling(nn.Module):
    r"""Affine coupling of Glow with a bounded scale, optionally conditioned on a context vector.

    The input is split along channels into ``x_a`` (the first ``C // 2``) and ``x_b``; a CNN of
    ``x_a`` (and of the context, as constant channels) gives a shift ``t`` and scale logits ``r``:

    .. math:: y_a = x_a, \quad y_b = (x_b + t)\,s, \quad s = c + (1 - c)\,\sigma(r), \quad
              \log|\det J| = \sum \log s .

    The scale lies in (c, 1] (``c = min_scale``, HIGlow's form): the data -> latent direction can
    only contract, and sampling expands by at most 1/c per layer, so a trained model cannot produce
    overflowing samples. ``r`` starts at 2 (Glow's ``sigmoid(h + 2)``, folded into the zero-initialised
    last convolution's bias), i.e. every coupling starts close to the identity.

    CNN: conv3x3 -> act -> conv1x1 -> act -> conv3x3 (zero-initialised). With ``periodic=True`` the
    input is padded circularly by two pixels once and both 3x3 convolutions run unpadded: the first
    convolution of a periodically extended map is the periodic extension of its output, so this
    equals circular padding before every 3x3 convolution while copying only the thin input.

    References:
        Glow (Kingma & Dhariwal, 2018), https://arxiv.org/abs/1807.03039;
        SRFlow (Lugmayr et al., 2020), https://arxiv.org/abs/2006.14200;
        HIGlow (Friedman & Hassan, 2022), https://github.com/friedmanroy/HI-generation

    Arguments:
        channels: number of input channels C (>= 2).
        hidden: channels of the CNN's hidden layers.
        context_dim: length d of the context vector (0: unconditional).
        periodic: circular instead of zero padding.
        min_scale: lower bound c of the scale, in [0, 1).
        activation: "relu" (Glow, HIGlow), "silu", "elu" or "tanh".

    Example:
        >>> layer = AffineCoupling(4, hidden=8, context_dim=2)
        >>> x, c = torch.randn(3, 4, 8, 8), torch.randn(3, 2)
        >>> y, ld = layer(x, c)
        >>> torch.allclose(layer.inverse(y, c)[0], x, atol=1e-5)
        True
    """

    def __init__(self, channels: int, hidden: int, context_dim: int = 0, periodic: bool = True,
                 min_scale: float = 0.01, activation: str = "relu"):
        super().__init__()
        check_coupling_args(channels, min_scale, activation)
        self.context_dim = int(context_dim)
        self.periodic = bool(periodic)
        self.min_scale = float(min_scale)
        self.activation = activation
        self.weights = nn.ParameterList(init_coupling_weights(channels, hidden, self.context_dim))

    def _kw(self):
        return {"periodic": self.periodic, "min_scale": self.min_scale, "activation": self.activation}

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None):
        return affine_coupling(x, context, list(self.weights), **self._kw())

    def inverse(self, y: torch.Tensor, context: torch.Tensor | None = None):
        return affine_coupling(y, context, list(self.weights), inverse=True, **self._kw())


def check_coupling_args(channels: int, min_scale: float, activation: str) -> None:
    if channels < 2:
        raise ValueError(f"channels: a coupling needs at least 2 channels, got {channels}")
    if not 0.0 <= min_scale < 1.0:
        raise ValueError(f"min_scale: must lie in [0, 1), got {min_scale}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")


def inject(x: torch.Tensor, log_scale: torch.Tensor, shift: torch.Tensor, inverse: bool = False):
    r"""Affine injector: per-sample, per-channel affine map set by the condition.

    .. math:: y = x\, e^{g_s(c)} + g_t(c), \qquad \log|\det J| = H W \sum_c g_s(c)_c .

    HIGlow computes ``g_s, g_t`` with a CNN on the condition's constant channels; with periodic
    padding a CNN of a constant image is constant, so a per-channel MLP is the same function
    class without the per-pixel work (see :class:`ContextMLP`).

    Arguments:
        x: (B, C, H, W) input (the output y when ``inverse``).
        log_scale: (B, C) log-scales g_s.
        shift: (B, C) shifts g_t.
        inverse: apply the inverse map.

    Returns:
        (output, log|det J| of the applied map, shape (B,)).
    """
    hw = x.shape[2] * x.shape[3]
    ls, t = log_scale[:, :, None, None], shift[:, :, None, None]
    if inverse:
        return (x - t) * torch.exp(-ls), -hw * log_scale.sum(-1)
    return torch.addcmul(t, x, torch.exp(ls)), hw * log_scale.sum(-1)


class ContextMLP(nn.Module):
    r"""``n`` independent one-hidden-layer MLPs of the same context, evaluated in two batched matmuls.

    .. math:: o_k = W^{(2)}_k\, a(W^{(1)}_k c + b^{(1)}_k) + b^{(2)}_k, \qquad k = 1..n ,

    The last layer is zero-initialised, so every output starts at zero (identity injectors,
    standard-normal priors). One module serves all K flow steps of a level: K small MLPs would cost
    3K tiny kernel launches per pass, this costs three.

    Arguments:
        n: number of MLPs.
        context_dim: input length d.
        width: hidden width.
        out: output length of each MLP.
        activation: hidden activation (see :data:`ACTIVATIONS`).

    Example:
        >>> ContextMLP(5, 2, 8, 6)(torch.randn(3, 2)).shape
        torch.Size([5, 3, 6])
    """

    def __init__(self, n: int, context_dim: int, width: int, out: int, activation: str = "relu"):
        super().__init__()
        bound = 1.0 / math.sqrt(context_dim)
        self.w1 = nn.Parameter(torch.empty(n, context_dim, width).uniform_(-bound, bound))
        self.b1 = nn.Parameter(torch.empty(n, 1, width).uniform_(-bound, bound))
        self.w2 = nn.Parameter(torch.zeros(n, width, out))
        self.b2 = nn.Parameter(torch.zeros(n, 1, out))
        self.act = ACTIVATIONS[activation]

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """(B, d) -> (n, B, out)."""
        c = context.unsqueeze(0).expand(self.w1.shape[0], -1, -1)
        h = self.act(torch.baddbmm(self.b1, c, self.w1))
        return torch.baddbmm(self.b2, h, self.w2)
