"""Pieces shared by the trainers: data tuples, RNG capture/restore, hardware record, progress bars."""

from __future__ import annotations

import platform
import random
import sys
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["MapData", "as_map_data", "capture_rng", "restore_rng", "hardware", "progress_bar",
           "clone_state", "write_prior"]


class MapData(NamedTuple):
    """Maps ``(N, C, H, W)`` (or any ``(N, ...)``) and optional per-map context ``(N, d)``."""

    maps: torch.Tensor
    context: torch.Tensor | None = None

    def __len__(self) -> int:  # number of maps, not of fields
        return int(self.maps.shape[0])


def as_map_data(data, name: str) -> MapData | None:
    """Accept a tensor/array of maps or a ``(maps, context)`` pair; check they line up."""
    if data is None:
        return None
    if isinstance(data, MapData):
        maps, ctx = data.maps, data.context
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        maps, ctx = data
    else:
        maps, ctx = data, None
    maps = torch.as_tensor(np.asarray(maps)) if not isinstance(maps, torch.Tensor) else maps
    if not maps.is_floating_point() or maps.ndim < 2:
        raise ValueError(f"{name}: expected floating maps of shape (N, ...), got {maps.dtype} "
                         f"{tuple(maps.shape)}")
    if maps.shape[0] == 0:
        raise ValueError(f"{name}: no maps")
    if not torch.isfinite(maps).all():
        raise ValueError(f"{name}: maps contain {int((~torch.isfinite(maps)).sum())} non-finite values")
    if ctx is not None:
        ctx = torch.as_tensor(np.asarray(ctx)) if not isinstance(ctx, torch.Tensor) else ctx
        ctx = ctx.to(torch.get_default_dtype()) if not ctx.is_floating_point() else ctx
        if ctx.ndim == 1:
            ctx = ctx[:, None]
        if ctx.ndim != 2 or ctx.shape[0] != maps.shape[0]:
            raise ValueError(f"{name}: context must be (N, d) with N = {maps.shape[0]} maps, got "
                             f"{tuple(ctx.shape)}")
        if not torch.isfinite(ctx).all():
            raise ValueError(f"{name}: context contains non-finite values")
    return MapData(maps, ctx)


def clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def capture_rng(generators: dict[str, torch.Generator]) -> dict:
    """Every random state a training step can touch: torch (CPU, CUDA), numpy, python, ours."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "generators": {k: g.get_state() for k, g in generators.items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"].to(torch.uint8))
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in state["cuda"]])
    for k, g in generators.items():
        if k in state["generators"]:
            g.set_state(state["generators"][k].to(torch.uint8))


def hardware(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "machine": platform.machine()}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    else:
        info["device_name"] = platform.processor() or platform.machine()
    return info


def progress_bar(total: int, initial: int, enabled: bool, desc: str, unit: str = "epoch", leave: bool = True):
    """A tqdm bar on stderr (elapsed time and ETA of ``total`` ``unit``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit=unit,
                file=sys.stderr, dynamic_ncols=True, leave=leave)


def write_prior(out, model: torch.nn.Module, card, training: dict, metrics: dict, *, n_train: int,
                n_val: int | None) -> dict:
    """Write the prior folder ``out`` (weights + model card) at the end of training.

    The card is ``card`` completed with ``training`` (the trainer's record), the data sizes and
    ``metrics``; entries the given card already has under ``training``, ``data`` or ``metrics``
    win. Returns the card as read back from ``out``.
    """
    from ..priors.checkpoint import read_card, save_checkpoint

    data = {"n_train": n_train, **({"n_val": n_val} if n_val is not None else {}),
            **dict(card.get("data") or {})}
    full = {**dict(card), "training": {**training, **dict(card.get("training") or {})}, "data": data,
            "metrics": {**metrics, **dict(card.get("metrics") or {})}}
    save_checkpoint(out, model, full)
    return read_card(out)
