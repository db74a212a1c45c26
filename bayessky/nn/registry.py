"""Network kinds: ``kind`` string of a model card -> the class that rebuilds it, and how it trains.

A card stores ``kind`` and ``architecture`` (constructor keyword arguments); loading a checkpoint
calls ``build_network(kind, architecture)``. Classes are imported on first use, so a kind whose
network is not in this build fails with a clear message instead of at ``import bayessky``.

Built-in kinds (classes in :mod:`bayessky.nn`):

==========  ===============================  =========  ================
kind        class                            objective  context
==========  ===============================  =========  ================
glow        ``nn.glow.Glow``                 nll        no
cglow       ``nn.glow.ConditionalGlow``      nll        required
maf         ``nn.maf.MapMAF`` / ``nn.maf.MAF``  nll     optional
vae         ``nn.vae.VAE``                   elbo       no
gan         ``nn.gan.GAN``                   wgan-gp    no
==========  ===============================  =========  ================

:func:`register_network` adds a kind (e.g. your own flow with ``log_prob``/``sample``).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._validate import check_memory

__all__ = ["NetworkSpec", "NETWORKS", "build_network", "register_network", "network_spec", "accepts",
           "count_parameters", "check_parameters"]

OBJECTIVES = ("nll", "elbo", "wgan-gp")


@dataclass(frozen=True)
class NetworkSpec:
    """How to build and train one kind.

    Attributes:
        target: ``"module:Class"`` (imported lazily) or a class / factory ``f(**architecture)``;
            a tuple of targets is tried in order (the first that imports and fits the keys).
        objective: ``"nll"`` (flows), ``"elbo"`` (VAE, ``model.elbo(x)``) or ``"wgan-gp"`` (GAN).
        context: ``"none"``, ``"required"`` or ``"optional"`` (conditioning values allowed).
    """

    target: str | Callable | tuple
    objective: str = "nll"
    context: str = "none"


NETWORKS: dict[str, NetworkSpec] = {
    "glow": NetworkSpec("bayessky.nn.glow:Glow", "nll", "none"),
    "cglow": NetworkSpec("bayessky.nn.glow:ConditionalGlow", "nll", "required"),
    "maf": NetworkSpec(("bayessky.nn.maf:MapMAF", "bayessky.nn.maf:MAF"), "nll", "optional"),
    "vae": NetworkSpec("bayessky.nn.vae:VAE", "elbo", "none"),
    "gan": NetworkSpec("bayessky.nn.gan:GAN", "wgan-gp", "none"),
}


def network_spec(kind: str) -> NetworkSpec:
    """The :class:`NetworkSpec` of ``kind``, refusing unknown kinds with the list of known ones."""
    if kind not in NETWORKS:
        raise ValueError(f"kind: unknown network kind {kind!r} (known: {', '.join(NETWORKS)})")
    return NETWORKS[kind]


def register_network(kind: str, target: str | Callable, *, objective: str = "nll",
                     context: str = "none") -> NetworkSpec | None:
    """Add or replace ``kind``; returns the previous spec (None if new)."""
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind: expected a non-empty string, got {kind!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {OBJECTIVES}, got {objective!r}")
    if context not in ("none", "required", "optional"):
        raise ValueError(f"context: expected 'none', 'required' or 'optional', got {context!r}")
    previous = NETWORKS.get(kind)
    NETWORKS[kind] = NetworkSpec(target, objective, context)
    return previous


def _resolve(target, kind: str):
    if not isinstance(target, str):
        return target
    modname, _, attr = target.partition(":")
    try:
        mod = importlib.import_module(modname)
    except ModuleNotFoundError as err:
        if err.name and modname.startswith(err.name):
            raise ImportError(f"kind {kind!r}: network module {modname} is not available in this build") \
                from None
        raise
    if not hasattr(mod, attr):
        raise ImportError(f"kind {kind!r}: {modname} has no {attr} (not available in this build)")
    return getattr(mod, attr)


def accepts(factory: Callable, key: str) -> bool:
    """Whether ``factory`` takes keyword ``key`` (or ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True
    return key in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _fits(factory: Callable, architecture: dict) -> bool:
    """``architecture`` names every required argument of ``factory`` and nothing it refuses."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    required = [p.name for p in params if p.default is p.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return all(r in architecture for r in required) and all(accepts(factory, k) for k in architecture)


def network_class(kind: str, architecture: dict | None = None) -> Callable:
    """The class (or factory) that builds ``kind`` (for a tuple target, the first matching one)."""
    target = network_spec(kind).target
    targets = target if isinstance(target, tuple) else (target,)
    errors = []
    for t in targets:
        try:
            cls = _resolve(t, kind)
        except ImportError as err:
            errors.append(str(err))
            continue
        if architecture is None or len(targets) == 1 or _fits(cls, architecture):
            return cls
    if errors:
        raise ImportError(errors[0])
    return _resolve(targets[0], kind)


def count_parameters(cls, architecture: dict) -> int | None:
    """The number of parameters (and buffers) ``cls(**architecture)`` would hold, found by building
    it on torch's ``meta`` device, which allocates nothing; None when the class cannot be built
    there (an initialisation that computes on its tensors)."""
    try:
        with torch.device("meta"):
            net = cls(**architecture)
    except TypeError:
        raise
    except Exception:  # noqa: BLE001 -- no estimate; the real build then reports its own error
        return None
    if not isinstance(net, torch.nn.Module):
        return None
    return sum(t.numel() for t in net.parameters()) + sum(t.numel() for t in net.buffers())


def check_parameters(cls, architecture: dict, budget: int | None = None) -> int | None:
    """Refuse an architecture whose network would not fit in memory before building it (a card
    asking for hidden=200000 is 160 GB of weights, which torch would try to allocate)."""
    n = count_parameters(cls, architecture)
    if n is not None:
        # float32 weights, their gradients and two Adam moments: what training holds
        try:
            check_memory(16 * n, "architecture", budget)
        except ValueError as err:
            raise ValueError(f"architecture: {n:.3g} parameters {str(err).partition(': ')[2]}") from None
    return n


def build_network(kind: str, architecture: dict) -> torch.nn.Module:
    """Instantiate the network of ``kind`` from its card ``architecture`` (constructor kwargs).

    Example:
        >>> net = build_network("gan", {"shape": [1, 16, 16], "latent_dim": 8, "width": 4})
        >>> type(net).__name__
        'GAN'
    """
    if not isinstance(architecture, dict):
        raise ValueError(f"architecture: expected a dict of constructor arguments, got "
                         f"{type(architecture).__name__}")
    cls = network_class(kind, architecture)
    name = getattr(cls, "__name__", repr(cls))
    try:
        check_parameters(cls, architecture)
        net = cls(**architecture)
    except TypeError as err:
        raise ValueError(f"architecture: {name}(...) refused the card's arguments "
                         f"({str(err).splitlines()[0]})") from None
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"kind {kind!r}: {name} built a {type(net).__name__}, not a torch.nn.Module")
    return net
