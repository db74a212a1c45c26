"""Trained priors on disk -> Pyro-ready objects: ``load_prior`` and ``save_prior``.

A prior is a folder ``weights.safetensors`` + ``card.json`` (format ``bayessky-prior-v1``; see
:mod:`bayessky.priors.checkpoint`). Loading reads JSON and safetensors only (nothing is
unpickled), rebuilds the network from the card's ``kind`` and ``architecture`` through
:func:`bayessky.nn.registry.build_network`, loads the weights strictly, freezes the network
(``eval()``, no parameter gradients: inference moves maps, latents and contexts, not weights)
and wraps it:

- ``kind`` glow / cglow / maf -> :class:`FlowPrior` (``.distribution(context)`` is a
  :class:`~bayessky.distributions.flow.FlowDistribution` with an exact density);
- ``kind`` vae / gan -> :class:`LatentVariablePrior` (``.sample(name)`` inside a Pyro model).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from .._validate import as_count, as_tensor, check_device, check_memory, device_dtype
from ..distributions.flow import FlowDistribution, as_transform, check_temperature, net_context
from ..distributions.latent import LatentPrior
from ..distributions.transforms import transform_to_config
from .checkpoint import CARD_FILE, load_checkpoint, read_card, save_checkpoint

__all__ = ["FlowPrior", "LatentVariablePrior", "load_prior", "save_prior", "resolve_prior", "list_priors",
           "shipped_folder", "FLOW_KINDS", "LATENT_KINDS"]

FLOW_KINDS = ("glow", "cglow", "maf")
LATENT_KINDS = ("vae", "gan")


def _context_info(card: Mapping | None, net) -> tuple[list[str] | None, list | None, list | None]:
    dim, low, high = net_context(net)
    ctx = (card or {}).get("context") or {}
    names = ctx.get("names")
    # the card's bounds are the declared ones; a network's buffers may hold them rounded to float32
    low = ctx.get("low") or low
    high = ctx.get("high") or high
    if names is None and dim:
        names = [f"c{i}" for i in range(dim)]
    return (list(names) if names is not None else None,
            None if low is None else [float(v) for v in low],
            None if high is None else [float(v) for v in high])


def _context_tensor(context, names: list[str] | None, device, dtype):
    """A context given as a tensor/array (..., d), a sequence of values, or a dict by name."""
    if context is None:
        return None
    if isinstance(context, Mapping):
        if names is None:
            raise ValueError("context: this prior is unconditional, got a dict")
        missing = [n for n in names if n not in context]
        extra = [k for k in context if k not in names]
        if missing or extra:
            raise ValueError(f"context: expected keys {names}, missing {missing}, unexpected {extra}")
        vals = [as_tensor(context[n], f"context[{n!r}]") for n in names]
        vals = torch.broadcast_tensors(*vals)
        return torch.stack(vals, dim=-1)
    if isinstance(context, torch.Tensor):
        return context
    if isinstance(context, Sequence) and any(isinstance(v, torch.Tensor) for v in context):
        # keep autograd links of scalar tensors (e.g. pyro.sample sites) when stacking
        vals = torch.broadcast_tensors(*[as_tensor(v, "context") for v in context])
        return torch.stack(vals, dim=-1)
    return as_tensor(context, "context", dtype=dtype, device=device)


def _check_dtype(dtype) -> torch.dtype | None:
    """None or a floating torch dtype (network weights cannot be integers; strings are refused)."""
    if dtype is None:
        return None
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating torch dtype such as torch.float32, got {dtype!r}")
    return dtype


def _check_n(n) -> int:
    """A count of maps >= 1: 2.7 would silently give 2 maps, 0 and -1 fail deep in the network."""
    n = as_count(n, "n")
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    return n


class _PriorBase:
    """Shared bookkeeping: the card, the kind, context names and bounds, device moves."""

    net: torch.nn.Module
    card: dict

    @property
    def kind(self) -> str | None:
        return self.card.get("kind")

    @property
    def context_names(self) -> list[str] | None:
        """Names of the conditioning values, in the order the network expects (None: unconditional)."""
        return self._names

    @property
    def context_bounds(self) -> dict[str, tuple[float, float]] | None:
        """``{name: (low, high)}``, the training range of each conditioning value."""
        if self._names is None or self._low is None or self._high is None:
            return None
        return {n: (lo, hi) for n, lo, hi in zip(self._names, self._low, self._high)}

    @property
    def device(self) -> torch.device:
        return device_dtype(self.net)[0]

    #: bytes per map pixel counted for one drawn map (the base draw, the network's activations and
    #: the transformed maps, float32): the process grew by about 50 per pixel drawing 512 maps of
    #: hi-cglow-32; a rough figure, enough to refuse absurd counts before torch allocates
    GENERATE_BYTES_PER_PIXEL = 64

    def check_generate(self, n) -> int:
        """``n`` maps checked against the memory they need before any is drawn: torch's allocator
        fails on 10**8 maps with a message naming no argument, or the machine swaps."""
        n = _check_n(n)
        arch = (self.card.get("architecture") or {}) if isinstance(self.card, Mapping) else {}
        shape = arch.get("shape")
        if isinstance(shape, (list, tuple)) and shape and all(isinstance(s, int) for s in shape):
            check_memory(self.GENERATE_BYTES_PER_PIXEL * n * math.prod(shape), "n")
        return n

    @property
    def dtype(self) -> torch.dtype:
        return device_dtype(self.net)[1]

    def to(self, device=None, dtype=None):
        """Move the network to ``device`` and/or ``dtype`` (floating); returns self."""
        self.net.to(device=check_device(device), dtype=_check_dtype(dtype))
        return self

    def _context(self, context):
        device, dtype = device_dtype(self.net)
        return _context_tensor(context, self._names, device, dtype)


class FlowPrior(_PriorBase):
    """A flow prior (Glow, conditional Glow, MAF) with its data transform and model card.

    Arguments:
        net: the flow network (``log_prob``, ``sample``, ``architecture``).
        card: the model card (dict); ``card["transform"]`` is the data transform if
            ``transform`` is not given; ``card["context"]`` names the conditioning values.
        transform: data transform (physical -> network space), overriding the card's.

    Example:
        >>> prior = load_prior("hi-cglow-32")                       # doctest: +SKIP
        >>> d = prior.distribution({"Omega_m": 0.3, "sigma_8": 0.8})  # doctest: +SKIP
        >>> d.log_prob(maps)                                          # doctest: +SKIP
    """

    def __init__(self, net: torch.nn.Module, card: Mapping | None = None, transform=None):
        self.net = net
        self.card = dict(card or {})
        self.transform = as_transform(transform if transform is not None else self.card.get("transform"))
        self._names, self._low, self._high = _context_info(self.card, net)

    def distribution(self, context=None, *, temperature: float = 1.0,
                     validate_args: bool | None = None) -> FlowDistribution:
        """The prior (or likelihood, for a conditional flow) as a Pyro distribution over maps.

        ``context``: None, a tensor (..., d) in physical units, a sequence of d values/tensors,
        or a dict ``{name: value}`` (broadcast together); leading dims become the batch shape.
        """
        return FlowDistribution(self.net, self._context(context), self.transform, temperature=temperature,
                                context_names=self._names, validate_args=validate_args)

    def sample(self, name: str, context=None, *, obs=None) -> torch.Tensor:
        """``pyro.sample(name, self.distribution(context), obs=obs)``: the map as a Pyro site
        (or, with ``obs``, a flow likelihood of observed maps given the context)."""
        import pyro

        return pyro.sample(name, self.distribution(context), obs=obs)

    def log_prob(self, x, context=None) -> torch.Tensor:
        """``distribution(context).log_prob(x)``."""
        return self.distribution(context).log_prob(x)

    @torch.no_grad()
    def generate(self, n: int, context=None, temperature: float = 1.0) -> torch.Tensor:
        """``n`` maps in user units, shape (n, *batch, *event)."""
        return self.distribution(context, temperature=temperature).sample((self.check_generate(n),))

    def __repr__(self) -> str:
        return f"FlowPrior(kind={self.kind!r}, context={self._names})"


class LatentVariablePrior(LatentPrior, _PriorBase):
    """A VAE decoder or GAN generator prior with its transform and card.

    ``prior.sample(name)`` inside a Pyro model draws ``name + "_latent"`` and returns the decoded
    map (deterministic site ``name``); ``prior.decode(z)`` maps latents to user-unit maps.

    Arguments:
        net: a :class:`bayessky.nn.vae.VAE` or :class:`bayessky.nn.gan.GAN` (or a bare generator).
        card: the model card.
        transform: data transform overriding the card's.
        noise: see :class:`~bayessky.distributions.latent.LatentPrior`.
    """

    def __init__(self, net: torch.nn.Module, card: Mapping | None = None, transform=None,
                 noise: bool | float = False):
        self.net = net
        self.card = dict(card or {})
        decoder = getattr(net, "generator", net)  # GAN -> its generator; VAE.forward is decode
        latent_flow = getattr(net, "latent_flow", None)
        super().__init__(decoder, int(net.latent_dim), latent_flow=latent_flow,
                         transform=transform if transform is not None else self.card.get("transform"),
                         noise=noise)
        if latent_flow is not None:
            self._names, self._low, self._high = _context_info(self.card, latent_flow)
        else:
            self._names = self._low = self._high = None

    def sample(self, name: str, context=None) -> torch.Tensor:
        return super().sample(name, self._context(context))

    def to(self, device=None, dtype=None):
        """Move the whole network (decoder, latent flow, critic/encoder) to ``device``/``dtype``."""
        self.net.to(device=check_device(device), dtype=_check_dtype(dtype))
        return self

    @torch.no_grad()
    def generate(self, n: int, context=None, temperature: float = 1.0) -> torch.Tensor:
        """``n`` maps in user units from the prior: z ~ p(z) (scaled by ``temperature``), x = decode(z)."""
        n = self.check_generate(n)
        temperature = check_temperature(temperature)
        c = self._context(context)
        if self.latent_flow is not None:
            z = FlowDistribution(self.latent_flow, c, temperature=temperature).sample((n,))
        else:
            device, dtype = device_dtype(self.decoder)
            z = temperature * torch.randn(n, self.latent_dim, dtype=dtype, device=device)
        return self.decode(z)

    def __repr__(self) -> str:
        return f"LatentVariablePrior(kind={self.kind!r}, latent_dim={self.latent_dim})"


# -- finding, loading and saving -------------------------------------------------------------------
def shipped_folder() -> Path:
    """The folder of the shipped priors (package data; the top-level ``models/`` of a checkout
    installed in editable mode)."""
    import importlib.util

    spec = importlib.util.find_spec("bayessky.priors.shipped")
    return Path(next(iter(spec.submodule_search_locations)))


def _search_roots() -> list[Path]:
    env = os.environ.get("BAYESSKY_MODELS")
    roots = [Path(p).expanduser() for p in env.split(os.pathsep) if p] if env else []
    return roots + [shipped_folder()]


def resolve_prior(name_or_path: str | os.PathLike) -> Path:
    """The folder of a prior: an existing path, else ``<root>/<name>`` for the search roots
    ``$BAYESSKY_MODELS`` (``os.pathsep``-separated) and the shipped priors, in that order."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path: expected a prior name or a folder path, got "
                        f"{type(name_or_path).__name__} {name_or_path!r}")
    # Path('') is '.', which would load the current folder and blame a missing card.json
    if not os.fspath(name_or_path).strip():
        raise ValueError("name_or_path: is empty; give a prior name (e.g. 'hi-cglow-32') or a folder")
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    if p.exists():
        raise ValueError(f"prior: {str(p)!r} is a file; expected a folder with weights.safetensors "
                         "+ card.json")
    name = str(name_or_path)
    tried = []
    if len(p.parts) == 1:
        for root in _search_roots():
            cand = root / name
            if cand.is_dir():
                return cand
            tried.append(str(root))
    where = f" (searched {', '.join(dict.fromkeys(tried))})" if tried else ""
    raise FileNotFoundError(f"prior: no prior named or at {name!r}{where}")


