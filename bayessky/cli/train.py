"""``bayessky train KIND --data FILE --out DIR``: train a prior (glow, cglow, maf, vae, gan).

Data:

- CAMELS: ``--data Maps_HI_..._z=0.00.npy --params params_LH_....txt`` (or HIGlow's
  ``Images_...npy`` + ``CAMELs_params.csv``): maps_per_sim maps per parameter row (15, inferred
  from the row count), cut or downsampled to ``--size``.
- plain maps: ``.npy``/``.npz``/FITS stack ``(n, H, W)``; conditioning values from ``--params``
  (one row per map, ``.txt``/``.npy``) or, in an ``.npz``, from a ``params`` array or per-map
  arrays such as ``omega_m`` and ``sigma_8`` (what ``bayessky simulate hi-toy`` writes).

Preprocessing (HIGlow's): ``--transform log10,standardise`` (default ``auto``: log10 when every
pixel is positive, then standardise), the standardisation fitted on the training split only and
stored in the card. The split keeps whole simulations together (``--val-fraction``,
``--test-fraction``). Conditional kinds (cglow, maf with parameters) receive the conditioning
values in physical units; their training range is stored in the card.

Outputs in ``--out``: ``weights.safetensors`` + ``card.json`` (load with
``bayessky.load_prior(DIR)``), ``history.json``, and ``state.safetensors`` for ``--resume``.

Several processes or GPUs: ``torchrun --nproc_per_node N $(which bayessky) train ...`` (or
``--nproc N``, which starts that for you on this machine) trains with DistributedDataParallel;
``--batch-size`` is the global batch (divisible by N), each process takes its slice of every
batch, and rank 0 alone writes the output folder (:mod:`bayessky.train.distributed`).
"""

from __future__ import annotations

import argparse
import math
import shlex
import subprocess
import sys

import numpy as np
import torch

from . import CLIError, parse_device
from ._write import check_out_dir

__all__ = ["add_parser", "run"]

_AUTO = "auto"


