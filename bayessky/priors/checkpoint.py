"""Prior checkpoints: safetensors + JSON only, atomic writes, one-line refusals, never unpickling.

A **prior** is a folder::

    weights.safetensors   tensors of ``model.state_dict()`` (safetensors.torch format)
    card.json             the model card below

Card schema ``bayessky-prior-v1`` (other modules rely on these keys)::

    {
      "format": "bayessky-prior-v1",
      "kind": "glow" | "cglow" | "maf" | "vae" | "gan",   # a key of bayessky.nn.registry.NETWORKS
      "architecture": {...},        # constructor kwargs: build_network(kind, architecture)
      "transform": [{...}, ...],    # data transform physical -> network space, applied in order
                                    # (bayessky.distributions.transforms configs)
      "context": null | {"names": [...], "low": [...], "high": [...]},
                                    # conditioning values (physical units, as the network
                                    # receives them) and their training range
      "data": {"family" | "files": ..., "generator_version": ..., "n_train": ..., ...},
      "training": {hyper-parameters, "epochs": ..., "time_s": ..., "hardware": {...}, ...},
      "metrics": {held-out numbers: "val_nll_per_map", "val_bits_per_pixel", ...},
      "date": "2025-01-01T12:00:00+00:00",   # ISO 8601, UTC
      "bayessky_version": "0.1.0",
      "weights_sha256": "..."       # written by save_checkpoint, checked by load_checkpoint
    }

Only ``kind`` and ``architecture`` are required when saving; the rest gets defaults
(:func:`bayessky.priors.card.complete_card`).

Training states (for ``resume``) use the same safetensors reader; they live in
:mod:`bayessky.train.checkpoint`.

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed
over the target (``os.replace`` is atomic on POSIX and Windows).

Loading checks, before any parsing, that the file is a safetensors file (a ``torch.save``
zip or a pickle renamed to ``.safetensors`` is refused by its magic bytes, not opened), that
it is complete (header and data offsets against the file size), that the card is valid JSON
of the schema, that the weights hash matches the card, and that tensor names and shapes match
the architecture (reporting the first mismatch).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch

from ..atomic import atomic_write, write_json
from ..nn.registry import build_network
from .card import complete_card, validate_card

__all__ = [
    "WEIGHTS_FILE",
    "CARD_FILE",
    "Checkpoint",
    "read_safetensors",
    "save_checkpoint",
    "load_checkpoint",
    "read_card",
    "match_state",
    "serialise",
]

WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "card.json"
_MAX_HEADER = 100_000_000  # the safetensors library's own limit


class Checkpoint(NamedTuple):
    """A loaded prior: the network (eval mode, weights loaded) and its card."""

    model: torch.nn.Module
    card: dict


# -- safetensors reading with clear refusals --------------------------------------------------------
def _sniff(path: Path, name: str) -> tuple[dict, int]:
    """Validate the container before parsing; returns (header, header_length)."""
    from .._validate import check_regular_file

    check_regular_file(path, name)  # a FIFO or a device under the weights' name would block the read
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if head[:4] == b"PK\x03\x04":
            raise ValueError(f"{name}: {str(path)!r} is a zip archive (a torch.save checkpoint?), not "
                             "safetensors; refusing to unpickle it")
        if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
            raise ValueError(f"{name}: {str(path)!r} is a Python pickle, not safetensors; refusing to "
                             "unpickle it")
        if len(head) < 8:
            raise ValueError(f"{name}: {str(path)!r} is truncated ({size} bytes; a safetensors file "
                             "starts with an 8-byte header length)")
        n = int.from_bytes(head, "little")
        if n > _MAX_HEADER:
            raise ValueError(f"{name}: {str(path)!r} is not a safetensors file (header length {n})")
        if 8 + n > size:
            raise ValueError(f"{name}: {str(path)!r} is truncated (header needs {8 + n} bytes, file has "
                             f"{size})")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"{name}: {str(path)!r} is not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{name}: {str(path)!r} is not a safetensors file (header is not an object)")
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise ValueError(f"{name}: {str(path)!r} is corrupt (bad entry for tensor {key!r})") from None
    expected = 8 + n + end
    if size < expected:
        raise ValueError(f"{name}: {str(path)!r} is truncated (expected {expected} bytes, found {size})")
    if size > expected:
        raise ValueError(f"{name}: {str(path)!r} is corrupt ({size - expected} bytes after the last tensor)")
    return header, n


def read_safetensors(path, name: str = "weights") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors on CPU, metadata)`` of a safetensors file, after the checks of :func:`_sniff`."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    header, _ = _sniff(path, name)
    try:
        tensors = load(path.read_bytes())
    except (SafetensorError, ValueError, RuntimeError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{name}: {str(path)!r} is corrupt ({msg})") from None
    return tensors, dict(header.get("__metadata__") or {})


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tensors_for_file(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors sharing storage (tied weights, views)
    return {str(k): v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def serialise(tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.torch import save

    return save(dict(tensors), metadata=metadata)


# -- priors ------------------------------------------------------------------------------------------
def read_card(folder, name: str = "card") -> dict:
    """The validated card of a prior folder (one-line errors for a missing or invalid card)."""
    path = Path(folder) / CARD_FILE
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{name}: no checkpoint folder {str(folder)!r}")
    if not path.exists():
        raise FileNotFoundError(f"{name}: {str(path)!r} is missing")
    try:
        card = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{name}: {str(path)!r} is not valid JSON ({str(err).splitlines()[0]})") from None
    return validate_card(card, name)


def match_state(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], kind: str, where: str) -> None:
    """Refuse the first tensor name or shape that differs from ``model.state_dict()``."""
    own = model.state_dict()
    for key, ref in own.items():
        if key not in tensors:
            raise ValueError(f"weights: {where} lacks tensor {key!r} that the {kind!r} architecture "
                             f"of the card has ({len(own)} expected, {len(tensors)} found)")
        if tuple(tensors[key].shape) != tuple(ref.shape):
            raise ValueError(f"weights: tensor {key!r} in {where} has shape {tuple(tensors[key].shape)}, "
                             f"the {kind!r} architecture of the card expects {tuple(ref.shape)}")
    for key in tensors:
        if key not in own:
            raise ValueError(f"weights: {where} has tensor {key!r} that the {kind!r} architecture of the "
                             "card does not have")


def save_checkpoint(folder, model: torch.nn.Module | Mapping[str, torch.Tensor], card: Mapping, *,
                    check: bool = True) -> Path:
    """Write ``weights.safetensors`` then ``card.json`` (with the weights' sha256) into ``folder``.

    Arguments:
        folder: created if needed.
        model: a module (its ``state_dict()``) or a mapping name -> tensor.
        card: at least ``kind`` and ``architecture`` (taken from ``model.architecture`` if absent).
        check: rebuild the network from the card and refuse weights it would not load.

    Returns:
        the folder as a :class:`~pathlib.Path`.
    """
    folder = Path(folder)
    card = dict(card)
    if "architecture" not in card and hasattr(model, "architecture"):
        card["architecture"] = model.architecture
    card.pop("weights_sha256", None)
    card = validate_card(complete_card(card))
    state = model.state_dict() if isinstance(model, torch.nn.Module) else dict(model)
    tensors = _tensors_for_file(state)
    if check:
        match_state(build_network(card["kind"], card["architecture"]), tensors, card["kind"], "the model")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / WEIGHTS_FILE, serialise(tensors, {"format": card["format"]}))
    card["weights_sha256"] = _sha256(folder / WEIGHTS_FILE)
    write_json(folder / CARD_FILE, card)
    return folder


def load_checkpoint(folder, expected_kind: str | None = None, *, device=None,
                    dtype: torch.dtype | None = None) -> Checkpoint:
    """Rebuild the network of a prior folder and load its weights, refusing anything unsafe.

    Arguments:
        folder: a folder with ``weights.safetensors`` and ``card.json``.
        expected_kind: refuse a card of another kind (e.g. ``"cglow"``).
        device, dtype: where and in which floating dtype to put the network (default: CPU, the
            dtype stored in the file).

    Returns:
        :class:`Checkpoint` ``(model, card)``, the model in eval mode.
    """
    folder = Path(folder)
    card = read_card(folder)
    if expected_kind is not None and card["kind"] != expected_kind:
        raise ValueError(f"card: {str(folder)!r} holds a {card['kind']!r} network, "
                         f"expected {expected_kind!r}")
    wpath = folder / WEIGHTS_FILE
    tensors, _ = read_safetensors(wpath, "weights")
    digest = card.get("weights_sha256")
    if digest is not None and _sha256(wpath) != digest:
        raise ValueError(f"weights: {str(wpath)!r} does not match the sha256 recorded in its card "
                         "(file replaced or partly written)")
    model = build_network(card["kind"], card["architecture"])
    match_state(model, tensors, card["kind"], str(wpath))
    stored = {t.dtype for t in tensors.values() if t.is_floating_point()}
    if len(stored) == 1:
        # build in the stored precision so the copy into the parameters is exact
        model.to(dtype=stored.pop())
    model.load_state_dict(tensors, strict=True)
    model.eval()
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return Checkpoint(model, card)