def list_priors() -> list[dict]:
    """One record per prior found by name (``$BAYESSKY_MODELS`` first, then the shipped ones):
    ``name``, ``kind``, ``shape``, ``context`` (names or None), ``metric`` (the card's held-out
    metric and value, or None), ``folder``. A folder whose card does not validate is listed with
    its ``error`` instead. Reads the cards only (no weights)."""
    records, seen = [], set()
    for root in _search_roots():
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if (p / CARD_FILE).is_file()):
            if folder.name in seen:  # an earlier root shadows it, as in resolve_prior
                continue
            seen.add(folder.name)
            try:
                card = read_card(folder)
            except (OSError, ValueError) as err:
                records.append({"name": folder.name, "folder": str(folder), "error": str(err)})
                continue
            arch = card.get("architecture") or {}
            shape = arch.get("shape") or ([arch[k] for k in ("features", "dim") if k in arch][:1] or None)
            metrics = card.get("metrics") or {}
            key = next((k for k in ("test_nll_gap_nats", "test_nll_gap_nats_per_map", "test_nll_per_map",
                                    "val_nll_per_map") if metrics.get(k) is not None), None)
            records.append({
                "name": folder.name, "kind": card.get("kind"), "shape": shape,
                "context": (card.get("context") or {}).get("names"),
                "metric": None if key is None else {key: metrics[key]}, "folder": str(folder),
            })
    return records