def _kinds() -> list[str]:
    from ..nn.registry import NETWORKS

    return list(NETWORKS)


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a prior (glow, cglow, maf, vae, gan) on maps",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", help=f"network kind: {', '.join(_kinds())}")
    p.add_argument("--data", required=True, help="maps: CAMELS .npy, or .npy/.npz/FITS stack")
    p.add_argument("--params", help="parameter table (CAMELS .txt / HIGlow .csv, or one row per map)")
    p.add_argument("--key", help="array name of the maps inside an .npz")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--context", help="comma-separated parameter names to condition on "
                   "(default: Omega_m,sigma_8 / omega_m,sigma_8 when present, else all)")
    p.add_argument("--context-range", help="training range per context value, 'lo:hi,lo:hi' "
                   "(default: the CAMELS LH box for CAMELS names, else the data's min/max)")
    p.add_argument("--maps-per-sim", type=int, help="maps per parameter row (default: inferred)")
    p.add_argument("--size", type=int, help="model map size in pixels (default: the data's)")
    p.add_argument("--resize", choices=("cut", "downsample"), default="cut",
                   help="how to reach --size: cut tiles (default) or block-mean downsampling")
    p.add_argument("--transform", default=_AUTO, help="comma list of log10, signed_log, standardise, "
                   "or none (default auto: log10 if all pixels > 0, then standardise)")
    p.add_argument("--signed-log-sigma", type=float, default=1.0, help="sigma of signed_log (map units)")
    g = p.add_argument_group("network (defaults: the class's own; where it has none, Glow/cglow "
                             "use levels up to 4 fitted to the map size, steps 4, hidden 48)")
    g.add_argument("--levels", type=int, help="Glow squeeze levels")
    g.add_argument("--steps", type=int, help="flow steps per level (Glow) / MADE transforms (MAF)")
    g.add_argument("--hidden", type=int, help="hidden width (Glow coupling CNN, MAF layers)")
    g.add_argument("--latent-dim", type=int, help="latent dimension (VAE, GAN)")
    g.add_argument("--width", type=int, help="GAN generator/critic width")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=100)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--lr", type=float, help="Adam learning rate (default 3e-4; GAN 1e-4)")
    g.add_argument("--val-fraction", type=float, default=0.1, help="simulations held out for validation")
    g.add_argument("--test-fraction", type=float, default=0.1, help="simulations held out for testing")
    g.add_argument("--early-stopping", type=int, help="stop after N epochs without validation gain")
    g.add_argument("--augment", default=_AUTO, help="comma list of flips, rot90, shifts, or none "
                   "(default auto: all three, without shifts for cut tiles, which are not periodic)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default=_AUTO, help="cpu, cuda[:i] or auto (cuda when available)")
    g.add_argument("--resume", action="store_true", help="continue from DIR/state.safetensors")
    g.add_argument("--nproc", type=int, help="train with N processes on this machine (re-runs the "
                   "command under torchrun; --batch-size is then the global batch)")
    g.add_argument("--compile", action="store_true", help="train through torch.compile (1.26x for the "
                   "HIGlow-size Glow on a CPU, after minutes of compilation; one process only)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# -- data ---------------------------------------------------------------------------------------------
_FLAGS = {"maps": "--data", "params": "--params", "size": "--size", "mode": "--resize", "data": "--data",
          "maps_per_sim": "--maps-per-sim"}


def _load(args):
    """:func:`bayessky.data.load_training_data` with its argument names turned into flags."""
    from ..data.camels import load_training_data

    try:
        return load_training_data(args.data, args.params, key=args.key, size=args.size, mode=args.resize,
                                  maps_per_sim=args.maps_per_sim)
    except (ValueError, FileNotFoundError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        head, sep, rest = msg.partition(": ")
        raise CLIError(f"{_FLAGS[head]}: {rest}" if sep and head in _FLAGS else msg) from None


def _context_columns(args, names: list[str] | None, params, spec) -> tuple[list[int], list[str]]:
    if spec.context == "none" or params is None:
        if spec.context == "required":
            raise CLIError(f"{args.kind}: a conditional network needs parameters (--params, or params / "
                           "per-map arrays in the .npz)")
        if args.context:
            raise CLIError(f"--context: {args.kind} is unconditional" if spec.context == "none" else
                           "--context: no parameters to condition on")
        return [], []
    if args.context:
        wanted = [s.strip() for s in args.context.split(",") if s.strip()]
    else:
        lower = [n.lower() for n in names]
        wanted = [names[lower.index(n)] for n in ("omega_m", "sigma_8") if n in lower]
        if len(wanted) != 2:
            wanted = list(names)
    missing = [w for w in wanted if w not in names]
    if missing:
        raise CLIError(f"--context: unknown parameter(s) {missing} (available: {', '.join(names)})")
    return [names.index(w) for w in wanted], wanted


def _context_range(args, names: list[str], values: np.ndarray) -> tuple[list[float], list[float]]:
    from ..data.camels import CAMELS_LH_RANGES

    if args.context_range:
        parts = [s for s in args.context_range.split(",") if s.strip()]
        if len(parts) != len(names):
            raise CLIError(f"--context-range: expected {len(names)} 'lo:hi' pairs for {names}, got "
                           f"{args.context_range!r}")
        try:
            pairs = [tuple(float(v) for v in s.split(":")) for s in parts]
        except ValueError:
            raise CLIError(f"--context-range: expected numbers 'lo:hi', got {args.context_range!r}") from None
        if any(len(p) != 2 or not p[0] < p[1] for p in pairs):
            raise CLIError(f"--context-range: each entry must be 'lo:hi' with lo < hi, "
                           f"got {args.context_range!r}")
        lo, hi = [p[0] for p in pairs], [p[1] for p in pairs]
        if (values.min(0) < np.array(lo)).any() or (values.max(0) > np.array(hi)).any():
            raise CLIError("--context-range: the data's parameters fall outside the given range")
        return lo, hi
    low, high = [], []
    for j, n in enumerate(names):
        box = {k.lower(): v for k, v in CAMELS_LH_RANGES.items()}.get(n.lower())
        col = values[:, j]
        if box is not None and col.min() >= box[0] and col.max() <= box[1]:
            lo, hi = box
        else:
            lo, hi = float(col.min()), float(col.max())
            if lo == hi:
                raise CLIError(f"--context: parameter {n!r} is constant ({lo}); nothing to condition on")
        low.append(float(lo))
        high.append(float(hi))
    return low, high


def _transform(args, train_maps: np.ndarray):
    from ..distributions.transforms import (
        Log10Transform,
        SignedLogTransform,
        StandardiseTransform,
        compose,
        parse_transform_names,
    )

    if args.transform == _AUTO:
        names = (["log10"] if float(train_maps.min()) > 0 else []) + ["standardise"]
    else:
        try:
            names = parse_transform_names(args.transform)
        except ValueError as err:
            raise CLIError(f"--transform: {err}") from None
    parts = []
    current = torch.as_tensor(train_maps, dtype=torch.float64)
    for name in names:
        if name == "log10":
            if float(current.min()) <= 0:
                n_bad = int((current <= 0).sum())
                raise CLIError(f"--transform: log10 needs positive maps; {n_bad} training pixels are <= 0 "
                               f"(min {float(current.min()):.6g})")
            t = Log10Transform()
        elif name == "signed_log":
            t = SignedLogTransform(args.signed_log_sigma)
        else:
            t = StandardiseTransform.fit(current)
        parts.append(t)
        current = t(current)
    return compose(*parts), names


def _apply(transform, maps: np.ndarray) -> torch.Tensor:
    out = torch.empty(maps.shape, dtype=torch.float32)
    for i in range(0, maps.shape[0], 1024):
        block = torch.from_numpy(np.array(maps[i:i + 1024], dtype=np.float64))  # copy: memmaps are read-only
        out[i:i + 1024] = transform(block).float()
    return out


def _architecture(args, cls, shape, context_dim, low, high, periodic) -> dict:
    from ..nn.registry import accepts

    wanted = {"shape": list(shape)}
    if context_dim:
        wanted.update(context_dim=context_dim, context_low=low, context_high=high)
    kind = args.kind
    if kind == "maf":
        wanted.update(transforms=args.steps, hidden=None if args.hidden is None else [args.hidden] * 2)
    else:
        wanted.update(levels=args.levels, steps=args.steps, hidden=args.hidden)
    wanted.update(latent_dim=args.latent_dim, width=args.width)
    arch = {}
    for k, v in wanted.items():
        if v is not None and accepts(cls, k):
            arch[k] = v
    # Glow and ConditionalGlow have no defaults for levels/steps/hidden: fill what the class
    # requires, so `bayessky train glow --data FILE --out DIR` works as --help promises
    for k, v in _fallback_architecture(shape).items():
        if k not in arch and _required(cls, k):
            arch[k] = v
    if kind in ("glow", "cglow") and accepts(cls, "periodic"):
        arch["periodic"] = periodic
    given = {"--levels": args.levels, "--steps": args.steps, "--hidden": args.hidden,
             "--latent-dim": args.latent_dim, "--width": args.width}
    names = {"--levels": "levels", "--steps": "transforms" if kind == "maf" else "steps",
             "--hidden": "hidden", "--latent-dim": "latent_dim", "--width": "width"}
    for flag, v in given.items():
        if v is not None and names[flag] not in arch:
            raise CLIError(f"{flag}: not an option of {args.kind} ({getattr(cls, '__name__', cls)})")
        if v is not None and v < 1:
            raise CLIError(f"{flag}: expected a positive integer, got {v}")
    return arch


def _fallback_architecture(shape) -> dict:
    """levels (at most 4, leaving >= 2 x 2 pixels at the last level), steps 4, hidden 48: the
    shipped 64 x 64 Glow priors' settings, shrunk to small maps."""
    h, w = int(shape[-2]), int(shape[-1])
    levels = 1
    while levels < 4 and h % 2 ** (levels + 1) == 0 and w % 2 ** (levels + 1) == 0 \
            and min(h, w) // 2 ** (levels + 1) >= 2:
        levels += 1
    return {"levels": levels, "steps": 4, "hidden": 48}


def _required(cls, key: str) -> bool:
    """Whether ``cls`` takes ``key`` without a default."""
    import inspect

    try:
        param = inspect.signature(cls).parameters.get(key)
    except (TypeError, ValueError):
        return False
    return param is not None and param.default is param.empty


def _device(spec: str) -> torch.device:
    """``--device``: ``auto`` (cuda when available) or a device this machine has."""
    if spec == _AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return parse_device(spec)


def _augment(args, cut: bool, square: bool):
    from ..data.augment import Augment

    if args.augment == _AUTO:
        return Augment(flips=True, rot90="auto", shifts=not cut)
    names = [s.strip() for s in args.augment.split(",") if s.strip()]
    if names == ["none"]:
        return None
    bad = [n for n in names if n not in ("flips", "rot90", "shifts")]
    if bad:
        raise CLIError(f"--augment: unknown {bad} (known: flips, rot90, shifts, none)")
    if "rot90" in names and not square:
        raise CLIError("--augment: rot90 needs square maps")
    return Augment(flips="flips" in names, rot90="rot90" in names, shifts="shifts" in names)


# -- command ------------------------------------------------------------------------------------------
def _check_numbers(args) -> None:
    """The numeric flags, before any file is read."""
    for flag, v in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if v < (0 if flag == "--epochs" else 1):
            raise CLIError(f"{flag}: expected a {'non-negative' if flag == '--epochs' else 'positive'} "
                           f"integer, got {v}")
    fv, ft = args.val_fraction, args.test_fraction
    if not (0 <= fv < 1 and 0 <= ft < 1 and fv + ft < 1):
        raise CLIError(f"--val-fraction/--test-fraction: expected fractions in [0, 1) with a sum < 1, "
                       f"got {fv} and {ft}")
    if args.lr is not None and not (args.lr > 0 and math.isfinite(args.lr)):
        raise CLIError(f"--lr: expected a positive learning rate, got {args.lr}")
    if args.size is not None and args.size < 1:
        raise CLIError(f"--size: expected a positive integer, got {args.size}")


def _card(args, d, arch, transform, tnames, shape, ctx, splits) -> dict:
    """The partial model card the trainer completes: network, transform, context, data and split."""
    names, low, high = ctx
    train_idx, val_idx, test_idx = splits
    fv, ft = args.val_fraction, args.test_fraction
    sims = [np.unique(d.sim_index[idx]).tolist() for idx in splits]
    return {
        "kind": args.kind, "architecture": arch, "transform": transform.to_config(),
        "context": None if not names else {"names": names, "low": low, "high": high},
        "data": {**d.info, "map_shape": list(shape), "size": args.size,
                 "resize": args.resize if args.size else None, "transform_names": tnames,
                 "n_test": int(test_idx.size),
                 "split": {"by": "simulation", "seed": args.seed, "fractions": [1 - fv - ft, fv, ft],
                           "train_sims": sims[0], "val_sims": sims[1], "test_sims": sims[2]}},
    }


def _physical_metrics(out, card: dict, transform, maps: np.ndarray, splits) -> dict:
    """Add the NLL of the physical maps (the transform's log-Jacobian subtracted, see
    :mod:`bayessky.train.losses`) to the card's metrics and rewrite the card."""
    from ..atomic import write_json
    from ..priors.card import validate_card
    from ..priors.checkpoint import CARD_FILE
    from ..train.losses import physical_nll

    card = dict(card)
    metrics = dict(card["metrics"])
    for prefix, idx in (("val", splits[1]), ("test", splits[2])):
        key = f"{prefix}_nll_per_map"
        if key in metrics and idx.size:
            raw = torch.as_tensor(np.asarray(maps[idx]), dtype=torch.float64)
            metrics[f"{prefix}_nll_physical_per_map"] = physical_nll(metrics[key], transform, raw)
    card["metrics"] = metrics
    write_json(out / CARD_FILE, validate_card(card))
    return card


def _world(args, spec) -> int:
    """The number of processes this run trains with (torchrun's WORLD_SIZE, or --nproc), checked
    before anything is read: a global batch they can share, a kind that can be shared."""
    from ..train.distributed import env_world_size

    world = env_world_size()
    if args.nproc is not None:
        if args.nproc < 1:
            raise CLIError(f"--nproc: expected a positive integer, got {args.nproc}")
        if world > 1:
            raise CLIError(f"--nproc: already running under torchrun (WORLD_SIZE={world}); leave it out")
        world = args.nproc
    if args.compile and (world > 1 or spec.objective == "wgan-gp"):
        why = f"{world} processes" if world > 1 else "WGAN-GP"
        raise CLIError(f"--compile: not with {why} (flows and VAEs in one process only)")
    if world > 1:
        if spec.objective == "wgan-gp":
            raise CLIError(f"{args.kind}: WGAN-GP trains in one process (DistributedDataParallel does not "
                           f"support its gradient penalty's double backward), got {world} processes")
        if args.batch_size % world:
            raise CLIError(f"--batch-size: the global batch {args.batch_size} is not divisible by the "
                           f"{world} processes")
    return world


def _launch(args) -> int:
    """``--nproc N``: this command again under ``torchrun --standalone`` (N processes on this
    machine, a free local port), without ``--nproc``; its exit status."""
    argv, skip = [], False
    for tok in args.argv:
        flag = tok.split("=", 1)[0]
        if skip:
            skip = False
        elif len(flag) > 3 and "--nproc".startswith(flag):  # argparse accepts unique prefixes
            skip = "=" not in tok
        else:
            argv.append(tok)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
           "-m", "bayessky", *argv]
    print(f"bayessky train: {shlex.join(cmd)}", file=sys.stderr)
    return subprocess.call(cmd)


def _join(device: torch.device):
    """torchrun's process group when WORLD_SIZE > 1 (gloo on CPU, nccl with cuda:LOCAL_RANK)."""
    from ..train.distributed import init_from_env

    try:
        return init_from_env(device)
    except ValueError as err:
        raise CLIError(f"--device: {err}" if str(err).startswith("device:") else str(err)) from None


def _train(args, spec, net, y, context, splits, card, augment, out, device):
    """Run the trainer of the network's objective (WGAN-GP, or NLL / ELBO) on the split."""
    def part(idx):
        if idx.size == 0:
            return None
        return (y[idx], None if context is None else context[idx])

    train_idx, val_idx, test_idx = splits
    progress = not (args.no_progress or getattr(args, "quiet", False))
    if spec.objective == "wgan-gp":
        from ..train.gan import GANConfig, fit_wgan_gp

        cfg = GANConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr or 1e-4, seed=args.seed,
                        progress=progress)
        val = part(val_idx)
        return fit_wgan_gp(net, y[train_idx], None if val is None else val[0], config=cfg, augment=augment,
                           out=out, resume=args.resume, card=card, device=device)
    from ..train.loop import TrainConfig, fit

    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr or 3e-4,
                      early_stopping=args.early_stopping, seed=args.seed, progress=progress,
                      compile=args.compile)
    return fit(net, part(train_idx), part(val_idx), objective=spec.objective, config=cfg,
               augment=augment, out=out, resume=args.resume, card=card, test=part(test_idx),
               device=device)


