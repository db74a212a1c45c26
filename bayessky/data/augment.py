"""Random symmetry augmentation of periodic maps: flips, quarter turns and cyclic shifts.

Every operation only permutes pixels, so it leaves the pixel histogram unchanged, and on a
periodic map it maps DFT mode k to a mode of the same |k| (flips and turns) or multiplies it by a
phase (shifts): the power spectrum is preserved exactly. These are the symmetries of CAMELS
boxes and of the synthetic families, whose labels they leave unchanged (HIGlow used cyclic shifts
and flips).

Each map of a batch ``(B, ..., H, W)`` gets its own draw; all randomness comes from the given
``torch.Generator`` (CPU or on the maps' device), so a seed fixes the result on any device.
"""

from __future__ import annotations

import torch

__all__ = ["random_flip", "random_rot90", "random_shift", "Augment"]


def _draw_int(high: int, n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    gdev = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(high, (n,), generator=generator, device=gdev).to(device)


def _check(x: torch.Tensor, name: str = "maps") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 3:
        raise ValueError(f"{name}: expected a batch (B, ..., H, W), got shape {tuple(x.shape)}")
    return x


def _select(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` where the per-map ``mask`` is true, else ``b``."""
    return torch.where(mask.view(-1, *([1] * (a.ndim - 1))), a, b)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None, *, axes=(-2, -1)) -> torch.Tensor:
    """Flip each map along each axis in ``axes`` with probability 1/2 (independently)."""
    _check(x)
    for ax in axes:
        flip = _draw_int(2, x.shape[0], generator, x.device).bool()
        x = _select(flip, x.flip(ax), x)
    return x


def random_rot90(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate each square map by k quarter turns, k uniform in {0, 1, 2, 3}."""
    _check(x)
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"maps: quarter turns need square maps, got shape {tuple(x.shape)}")
    k = _draw_int(4, x.shape[0], generator, x.device)
    out = x
    for turns in (1, 2, 3):
        out = _select(k == turns, torch.rot90(x, turns, dims=(-2, -1)), out)
    return out


def random_shift(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Cyclically shift each map by a uniform random (dy, dx) in [0, H) x [0, W)."""
    _check(x)
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    dy = _draw_int(h, b, generator, x.device)
    dx = _draw_int(w, b, generator, x.device)
    # out[b, i, j] = x[b, (i - dy_b) % H, (j - dx_b) % W], the same as torch.roll(x[b], (dy, dx));
    # one gather on flattened pixels (advanced indexing is far slower on busy CPUs)
    rows = (torch.arange(h, device=x.device)[None, :] - dy[:, None]) % h  # (B, H)
    cols = (torch.arange(w, device=x.device)[None, :] - dx[:, None]) % w  # (B, W)
    flat = x.reshape(b, -1, h * w)
    idx = (rows[:, :, None] * w + cols[:, None, :]).reshape(b, 1, h * w).expand(flat.shape)
    out = torch.gather(flat, 2, idx)
    return out.reshape(x.shape)


class Augment:
    """A batch augmentation: random flips, quarter turns (square maps only) and cyclic shifts.

    Arguments:
        flips: flip along each axis with probability 1/2.
        rot90: random quarter turns; ``"auto"`` applies them when the maps are square.
        shifts: uniform cyclic shifts (the maps must be periodic).

    Example:
        >>> aug = Augment()
        >>> g = torch.Generator().manual_seed(0)
        >>> aug(torch.randn(8, 1, 16, 16), g).shape
        torch.Size([8, 1, 16, 16])
    """

    def __init__(self, flips: bool = True, rot90: bool | str = "auto", shifts: bool = True):
        if rot90 not in (True, False, "auto"):
            raise ValueError(f"rot90: expected True, False or 'auto', got {rot90!r}")
        self.flips, self.rot90, self.shifts = bool(flips), rot90, bool(shifts)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check(x)
        if self.flips:
            x = random_flip(x, generator)
        square = x.shape[-1] == x.shape[-2]
        if self.rot90 is True or (self.rot90 == "auto" and square):
            x = random_rot90(x, generator)
        if self.shifts:
            x = random_shift(x, generator)
        return x

    def to_config(self) -> dict:
        return {"flips": self.flips, "rot90": self.rot90, "shifts": self.shifts}

    def __repr__(self) -> str:
        return f"Augment(flips={self.flips}, rot90={self.rot90!r}, shifts={self.shifts})"
