"""Network building blocks: the VAE's and GAN's map-shape check, and Glow's layers (squeeze,
periodic padding, 1x1 convolutions, ActNorm's data-dependent initialisation and the LU weight;
Kingma & Dhariwal 2018, https://arxiv.org/abs/1807.03039, sec. 3).
:class:`bayessky.nn.glow.FlowSteps` fuses ActNorm and the 1x1 convolution of each step into one
convolution from these functions.

Memory layout, and why: the flow state (the map being transformed) stays NCHW-contiguous, so the
halves of a coupling, x[:, :C/2] and x[:, C/2:], are long contiguous runs and the element-wise
coupling arithmetic vectorises. The 3x3 convolutions instead read a channels_last (NHWC) copy
built by :func:`conv_input`: on CPU, oneDNN runs the thin convolutions of a Glow (2-16 channels
at 32x32) several times faster in NHWC than in NCHW. The one copy per coupling that this costs is
also where the periodic padding and the context channels are written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch.nn import functional as F

__all__ = ["squeeze", "unsqueeze", "circular_pad", "conv_input", "conv1x1", "actnorm_statistics",
           "actnorm_reduction", "lu_factors", "lu_weight", "lu_weight_inverse", "random_lu",
           "check_square_shape"]


def check_square_shape(shape: Sequence[int], min_size: int) -> tuple[int, int, int]:
    """A map shape (C, S, S) with S a power of 2 >= ``min_size`` (the VAE's and GAN's
    convolution stacks halve or double S at every level)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"shape: expected (channels, height, width), got {shape}")
    c, h, w = shape
    if c < 1 or h != w or h < min_size or h & (h - 1):
        raise ValueError(f"shape: expected (C, S, S) with S a power of 2 >= {min_size}, got {shape}")
    return shape


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """Space-to-depth (Glow's order): (B, C, H, W) -> (B, 4C, H/2, W/2), channel 4c + 2i + j
    holding pixel (2h + i, 2w + j) of channel c."""
    b, c, h, w = x.shape
    y = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return y.reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`squeeze`: (B, 4C, H, W) -> (B, C, 2H, 2W)."""
    b, c4, h, w = y.shape
    x = y.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c4 // 4, 2 * h, 2 * w)


def circular_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """Periodic padding of the last two axes by ``p`` pixels; also for p larger than the map."""
    if p == 0:
        return x
    h, w = x.shape[-2:]
    if p > h or p > w:  # tiny levels (1x1, 2x2): gather with wrapped indices
        i = torch.arange(-p, h + p, device=x.device) % h
        j = torch.arange(-p, w + p, device=x.device) % w
        return x.index_select(-2, i).index_select(-1, j)
    return F.pad(x, (p, p, p, p), mode="circular")


_WRAP_INDEX: dict = {}


def _wrap_index(h: int, w: int, pad: int, device) -> torch.Tensor:
    """Flat indices into an (h, w) map of its periodic extension by ``pad`` pixels (cached)."""
    key = (h, w, pad, str(device))
    idx = _WRAP_INDEX.get(key)
    if idx is None:
        i = torch.arange(-pad, h + pad) % h
        j = torch.arange(-pad, w + pad) % w
        idx = (i[:, None] * w + j[None, :]).reshape(-1).to(device)
        _WRAP_INDEX[key] = idx
    return idx


def conv_input(x: torch.Tensor, context: torch.Tensor | None = None, pad: int = 0) -> torch.Tensor:
    """A convolution's input as one channels_last buffer: ``x`` (B, C, H, W) padded circularly by
    ``pad`` pixels, followed by the context (B, d) as d constant channels.

    The periodic extension is one gather of the NHWC view of ``x`` (its backward one scatter-add),
    rather than the eight slice copies of ``F.pad(mode="circular")`` and their backward ops.
    """
    b, c, h, w = x.shape
    hp, wp = h + 2 * pad, w + 2 * pad
    flat = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view for NCHW-contiguous x
    if pad:
        flat = flat.index_select(1, _wrap_index(h, w, pad, x.device))
    if context is not None:
        ctx = context[:, None, :].expand(b, hp * wp, context.shape[-1]).to(flat.dtype)
        flat = torch.cat([flat, ctx], dim=2)
    elif not pad:
        flat = flat.contiguous()
    return flat.view(b, hp, wp, -1).permute(0, 3, 1, 2)


def conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """y = W x + b at every pixel of an NCHW map; ``weight`` (C_out, C_in).

    On large, thin maps a batched matrix product over (B, C, H*W) runs many times faster than an
    NCHW 1x1 convolution (and needs no layout change); on tiny maps one GEMM over all pixels is.
    """
    b, c, h, w = x.shape
    if h * w >= 16:
        xf = x.reshape(b, c, h * w)
        wb = weight.expand(b, *weight.shape)
        y = torch.bmm(wb, xf) if bias is None else torch.baddbmm(bias[:, None], wb, xf)
        return y.view(b, weight.shape[0], h, w)
    # tiny maps: one GEMM over all pixels of the batch (oneDNN's per-call cost dominates here)
    xf = x.permute(0, 2, 3, 1).reshape(b * h * w, c)
    y = xf @ weight.T if bias is None else torch.addmm(bias, xf, weight.T)
    return y.view(b, h, w, -1).permute(0, 3, 1, 2).contiguous()


# Sums over the batches of other processes (a data-parallel trainer's all-reduce), set by
# actnorm_reduction; None: the statistics are those of the local batch alone.
_REDUCE: list[Callable[[torch.Tensor], torch.Tensor] | None] = [None]


@contextmanager
def actnorm_reduction(reduce: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Inside the block, :func:`actnorm_statistics` sums over ``reduce`` (e.g. an all-reduce
    over the processes of a data-parallel run), so every process initialises ActNorm from the
    global batch, as one process holding the whole batch would.

    ``reduce(t)`` returns the element-wise sum of ``t`` over the processes; every process must
    reach each ActNorm initialisation in the same order (they do: they run the same network).
    """
    _REDUCE.append(reduce)
    try:
        yield
    finally:
        _REDUCE.pop()


@torch.no_grad()
def actnorm_statistics(x: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """ActNorm's data-dependent init: (log-scale, bias) (C,) giving zero mean, unit variance.

    Deterministic: the per-channel mean and biased standard deviation over (batch, H, W); inside
    :func:`actnorm_reduction`, over the batches of all processes.
    """
    x = x.detach()
    reduce = _REDUCE[-1]
    if reduce is None:
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
    else:  # two passes (mean, then squared deviations) as var() does: no E[x^2] - E[x]^2 cancellation
        sums = reduce(torch.cat([x.sum(dim=(0, 2, 3)), x.new_tensor([x.numel() // x.shape[1]])]))
        count = sums[-1]
        mean = sums[:-1] / count
        var = reduce((x - mean[:, None, None]).square().sum(dim=(0, 2, 3))) / count
    log_scale = -torch.log(var.sqrt() + eps)
    return log_scale, -mean * torch.exp(log_scale)


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