def run(args: argparse.Namespace) -> int:
    from ..nn.registry import network_spec

    try:
        spec = network_spec(args.kind)
    except ValueError as err:
        raise CLIError(str(err)) from None
    _check_numbers(args)
    world = _world(args, spec)
    device = _device(args.device)
    out = check_out_dir(args.out)  # a file in its place or among its parents
    if not args.resume and (out / "state.safetensors").exists():
        raise CLIError(f"--out: {str(out)!r} holds a training run; pass --resume or choose another folder")
    if args.resume and not (out / "state.safetensors").is_file():
        # training from scratch under --resume would pass a fresh run off as a continued one
        raise CLIError(f"--resume: {str(out)!r} holds no saved training state (state.safetensors); "
                       "leave out --resume to start a new run")
    if args.nproc is not None and world > 1:
        return _launch(args)
    dist = torch.distributed
    owned = not (dist.is_available() and dist.is_initialized())  # a caller's group is the caller's to close
    group, device = _join(device)
    try:
        return _run(args, spec, device, out, group)
    finally:
        if group is not None and owned:
            from ..train.distributed import shutdown

            shutdown()


def _run(args, spec, device, out, group) -> int:
    """Load, split, transform, build and train (every rank of a data-parallel run does all of it;
    rank 0 alone writes and reports)."""
    from ..data.camels import split_by_simulation
    from ..nn.registry import build_network, network_class
    from ..priors.checkpoint import CARD_FILE

    main = group is None or group.is_main

    d = _load(args)
    maps, params, sim = d.maps, d.params, d.sim_index
    cols, ctx_names = _context_columns(args, d.names, params, spec)
    fv, ft = args.val_fraction, args.test_fraction
    splits = split_by_simulation(sim, (1 - fv - ft, fv, ft), seed=args.seed)
    train_idx, val_idx, test_idx = splits
    if train_idx.size == 0:
        raise CLIError("--data: no simulations left for training")
    transform, tnames = _transform(args, maps[train_idx])
    y = _apply(transform, maps)[:, None]  # (n, 1, H, W)
    shape = tuple(y.shape[1:])

    context = low = high = None
    if cols:
        values = params[:, cols]
        low, high = _context_range(args, ctx_names, values)
        context = torch.as_tensor(values, dtype=torch.float32)
    try:
        cls = network_class(args.kind)
    except ImportError as err:
        raise CLIError(str(err)) from None
    arch = _architecture(args, cls, shape, len(cols), low, high, periodic=not d.cut)
    torch.manual_seed(args.seed)  # network initialisation
    try:
        net = build_network(args.kind, arch).to(device)
    except ValueError as err:  # e.g. a network too large for memory: name the flags that sized it
        given = [f for f, v in (("--levels", args.levels), ("--steps", args.steps), ("--hidden", args.hidden),
                                ("--latent-dim", args.latent_dim), ("--width", args.width)) if v is not None]
        raise CLIError(f"{'/'.join(given) or '--size'}: {err}") from None
    arch = dict(getattr(net, "architecture", None) or arch)
    card = _card(args, d, arch, transform, tnames, shape, (ctx_names, low, high), splits)
    augment = _augment(args, d.cut, shape[-1] == shape[-2])
    if main:
        where = f"device {device}" if group is None else \
            f"{group.world_size} processes ({group.backend}), rank 0 on {device}"
        print(f"bayessky train: {args.kind} on {len(train_idx)} maps ({np.unique(sim[train_idx]).size} "
              f"simulations) of shape {shape}, {len(val_idx)} val / {len(test_idx)} test, "
              f"{sum(p.numel() for p in net.parameters())} parameters, {where}", file=sys.stderr)
    result = _train(args, spec, net, y, context, splits, card, augment, out, device)
    if not main:
        return 0
    if spec.objective != "wgan-gp":
        result = result._replace(card=_physical_metrics(out, result.card, transform, maps, splits))
    shown = {k: v for k, v in (result.card or {}).get("metrics", {}).items() if isinstance(v, float)}
    print(f"bayessky train: wrote {out / 'weights.safetensors'} and {out / CARD_FILE}; "
          + ", ".join(f"{k} = {v:.5g}" for k, v in shown.items()), file=sys.stderr)
    return 0
