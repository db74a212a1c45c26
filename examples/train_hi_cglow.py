r"""Train the HI field-level likelihood p(map | Omega_m, sigma_8) on hi-toy-v1 (the shipped prior).

This is the script that made ``models/hi-cglow-32`` (and the MAF baseline). It draws a training
set of hi-toy-v1 maps at parameters from the CAMELS prior box (fresh maps and fresh seeds for
validation and test; the benchmark maps use seeds never seen here), applies the HIGlow
preprocessing (log10, then standardise with the training-set mean and std, folded into the prior's
density), trains with the generic trainer and writes weights + model card. The held-out NLL is
reported next to the EXACT NLL of the same maps (hi-toy's likelihood is known), so the card says
how far the flow is from the truth.

    python examples/train_hi_cglow.py --size 32 --out models/hi-cglow-32 --minutes 8 --device cuda
    python examples/train_hi_cglow.py --kind maf --size 32 --out runs/hi-maf-32 --minutes 3

hi-toy-v1 never runs out of maps: ``--fresh`` draws a new training set every epoch (training
seeds 10_000 + epoch, never the validation, test or benchmark seeds), so a long run cannot
overfit. ``--init PRIOR`` (a shipped name or a folder) continues from a prior's weights (same
architecture; its data transform is kept and its card's training cost is carried into the new
card), and ``--resume`` continues an interrupted run exactly. A long CPU run in pieces, on one
core (run it under ``nice``)::

    OMP_NUM_THREADS=1 python examples/train_hi_cglow.py --size 32 --init hi-cglow-32 --fresh \
        --n-train 30000 --lr 1e-4 --lr-patience 3 --threads 1 --minutes 60 --resume \
        --out runs/hi-cglow-32-long
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from bayessky.data.augment import Augment
from bayessky.distributions.transforms import (
    Log10Transform,
    StandardiseTransform,
    compose,
    transform_to_config,
)
from bayessky.families import hi_toy
from bayessky.train.loop import TrainConfig, fit

SEEDS = {"train": 1_000, "val": 2_000, "test": 3_000}  # benchmarks use seeds >= 100_000
FRESH_SEED = 10_000  # --fresh: epoch e trains on maps of seed FRESH_SEED + e
LOW, HIGH = [0.1, 0.6], [0.5, 1.0]


def draw(n: int, size: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """n hi-toy-v1 maps (n, 1, size, size), linear units, and their (Omega_m, sigma_8) (n, 2)."""
    om, s8 = hi_toy.sample_prior(n, seed)
    maps = []
    for i in range(0, n, 4096):  # chunks keep the FFT work small on the CPU
        sl = slice(i, i + 4096)
        gen = torch.Generator(device=device).manual_seed(seed * 7919 + i)
        maps.append(hi_toy.sample(len(om[sl]), torch.as_tensor(om[sl], device=device),
                                  torch.as_tensor(s8[sl], device=device), size=size, seed=gen))
    maps = torch.cat(maps).float()[:, None]
    return maps, torch.as_tensor(np.stack([om, s8], -1), dtype=torch.float32, device=device)


def device_or_exit(parser: argparse.ArgumentParser, text: str) -> torch.device:
    """``--device`` as a device this machine has (bayessky.cli.parse_device, the CLI's own check),
    else one line on stderr and exit status 2 instead of torch's traceback from a kernel launch."""
    from bayessky.cli import CLIError, parse_device

    try:
        return parse_device(text)
    except CLIError as err:
        parser.exit(2, f"{parser.prog}: error: {err}; use --device cpu\n")


def build(kind: str, size: int, args):
    from bayessky import nn as bnn

    if kind == "cglow":
        return bnn.ConditionalGlow((1, size, size), 2, levels=args.levels, steps=args.steps,
                                   hidden=args.hidden, context_low=LOW, context_high=HIGH)
    if kind == "maf":
        return bnn.MapMAF((1, size, size), context_dim=2, transforms=args.steps,
                          hidden=(args.hidden, args.hidden), context_low=LOW, context_high=HIGH)
    raise ValueError(f"--kind: expected cglow or maf, got {kind!r}")


def exact_nll(maps: torch.Tensor, theta: torch.Tensor, std: float) -> float:
    """Mean exact -log p(y | theta) per map in the network space y = (log10 m - mean) / std."""
    ll = hi_toy.log_likelihood(maps[:, 0].double().cpu(), theta[:, 0].double().cpu(),
                               theta[:, 1].double().cpu(), paired=True)
    npix = maps[0].numel()
    return float(-(ll.mean() + npix * math.log(std)))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", default="cglow", choices=["cglow", "maf"])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--n-train", type=int, default=60_000)
    p.add_argument("--n-val", type=int, default=2_000)
    p.add_argument("--n-test", type=int, default=2_000)
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--minutes", type=float, default=8.0, help="wall-time budget for training")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr-patience", type=int, default=5, help="epochs without improvement before lr x 0.8")
    p.add_argument("--fresh", action="store_true", help="draw a new training set every epoch")
    p.add_argument("--init", default=None, help="start from this prior's weights (shipped name or folder; "
                   "same architecture)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/state.safetensors if it exists")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--compile", action="store_true", help="train through torch.compile (one process)")
    args = p.parse_args(argv)
    dev = device_or_exit(p, args.device)
    if args.threads is not None:
        if args.threads < 1:
            p.exit(2, f"{p.prog}: error: --threads: expected an integer >= 1, got {args.threads}\n")
        torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    t0 = time.time()
    parent = None
    if args.init is not None:
        from bayessky.priors import resolve_prior
        from bayessky.priors.checkpoint import read_card

        args.init = str(resolve_prior(args.init))
        parent = read_card(args.init)
        arch = parent["architecture"]
        args.levels, args.steps, args.hidden = arch["levels"], arch["steps"], arch["hidden"]
        if parent.get("kind") != args.kind or tuple(arch["shape"]) != (1, args.size, args.size):
            p.exit(2, f"{p.prog}: error: --init: {args.init} is a {parent.get('kind')} of shape "
                      f"{arch['shape']}, not a {args.kind} at {args.size}x{args.size}\n")
    # the fixed training set: trained on, or (without a parent) the source of the standardisation
    x = c = None
    if not args.fresh or parent is None:
        x, c = draw(args.n_train, args.size, SEEDS["train"], dev)
    xv, cv = draw(args.n_val, args.size, SEEDS["val"], dev)
    xt, ct = draw(args.n_test, args.size, SEEDS["test"], dev)
    if parent is not None:  # the network was trained in its parent's standardised space
        std_cfg = next(t for t in parent["transform"] if t["name"] == "standardise")
        mean, std = float(std_cfg["mean"]), float(std_cfg["std"])
    else:
        logx = torch.log10(x)
        mean, std = float(logx.mean()), float(logx.std())
    transform = compose(Log10Transform(), StandardiseTransform(mean, std))
    yv, yt = transform(xv), transform(xt)
    n_fixed = "fresh" if args.fresh else len(x)
    print(f"data: {n_fixed} train maps in {time.time() - t0:.1f}s; log10 mean {mean:.4f} std {std:.4f}")

    net = build(args.kind, args.size, args).to(dev)
    if parent is not None:
        from bayessky.priors.checkpoint import match_state, read_safetensors

        tensors, _ = read_safetensors(f"{args.init}/weights.safetensors")
        match_state(net, tensors, args.kind, args.init)
        net.load_state_dict(tensors)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"{args.kind}: {n_params / 1e6:.3f} M parameters")
    start = time.time()

    def report(epoch, record):
        print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items()
                                             if isinstance(v, float)), flush=True)

    card = {
        "kind": args.kind,
        "architecture": net.architecture,
        "transform": transform_to_config(transform),
        "context": {"names": ["Omega_m", "sigma_8"], "low": LOW, "high": HIGH},
        "data": {"family": "hi-toy-v1", "generator_version": hi_toy.VERSION, "size": args.size,
                 "box_Mpc_h": 25.0, "n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_test,
                 "seeds": SEEDS, "prior": {"Omega_m": [0.1, 0.5], "sigma_8": [0.6, 1.0]}},
        "description": "Conditional density of an HI-like log-normal map given (Omega_m, sigma_8), "
                       "trained on hi-toy-v1; log_prob in the units of the linear map.",
    }
    if parent is not None:
        pt = parent.get("training", {})
        card["training"] = {"init_from": {
            "prior": str(args.init), "weights_sha256": parent.get("weights_sha256"),
            "epochs_run": pt.get("epochs_run"), "time_s": pt.get("time_s"), "hardware": pt.get("hardware"),
            "n_train": parent["data"].get("n_train"), "lr": pt.get("lr"), "curve": pt.get("curve"),
            "init_from": pt.get("init_from")}}  # the chain of earlier runs, oldest innermost
    if args.fresh:
        # after a parent that trained on fresh maps too, go on past the seeds it used
        offset = 0
        if parent is not None and parent["data"].get("fresh_every_epoch"):
            offset = (int(parent["data"]["fresh_every_epoch"].get("seed_offset", 0))
                      + int(parent["training"]["epochs_run"]))
        card["data"]["fresh_every_epoch"] = {"n_train": args.n_train, "seed_offset": offset,
                                             "seed": f"{FRESH_SEED + offset} + epoch"}

        def train_data(epoch: int):
            xe, ce = draw(args.n_train, args.size, FRESH_SEED + offset + epoch, dev)
            return transform(xe), ce
    else:
        train_data = (transform(x), c)
    # max_minutes is checked between batches: long epochs stop in time
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      lr_patience=args.lr_patience, early_stopping=25, seed=args.seed,
                      max_minutes=args.minutes, compile=args.compile)
    result = fit(net, train_data, val=(yv, cv), test=(yt, ct), config=cfg, augment=Augment(),
                 out=args.out, card=card, callback=report, resume=args.resume)
    exact = exact_nll(xt, ct, std)
    with torch.no_grad():
        learned = float(-torch.cat([net.log_prob(yt[i:i + 500], ct[i:i + 500])
                                    for i in range(0, len(yt), 500)]).mean())
    print(f"held-out NLL per map (network space): learned {learned:.3f}, exact {exact:.3f}, "
          f"gap {learned - exact:.3f} nats ({(learned - exact) / yt[0].numel():.5f} per pixel); "
          f"trained {time.time() - start:.0f}s on {dev}")
    # record the comparison with the exact likelihood in the card
    import json
    from pathlib import Path

    path = Path(args.out) / "card.json"
    card_json = json.loads(path.read_text())
    card_json["metrics"].update({"test_nll_exact": exact, "test_nll_learned": learned,
                                 "test_nll_gap_nats": learned - exact, "n_parameters": n_params,
                                 "val_nll_exact": exact_nll(xv, cv, std)})
    # the learning curve (per epoch: train and validation NLL per map, lr, cumulative seconds)
    card_json["training"]["curve"] = json.loads((Path(args.out) / "history.json").read_text())
    from bayessky.atomic import write_json

    write_json(path, card_json)
    del result


if __name__ == "__main__":
    main()
