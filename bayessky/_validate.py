"""Input checks at the library boundary: one-line errors that name the argument."""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["as_count", "as_tensor", "available_memory", "check_device", "check_map", "check_finite",
           "check_memory", "check_range", "check_mask", "check_positive", "check_regular_file", "check_seed",
           "device_dtype", "unbatched", "SEED_MAX"]

#: the largest seed every generator bayessky seeds accepts (numpy's legacy seeding, pyro.set_rng_seed)
SEED_MAX = 2**32 - 1
#: the share of the available memory one allocation may ask for: the rest is the interpreter's,
#: the intermediate arrays' and the other processes'
MEMORY_FRACTION = 0.8


def as_tensor(
    x, name: str, *, dtype: torch.dtype | None = None, device=None, like: torch.Tensor | None = None
) -> torch.Tensor:
    """Convert ``x`` (array-like) to a floating tensor, refusing non-numeric input by name."""
    if like is not None:
        dtype = dtype or like.dtype
        device = device or like.device
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name}: expected an array or tensor, got {type(x).__name__}") from err
    if not (t.is_floating_point() or t.dtype in (torch.bool, torch.int32, torch.int64, torch.int16,
                                                  torch.uint8, torch.int8)):
        raise TypeError(f"{name}: expected a real numeric array, got dtype {t.dtype}")
    if dtype is None and not t.is_floating_point():
        dtype = torch.get_default_dtype()
    return t.to(dtype=dtype, device=device) if (dtype or device) else t


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Refuse NaN or inf, reporting how many entries are bad."""
    if x.is_floating_point() and not torch.isfinite(x).all():
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise ValueError(f"{name}: contains {n_nan} NaN and {n_inf} inf values")
    return x


def check_map(
    x,
    name: str,
    *,
    min_ndim: int = 2,
    shape: Sequence[int] | None = None,
    finite: bool = True,
    dtype: torch.dtype | None = None,
    device=None,
) -> torch.Tensor:
    """A map or a batch of maps ``(..., ny, nx)``; ``shape`` fixes the trailing dimensions."""
    t = as_tensor(x, name, dtype=dtype, device=device)
    if t.ndim < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dimensions, got shape {tuple(t.shape)}")
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if tuple(t.shape[-len(shape):]) != shape:
            raise ValueError(
                f"{name}: expected trailing shape {shape}, got shape {tuple(t.shape)}"
            )
    if finite:
        check_finite(t, name)
    return t


def check_range(x, name: str, low: float | None = None, high: float | None = None):
    """Values in [low, high] (either bound optional); works on scalars, arrays and tensors."""
    arr = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=float))
    if not torch.isfinite(arr).all():
        raise ValueError(f"{name}: must be finite, got {x!r}" if arr.numel() == 1
                         else f"{name}: contains non-finite values")
    if low is not None and (arr < low).any():
        raise ValueError(f"{name}: must be >= {low}, got min {float(arr.min()):.6g}")
    if high is not None and (arr > high).any():
        raise ValueError(f"{name}: must be <= {high}, got max {float(arr.max()):.6g}")
    return x


def check_positive(x, name: str, strict: bool = True):
    """Strictly positive (or non-negative with ``strict=False``) finite values."""
    arr = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=float))
    if not torch.isfinite(arr).all():
        raise ValueError(f"{name}: must be finite")
    bad = (arr <= 0) if strict else (arr < 0)
    if bad.any():
        raise ValueError(f"{name}: must be {'>' if strict else '>='} 0, got min {float(arr.min()):.6g}")
    return x


def check_mask(mask, name: str, shape: Sequence[int] | None = None, like: torch.Tensor | None = None):
    """A mask with values in [0, 1] (binary or apodised), optionally of a given trailing shape."""
    m = check_map(mask, name, shape=shape, dtype=like.dtype if like is not None else None,
                  device=like.device if like is not None else None)
    if (m < 0).any() or (m > 1).any():
        raise ValueError(f"{name}: values must lie in [0, 1], got range [{float(m.min()):.3g}, "
                         f"{float(m.max()):.3g}]")
    return m


def unbatched(c: torch.Tensor) -> torch.Tensor:
    """The plain tensor under ``torch.func.vmap``'s BatchedTensor wrappers (the engines' batched
    path), which cannot be branched on: checks then see every batch member at once. The batch
    dimension goes first, so e.g. a flow's context values stay on the last axis."""
    ft = getattr(torch._C, "_functorch", None)
    if ft is None or not hasattr(ft, "is_batchedtensor"):  # pragma: no cover - other torch builds
        return c
    while ft.is_batchedtensor(c):
        c, bdim = ft._unwrap_batched(c, ft.maybe_get_level(c))
        if bdim is not None:
            c = c.movedim(bdim, 0)
    return c


