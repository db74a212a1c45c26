"""Glow building blocks: squeeze, periodic padding, ActNorm and the LU-parametrised 1x1 convolution.

Every invertible layer maps data -> latent in ``forward(x) -> (y, log|det dy/dx|)`` and back in
``inverse(y) -> (x, log|det dx/dy|)``; log-determinants have shape (batch,) and are in nats.

Layout: the Glow networks keep activations in ``torch.channels_last`` memory. On CPU oneDNN runs
the thin convolutions of a Glow (2-16 channels at 32x32) about ten times faster in NHWC than in
NCHW, and every helper here (squeeze, padding) keeps that layout instead of silently copying back.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["squeeze", "unsqueeze", "circular_pad", "ActNorm", "actnorm_statistics", "InvConv1x1",
           "lu_factors", "lu_weight", "lu_weight_inverse", "random_lu"]

_CL = torch.channels_last


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """Space-to-depth: (B, C, H, W) -> (B, 4C, H/2, W/2), channels_last.

    Output channel ``(2 i + j) C + c`` holds pixel ``(2h + i, 2w + j)`` of input channel ``c``. The
    order differs from Glow's ``4c + 2i + j``; it is one fixed permutation (absorbed by the next
    1x1 convolution) chosen because it is a single contiguous copy in NHWC memory.
    """
    b, c, h, w = x.shape
    y = x.permute(0, 2, 3, 1).reshape(b, h // 2, 2, w // 2, 2, c)
    y = y.permute(0, 1, 3, 2, 4, 5).reshape(b, h // 2, w // 2, 4 * c)
    return y.permute(0, 3, 1, 2)


def unsqueeze(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`squeeze`: (B, 4C, H, W) -> (B, C, 2H, 2W), channels_last."""
    b, c4, h, w = y.shape
    c = c4 // 4
    x = y.permute(0, 2, 3, 1).reshape(b, h, w, 2, 2, c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c)
    return x.permute(0, 3, 1, 2)


def circular_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """Periodic padding of the last two axes by ``p`` pixels, keeping channels_last memory.

    ``F.pad(mode="circular")`` returns NCHW-contiguous output, which sends the following oneDNN
    convolution down its slow path; concatenation keeps the input's layout. Works for p > size.
    """
    if p == 0:
        return x
    h, w = x.shape[-2:]
    if p > h or p > w:  # tiny maps (1x1, 2x2 levels): gather with wrapped indices
        i = torch.arange(-p, h + p, device=x.device) % h
        j = torch.arange(-p, w + p, device=x.device) % w
        return x.index_select(-2, i).index_select(-1, j).contiguous(memory_format=_CL)
    x = torch.cat([x[..., -p:, :], x, x[..., :p, :]], dim=-2)
    return torch.cat([x[..., -p:], x, x[..., :p]], dim=-1)


@torch.no_grad()
def actnorm_statistics(x: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """ActNorm's data-dependent init: (log-scale, bias) (C,) giving zero mean, unit variance.

    Deterministic: the per-channel mean and biased standard deviation over (batch, H, W).
    """
    x = x.detach()
    mean = x.mean(dim=(0, 2, 3))
    log_scale = -torch.log(x.var(dim=(0, 2, 3), unbiased=False).sqrt() + eps)
    return log_scale, -mean * torch.exp(log_scale)


class ActNorm(nn.Module):
    r"""Per-channel affine map with data-dependent initialisation (Kingma & Dhariwal 2018, sec. 3.1).

    .. math:: y_{c} = x_{c}\, e^{s_c} + b_c, \qquad \log|\det J| = H W \sum_c s_c .

    On the first ``forward`` in training mode, ``s`` and ``b`` are set from that batch so that its
    output has zero mean and unit (biased) variance per channel. The ``initialized`` buffer is saved
    in the state dict, so loading trained weights never re-runs the initialisation.

    References:
        Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018),
        https://arxiv.org/abs/1807.03039

    Arguments:
        channels: number of channels C.
        eps: floor added to the batch standard deviation at initialisation.

    Example:
        >>> a = ActNorm(3)
        >>> y, ld = a(torch.randn(8, 3, 4, 4) * 5 + 2)
        >>> bool(a.initialized), ld.shape
        (True, torch.Size([8]))
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))
        self.eps = eps

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set ``s, b`` from the batch ``x`` (B, C, H, W) and mark the layer initialised."""
        log_scale, bias = actnorm_statistics(x, self.eps)
        self.log_scale.copy_(log_scale)
        self.bias.copy_(bias)
        self.initialized.fill_(True)

    def maybe_initialize(self, x: torch.Tensor) -> None:
        # a Python bool of a CPU buffer is free; on CUDA it syncs once per layer per call, so the
        # check is skipped outside training where no initialisation can happen
        if self.training and not bool(self.initialized):
            self.initialize(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.maybe_initialize(x)
        s = self.log_scale.view(1, -1, 1, 1)
        y = torch.addcmul(self.bias.view(1, -1, 1, 1), x, torch.exp(s))
        ld = (self.log_scale.sum() * (x.shape[2] * x.shape[3])).expand(x.shape[0])
        return y, ld

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.log_scale.view(1, -1, 1, 1)
        x = (y - self.bias.view(1, -1, 1, 1)) * torch.exp(-s)
        ld = (-self.log_scale.sum() * (y.shape[2] * y.shape[3])).expand(y.shape[0])
        return x, ld


def random_lu(channels: int, dtype: torch.dtype | None = None):
    """LU factors of a random rotation: (perm, lower (strict), upper (strict), sign_s, log|s|)."""
    q = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))[0]
    p, lower, upper = torch.linalg.lu(q)
    s = torch.diagonal(upper)
    dtype = dtype or torch.get_default_dtype()
    return (p.to(dtype), torch.tril(lower, -1).to(dtype), torch.triu(upper, 1).to(dtype),
            torch.sign(s).to(dtype), torch.log(torch.abs(s)).to(dtype))


