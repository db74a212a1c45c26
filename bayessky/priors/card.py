"""Model cards: the JSON that travels with every trained prior (schema ``bayessky-prior-v1``).

The schema is documented in :mod:`bayessky.priors.checkpoint`. Only ``kind`` and
``architecture`` must be supplied; :func:`complete_card` fills the rest with defaults.
Non-finite metric values are stored as ``null`` so the file stays strict JSON.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Mapping

__all__ = ["CARD_FORMAT", "make_card", "complete_card", "validate_card"]

CARD_FORMAT = "bayessky-prior-v1"
_DICT_FIELDS = ("data", "training", "metrics")


def _version() -> str:
    from .. import __version__

    return __version__


def _clean(obj):
    """JSON-safe copy: tuples -> lists, numpy/torch scalars -> Python, non-finite floats -> None."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy / torch values
        return _clean(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    raise TypeError(f"card: value of type {type(obj).__name__} is not JSON-able ({obj!r:.60})")


def complete_card(card: Mapping) -> dict:
    """A copy of ``card`` with the defaults of the schema filled in and values made JSON-safe."""
    out = _clean(dict(card))
    out.setdefault("format", CARD_FORMAT)
    out.setdefault("transform", [])
    out.setdefault("context", None)
    for key in _DICT_FIELDS:
        if out.get(key) is None:
            out[key] = {}
    out.setdefault("date", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    out.setdefault("bayessky_version", _version())
    return out


def make_card(kind: str, architecture: Mapping, *, transform=None, context: Mapping | None = None,
              data: Mapping | None = None, training: Mapping | None = None,
              metrics: Mapping | None = None, **extra) -> dict:
    """Build and validate a complete card; ``transform`` may be a Transform or a config list."""
    if transform is not None and not isinstance(transform, (list, tuple)):
        from ..distributions.transforms import transform_to_config

        transform = transform_to_config(transform)
    card = {"kind": kind, "architecture": dict(architecture), "transform": list(transform or []),
            "context": None if context is None else dict(context), "data": dict(data or {}),
            "training": dict(training or {}), "metrics": dict(metrics or {}), **extra}
    return validate_card(complete_card(card))


def validate_card(card, name: str = "card") -> dict:
    """Check a card against the schema; one-line ``ValueError`` naming the first bad field."""
    from ..nn.registry import NETWORKS

    if not isinstance(card, Mapping):
        raise ValueError(f"{name}: expected a JSON object, got {type(card).__name__}")
    if card.get("format") != CARD_FORMAT:
        raise ValueError(f"{name}: format must be {CARD_FORMAT!r}, got {card.get('format')!r}")
    kind = card.get("kind")
    if kind not in NETWORKS:
        raise ValueError(f"{name}: kind {kind!r} is not a known network kind ({', '.join(NETWORKS)})")
    if not isinstance(card.get("architecture"), Mapping):
        raise ValueError(f"{name}: architecture must be an object of constructor arguments, "
                         f"got {card.get('architecture')!r:.60}")
    transform = card.get("transform", [])
    if not isinstance(transform, list):
        raise ValueError(f"{name}: transform must be a list of transform configs, got {transform!r:.60}")
    from ..distributions.transforms import transform_from_config

    try:
        transform_from_config(transform)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    ctx = card.get("context")
    if ctx is not None:
        lists = isinstance(ctx, Mapping) and all(isinstance(ctx.get(k), list) for k in ("names", "low",
                                                                                          "high"))
        if not lists:
            raise ValueError(f"{name}: context must be null or an object with lists names, low, high")
        n = len(ctx["names"])
        if len(ctx["low"]) != n or len(ctx["high"]) != n:
            raise ValueError(f"{name}: context names, low and high must have the same length, got "
                             f"{n}, {len(ctx['low'])}, {len(ctx['high'])}")
        for nm, lo, hi in zip(ctx["names"], ctx["low"], ctx["high"]):
            if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo <= hi):
                raise ValueError(f"{name}: context range of {nm!r} must be numbers low <= high, got "
                                 f"[{lo!r}, {hi!r}]")
    for key in _DICT_FIELDS:
        if key in card and not isinstance(card[key], Mapping):
            raise ValueError(f"{name}: {key} must be an object, got {type(card[key]).__name__}")
    if "date" in card and not isinstance(card["date"], str):
        raise ValueError(f"{name}: date must be an ISO 8601 string, got {card['date']!r}")
    try:
        json.dumps(card, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: not strict JSON ({err})") from None
    return dict(card)