def as_count(value, name: str) -> int:
    """A whole number (int, numpy int, or an integral float such as 16.0).

    ``int()`` alone would truncate 8.7 to 8, read the string '8' as 8 and bools as 0/1, all of
    which hide a caller's mistake; they are refused here by name.
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    if isinstance(value, (float, np.floating)) and not (math.isfinite(value) and float(value).is_integer()):
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    return int(value)


def check_device(device, name: str = "device") -> torch.device | None:
    """None, or ``device`` as a ``torch.device`` that this machine has.

    torch's own errors come late and unnamed ('gpu' fails inside ``Module.to``, 'cuda' without
    CUDA deep in a kernel launch); they are refused here by name.
    """
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{name}: unknown device {device!r} (e.g. 'cpu', 'cuda', 'cuda:0')") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}: {device!r} requested but CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}: {device!r} requested but MPS is not available on this machine")
    return dev


def device_dtype(*sources, device=None, dtype: torch.dtype | None = None) -> tuple[torch.device, torch.dtype]:
    """Where and in what precision to work: ``device`` / ``dtype`` when given, else those of the
    first floating tensor among ``sources``.

    A source is a tensor, or a ``torch.nn.Module`` (its first floating parameter, else its first
    floating buffer); anything else (arrays, plain callables, None) is skipped. Without any
    floating tensor: the CPU and torch's default dtype.
    """
    ref = None
    for src in sources:
        if isinstance(src, torch.nn.Module):
            ref = next((t for t in src.parameters() if t.is_floating_point()), None)
            if ref is None:
                ref = next((t for t in src.buffers() if t.is_floating_point()), None)
        elif isinstance(src, torch.Tensor) and src.is_floating_point():
            ref = src
        if ref is not None:
            break
    if device is not None:
        device = torch.device(device)
    else:
        device = ref.device if ref is not None else torch.device("cpu")
    if dtype is None:
        dtype = ref.dtype if ref is not None else torch.get_default_dtype()
    return device, dtype


def check_seed(seed, name: str = "seed") -> int:
    """An integer seed in [0, 2**32 - 1]: numpy and pyro refuse others deep inside, without the name."""
    if (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer))
            or not 0 <= seed <= SEED_MAX):
        raise ValueError(f"{name}: expected an integer in [0, 2**32 - 1], got {seed!r}")
    return int(seed)


def available_memory() -> int:
    """Bytes this process may still allocate: the kernel's MemAvailable (Linux), else the physical
    memory, capped by an address-space limit (``ulimit -v``) when one is set."""
    avail = None
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, OSError, ValueError):  # pragma: no cover - non-POSIX
            avail = 2**63 - 1
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit not in (resource.RLIM_INFINITY, -1) and limit > 0:
            avail = min(avail, limit)
    except (ImportError, OSError, ValueError):  # pragma: no cover - non-POSIX
        pass
    return int(avail)


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def check_memory(n_bytes, name: str, budget: int | None = None) -> int:
    """Refuse an allocation of ``n_bytes`` before it is made when it exceeds ``budget`` (default: a
    share of :func:`available_memory`).

    Why: torch and numpy fail on such sizes with allocator messages that name no argument, or
    worse, succeed on overcommitted memory and make the machine swap for hours.
    """
    n_bytes = int(n_bytes)
    if budget is None:
        budget = int(MEMORY_FRACTION * available_memory())
    if n_bytes > budget:
        raise ValueError(f"{name}: needs about {_gb(n_bytes)} of memory, more than the {_gb(budget)} "
                         "available; choose a smaller size")
    return n_bytes


def check_regular_file(path, name: str) -> str:
    """``path`` as a string, refused unless it is an existing regular file (symlinks followed).

    Why a stat before the open: reading a FIFO blocks until a writer appears, and a device
    (``/dev/zero`` named ``maps.fits``) streams forever; neither is data.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a file path, got {type(path).__name__} {path!r}")
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: no such file {path!r}") from None
    except OSError as err:
        raise ValueError(f"{name}: cannot read {path!r} ({err.strerror or type(err).__name__})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{name}: {path!r} is a folder, expected a file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a file")
        raise ValueError(f"{name}: {path!r} is {kind}, expected a regular file")
    return path