def _read(folder: Path, expected_kind: str | None = None) -> tuple[torch.nn.Module, dict]:
    """(network with weights loaded in the stored dtype, card), checked by the checkpoint module."""
    ckpt = load_checkpoint(folder, expected_kind=expected_kind)
    return ckpt.model, dict(ckpt.card)


def load_prior(name_or_path: str | os.PathLike, device=None, dtype: torch.dtype | None = None,
               *, noise: bool | float = False) -> FlowPrior | LatentVariablePrior:
    """Load a prior by name (``$BAYESSKY_MODELS/<name>``, then the shipped ``<name>``) or folder path.

    Arguments:
        name_or_path: a shipped prior's name or a folder with ``weights.safetensors`` + ``card.json``.
        device: where to put the network (default: CPU).
        dtype: floating dtype of the network (default: the stored weights' dtype).
        noise: for VAE priors, whether ``.sample`` adds the decoder's pixel noise.

    Returns:
        A :class:`FlowPrior` (kinds glow, cglow, maf) or a :class:`LatentVariablePrior` (vae, gan),
        frozen and in eval mode.
    """
    # checked before the (slow) read so a typo fails at once, with torch's errors turned into ours
    device = check_device(device)
    dtype = _check_dtype(dtype)
    folder = resolve_prior(name_or_path)
    # load_checkpoint builds the network in the stored dtype (a float64 prior stays float64)
    net, card = _read(folder)
    net.eval()
    net.requires_grad_(False)
    if device is not None or dtype is not None:
        net.to(device=device, dtype=dtype)
    kind = card.get("kind")
    if kind in FLOW_KINDS:
        return FlowPrior(net, card)
    if kind in LATENT_KINDS:
        return LatentVariablePrior(net, card, noise=noise)
    raise ValueError(f"prior: unknown kind {kind!r} in {str(folder / 'card.json')!r} "
                     f"(known: {', '.join(FLOW_KINDS + LATENT_KINDS)})")