def lu_factors(lower, upper, sign_s, log_s):
    """Unit lower L and upper U (with diagonal sign(s) e^{log|s|}); batched over leading axes."""
    eye = torch.eye(lower.shape[-1], dtype=lower.dtype, device=lower.device)
    lo = torch.tril(lower, -1) + eye
    up = torch.triu(upper, 1) + torch.diag_embed(sign_s * torch.exp(log_s))
    return lo, up


def lu_weight(perm, lower, upper, sign_s, log_s) -> torch.Tensor:
    """W = P L U, batched over leading axes."""
    lo, up = lu_factors(lower, upper, sign_s, log_s)
    return perm @ lo @ up


def lu_weight_inverse(perm, lower, upper, sign_s, log_s) -> torch.Tensor:
    """W^{-1} = U^{-1} L^{-1} P^T by triangular solves (in float64 for float32 weights)."""
    lo, up = lu_factors(lower, upper, sign_s, log_s)
    work = torch.float64 if lo.dtype == torch.float32 else lo.dtype
    eye = torch.eye(lo.shape[-1], dtype=work, device=lo.device).expand(lo.shape)
    linv = torch.linalg.solve_triangular(lo.to(work), eye, upper=False, unitriangular=True)
    uinv = torch.linalg.solve_triangular(up.to(work), eye, upper=True)
    return (uinv @ linv @ perm.to(work).transpose(-1, -2)).to(lo.dtype)


class InvConv1x1(nn.Module):
    r"""Invertible 1x1 convolution with the LU parametrisation of Glow (sec. 3.2).

    .. math:: W = P\,L\,(U + \mathrm{diag}(\mathrm{sign}(s)\, e^{\log|s|})), \qquad
              \log|\det J| = H W \sum_c \log|s_c| ,

    with P a fixed permutation, L unit lower-triangular and U strictly upper-triangular. W starts
    as a random rotation (from torch's global generator).

    References:
        Glow (Kingma & Dhariwal, 2018), https://arxiv.org/abs/1807.03039

    Arguments:
        channels: number of channels C.

    Example:
        >>> conv = InvConv1x1(4)
        >>> x = torch.randn(2, 4, 3, 3)
        >>> y, ld = conv(x)
        >>> torch.allclose(conv.inverse(y)[0], x, atol=1e-5)
        True
    """

    def __init__(self, channels: int):
        super().__init__()
        perm, lower, upper, sign_s, log_s = random_lu(channels)
        self.register_buffer("perm", perm)
        self.register_buffer("sign_s", sign_s)
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(upper)
        self.log_s = nn.Parameter(log_s)

    def weight(self) -> torch.Tensor:
        """W (C, C): y = W x at every pixel."""
        return lu_weight(self.perm, self.lower, self.upper, self.sign_s, self.log_s)

    def weight_inverse(self) -> torch.Tensor:
        return lu_weight_inverse(self.perm, self.lower, self.upper, self.sign_s, self.log_s)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = nn.functional.conv2d(x, self.weight()[:, :, None, None])
        return y, (self.log_s.sum() * (x.shape[2] * x.shape[3])).expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = nn.functional.conv2d(y, self.weight_inverse()[:, :, None, None])
        return x, (-self.log_s.sum() * (y.shape[2] * y.shape[3])).expand(y.shape[0])
