"""DCGAN generator and WGAN-GP critic for maps (after cosmikyu's DCGAN-WGP)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn

from .._validate import device_dtype
from .layers import check_square_shape

__all__ = ["Generator", "Critic", "GAN", "gradient_penalty"]


def _levels(size: int) -> int:
    """Number of factor-2 resolution changes between 4 x 4 and ``size`` x ``size``."""
    return int(round(math.log2(size // 4)))


class _ChannelAffine(nn.Module):
    """cosmikyu's "linear channel": a learned scale and offset per output channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.bias


class _ScaledTanh(nn.Module):
    """b * tanh(x / b): identity near 0, bounded by +-b (keeps rare huge pixels from blowing up)."""

    def __init__(self, bound: float):
        super().__init__()
        self.bound = float(bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bound * torch.tanh(x / self.bound)


class Generator(nn.Module):
    r"""DCGAN generator :math:`G: z \in \mathbb{R}^{d} \mapsto` map (C, S, S).

    Layout: linear -> (w 2^{L-1}, 4, 4) -> norm -> LeakyReLU(0.2), then L = log2(S/4) transposed
    convolutions 4x4 stride 2 (each but the last followed by norm and LeakyReLU, widths halving
    down to ``width``), then a per-channel affine and a scaled tanh, as in cosmikyu's DCGAN-WGP.
    For S = 128 and width 64 the hidden widths are 1024-512-256-128-64.

    References:
        | Unsupervised Representation Learning with DCGANs (Radford et al., 2015)
          https://arxiv.org/abs/1511.06434
        | Generative models of multi-component microwave-sky maps (Han, Sehgal &
          Villaescusa-Navarro, 2021) https://arxiv.org/abs/2104.02735

    Arguments:
        shape: output shape (C, S, S), S a power of 2 >= 8, in the network's (transformed) units.
        latent_dim: dimension of z ~ N(0, I) (cosmikyu: 256).
        width: channels of the last hidden layer; each coarser level doubles it.
        norm: "batch" (DCGAN; use ``eval()`` at inference so maps do not depend on their batch),
            "group" (per-sample) or "none".
        output_bound: bound b of the final b tanh(x/b) in standardised units, or None for none.

    Example:
        >>> g = Generator((1, 16, 16), latent_dim=8, width=4)
        >>> g(torch.randn(3, 8)).shape
        torch.Size([3, 1, 16, 16])
    """

    def __init__(
        self,
        shape: Sequence[int] = (1, 64, 64),
        latent_dim: int = 256,
        width: int = 64,
        norm: str = "batch",
        output_bound: float | None = 15.0,
    ):
        super().__init__()
        self.shape = check_square_shape(shape, 8)
        self.latent_dim, self.width, self.norm = int(latent_dim), int(width), norm
        self.output_bound = None if output_bound is None else float(output_bound)
        if norm not in ("batch", "group", "none"):
            raise ValueError(f"norm: expected 'batch', 'group' or 'none', got {norm!r}")
        c, s, _ = self.shape
        L = _levels(s)
        widths = [self.width * 2 ** (L - 1 - i) for i in range(L)]  # coarse -> fine

        def act(ch: int) -> list[nn.Module]:
            if norm == "batch":
                n = [nn.BatchNorm2d(ch)]
            elif norm == "group":
                n = [nn.GroupNorm(max(g for g in (1, 2, 4, 8) if ch % g == 0), ch)]
            else:
                n = []
            return n + [nn.LeakyReLU(0.2)]

        layers: list[nn.Module] = [nn.Linear(self.latent_dim, widths[0] * 16),
                                   nn.Unflatten(1, (widths[0], 4, 4))]
        layers += act(widths[0])
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1), *act(cout)]
        layers += [nn.ConvTranspose2d(widths[-1], c, 4, 2, 1), _ChannelAffine(c)]
        if self.output_bound is not None:
            layers.append(_ScaledTanh(self.output_bound))
        self.net = nn.Sequential(*layers)

    @property
    def architecture(self) -> dict:
        """JSON-able constructor keyword arguments."""
        return {"shape": list(self.shape), "latent_dim": self.latent_dim, "width": self.width,
                "norm": self.norm, "output_bound": self.output_bound}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Maps (..., C, S, S) for latents ``z`` of shape (..., latent_dim)."""
        lead = z.shape[:-1]
        return self.net(z.reshape(-1, self.latent_dim)).reshape(*lead, *self.shape)


class Critic(nn.Module):
    r"""WGAN-GP critic :math:`D:` map (C, S, S) :math:`\mapsto \mathbb{R}`, without normalisation.

    L = log2(S/4) convolutions 4x4 stride 2 with LeakyReLU(0.2), widths ``width`` 2^i
    (64-128-256-512 at S = 64, ...-1024 at S = 128 as in cosmikyu's table), then a linear layer
    from (w 2^{L-1}, 4, 4) to one score. No BatchNorm: the gradient penalty is a per-sample
    constraint on ||grad_x D(x)||, which batch statistics would couple across samples.

    Arguments:
        shape: input shape (C, S, S).
        width: channels of the first convolution.

    Example:
        >>> Critic((1, 16, 16), width=4)(torch.randn(3, 1, 16, 16)).shape
        torch.Size([3])
    """

    def __init__(self, shape: Sequence[int] = (1, 64, 64), width: int = 64):
        super().__init__()
        self.shape = check_square_shape(shape, 8)
        self.width = int(width)
        c, s, _ = self.shape
        layers: list[nn.Module] = []
        cin = c
        for i in range(_levels(s)):
            cout = self.width * 2**i
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2)]
            cin = cout
        layers += [nn.Flatten(), nn.Linear(cin * 16, 1)]
        self.net = nn.Sequential(*layers)

    @property
    def architecture(self) -> dict:
        """JSON-able constructor keyword arguments."""
        return {"shape": list(self.shape), "width": self.width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of shape (B,) for maps (B, C, S, S)."""
        return self.net(x).squeeze(-1)


class GAN(nn.Module):
    """A generator and its critic, saved and resumed together; the prior uses ``generator``.

    Arguments:
        shape: map shape (C, S, S).
        latent_dim: generator latent dimension.
        width: generator finest width and critic first width.
        critic_width: critic first width if different from ``width``.
        norm, output_bound: see :class:`Generator`.

    Example:
        >>> gan = GAN((1, 16, 16), latent_dim=8, width=4)
        >>> gan.critic(gan.sample(2)).shape
        torch.Size([2])
    """

    def __init__(
        self,
        shape: Sequence[int] = (1, 64, 64),
        latent_dim: int = 256,
        width: int = 64,
        critic_width: int | None = None,
        norm: str = "batch",
        output_bound: float | None = 15.0,
    ):
        super().__init__()
        self.generator = Generator(shape, latent_dim, width, norm, output_bound)
        self.critic = Critic(shape, width if critic_width is None else critic_width)
        self.shape, self.latent_dim = self.generator.shape, self.generator.latent_dim

    @property
    def architecture(self) -> dict:
        """JSON-able constructor keyword arguments."""
        g = self.generator.architecture
        return {**g, "critic_width": self.critic.width}

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Generator output for ``z`` (..., latent_dim): the LatentPrior decoder interface."""
        return self.generator(z)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """``n`` generated maps (n, C, S, S); ``temperature`` scales z."""
        device, dtype = device_dtype(self.generator)
        return self.generator(temperature * torch.randn(n, self.latent_dim, device=device, dtype=dtype))


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    lambda_gp: float = 10.0,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""WGAN-GP penalty :math:`\lambda\, \mathbb{E}[(\|\nabla_{\hat x} D(\hat x)\|_2 - 1)^2]`.

    :math:`\hat x = \epsilon x_\text{real} + (1 - \epsilon) x_\text{fake}` with one
    :math:`\epsilon \sim U(0, 1)` per sample (Gulrajani et al. 2017, eq. 3,
    https://arxiv.org/abs/1704.00028). The graph is kept so the penalty trains the critic.

    Arguments:
        critic: maps (B, ...) -> scores (B,) or (B, 1).
        real, fake: batches of the same shape (B, ...); ``fake`` is usually detached.
        lambda_gp: penalty weight (10 in the paper and in cosmikyu).
        eps: optional interpolation weights (B,); drawn uniformly when None.

    Returns:
        A scalar tensor.
    """
    if real.shape != fake.shape:
        raise ValueError(f"fake: expected the shape of real {tuple(real.shape)}, got {tuple(fake.shape)}")
    b = real.shape[0]
    if eps is None:
        eps = torch.rand(b, device=real.device, dtype=real.dtype)
    eps = eps.reshape(b, *([1] * (real.ndim - 1)))
    x = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
    with torch.enable_grad():
        score = critic(x)
        (grad,) = torch.autograd.grad(score.sum(), x, create_graph=True)
    return lambda_gp * ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()