_KIND_OF_CLASS = {"Glow": "glow", "ConditionalGlow": "cglow", "MAF": "maf", "MapMAF": "maf",
                  "VAE": "vae", "GAN": "gan"}


def save_prior(prior_or_net, folder: str | os.PathLike, card_extras: Mapping | None = None, *,
               kind: str | None = None, transform=None, context_names: Sequence[str] | None = None) -> Path:
    """Write a prior folder (weights.safetensors + card.json) that :func:`load_prior` reads back.

    Arguments:
        prior_or_net: a :class:`FlowPrior` / :class:`LatentVariablePrior`, or a bare network
            (Glow, ConditionalGlow, MAF, MapMAF, VAE, GAN) with an ``architecture``.
        folder: output folder (created; written atomically by the checkpoint module).
        card_extras: extra card fields (``data``, ``training``, ``metrics``, ...).
        kind: the registry kind; inferred from the network class when None.
        transform: data transform (physical -> network), overriding the prior's.
        context_names: names of the conditioning values (default: the prior's, or c0, c1, ...).
    """

    if isinstance(prior_or_net, _PriorBase):
        net = prior_or_net.net
        card = dict(prior_or_net.card)
        transform = transform if transform is not None else prior_or_net.transform
        context_names = context_names or prior_or_net.context_names
    else:
        net, card = prior_or_net, {}
    if not isinstance(net, torch.nn.Module) or not hasattr(net, "architecture"):
        raise TypeError(f"prior_or_net: expected a prior or a bayessky network, got {type(net).__name__}")
    kind = kind or card.get("kind") or _KIND_OF_CLASS.get(type(net).__name__)
    if kind not in FLOW_KINDS + LATENT_KINDS:
        raise ValueError(f"kind: cannot tell the kind of {type(net).__name__}; pass kind= "
                         f"({', '.join(FLOW_KINDS + LATENT_KINDS)})")
    transform = as_transform(transform)
    card["kind"] = kind
    card["architecture"] = net.architecture
    card["transform"] = transform_to_config(transform) if transform is not None else []
    flow = getattr(net, "latent_flow", None) if kind in LATENT_KINDS else net
    dim, low, high = net_context(flow) if flow is not None else (0, None, None)
    extras = dict(card_extras or {})
    if dim and "context" not in extras:
        names = list(context_names) if context_names else (card.get("context") or {}).get("names")
        names = names or [f"c{i}" for i in range(dim)]
        if len(names) != dim:
            raise ValueError(f"context_names: expected {dim} names, got {names}")
        declared = card.get("context") or {}
        low, high = declared.get("low") or low, declared.get("high") or high
        if low is None or high is None:
            raise ValueError("context: the network records no training range; pass "
                             "card_extras={'context': {'names': [...], 'low': [...], 'high': [...]}}")
        card["context"] = {"names": names, "low": low, "high": high}
    elif not dim:
        card["context"] = None
    card.update(extras)
    return save_checkpoint(folder, net, card)
