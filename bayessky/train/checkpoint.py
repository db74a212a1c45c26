"""Training states for ``resume``: nested Python objects with tensors, in ONE safetensors file.

Every tensor (model, best model, optimizer moments, RNG states) is stored under a path-like
name, and everything else (epoch, history, scheduler fields, optimizer hyper-parameters) as JSON
in the safetensors metadata entry ``"bayessky"``. One file means one ``os.replace``: a run killed
at any moment leaves either the previous state or the new one, never a mixture. Nothing is
unpickled; the file is checked by :func:`bayessky.priors.checkpoint.read_safetensors` first.
Prior folders (weights + card) are written and read by :mod:`bayessky.priors.checkpoint`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write
from ..priors.checkpoint import read_safetensors, serialise

__all__ = ["save_state", "load_state"]

STATE_KEY = "bayessky"


def _encode(obj, tensors: dict, path: str):
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": path}
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        # safetensors/torch lack some numpy dtypes (uint32 of numpy's RNG): store widened
        t = torch.from_numpy(arr.astype(np.int64) if arr.dtype.kind in "ui" else arr.copy())
        tensors[path] = t
        return {"__ndarray__": path, "dtype": arr.dtype.str}
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        obj = float(obj)
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, tensors, f"{path}/{k}") for k, v in obj.items()}
        return {"__items__": [[_encode(k, tensors, f"{path}/k{i}"), _encode(v, tensors, f"{path}/{i}")]
                              for i, (k, v) in enumerate(obj.items())]}
    raise TypeError(f"state: cannot store a {type(obj).__name__} at {path!r} without pickle")


def _decode(obj, tensors: Mapping[str, torch.Tensor]):
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return tensors[obj["__ndarray__"]].numpy().astype(np.dtype(obj["dtype"]))
    if "__float__" in obj:
        return float(obj["__float__"])
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def save_state(path, tree: Mapping) -> Path:
    """Store a nested dict of tensors, arrays, numbers, strings, lists, tuples in one safetensors file.

    Tensors go to the tensor section under their path (``"optimizer/state/0/exp_avg"``); the
    rest is JSON in the metadata. Written atomically.
    """
    tensors: dict[str, torch.Tensor] = {}
    meta = _encode(dict(tree), tensors, "")
    blob = json.dumps(meta, allow_nan=False)
    return atomic_write(path, serialise(tensors, {STATE_KEY: blob}))


def load_state(path, name: str = "state") -> dict:
    """Inverse of :func:`save_state` (tensors come back on CPU); never unpickles."""
    tensors, meta = read_safetensors(path, name)
    if STATE_KEY not in meta:
        raise ValueError(f"{name}: {str(path)!r} is a safetensors file but not a bayessky training state")
    try:
        tree = json.loads(meta[STATE_KEY])
    except ValueError:
        raise ValueError(f"{name}: {str(path)!r} has a corrupt state record") from None
    try:
        return _decode(tree, tensors)
    except KeyError as err:
        raise ValueError(f"{name}: {str(path)!r} refers to a missing tensor {err.args[0]!r}") from None
