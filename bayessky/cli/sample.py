"""``bayessky sample PRIOR --n N --out FILE``: draw maps from a trained prior into an .npz file.

The file holds ``maps`` (N, H, W) or (N, C, H, W) in the user's units (the data transform is
undone), ``context`` (the conditioning values, if any), ``context_names``, ``prior`` and ``seed``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path
from . import CLIError, parse_device
from ._write import check_out_file

__all__ = ["add_parser", "run", "parse_context"]


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="draw maps from a trained prior", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prior", help="prior name (models/<name>) or folder with weights.safetensors + card.json")
    p.add_argument("--n", type=int, required=True, help="number of maps")
    p.add_argument("--context", help="conditioning values: Omega_m=0.3,sigma_8=0.8 or 0.3,0.8 "
                   "(required for conditional priors)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--temperature", type=float, default=1.0, help="scale of the base/latent draws")
    p.add_argument("--batch-size", type=int, default=64, help="maps per network call")
    p.set_defaults(func=run)


def parse_context(text: str | None, names: list[str] | None) -> list[float] | None:
    """``"Omega_m=0.3,sigma_8=0.8"`` or ``"0.3,0.8"`` -> values in the prior's order."""
    if names is None:
        if text:
            raise CLIError("--context: this prior is unconditional")
        return None
    if not text:
        raise CLIError(f"--context: required for this conditional prior ({', '.join(names)}), "
                       f"e.g. --context {','.join(f'{n}=...' for n in names)}")
    items = [s.strip() for s in text.split(",") if s.strip()]
    if all("=" in s for s in items):
        given = {}
        for s in items:
            k, v = (t.strip() for t in s.split("=", 1))
            given[k] = v
        unknown = [k for k in given if k not in names]
        missing = [n for n in names if n not in given]
        if unknown or missing:
            raise CLIError(f"--context: expected {', '.join(names)}; unknown {unknown}, missing {missing}")
        raw = [given[n] for n in names]
    elif any("=" in s for s in items):
        raise CLIError(f"--context: mix of named and positional values in {text!r}")
    else:
        if len(items) != len(names):
            raise CLIError(f"--context: expected {len(names)} values ({', '.join(names)}), got {len(items)}")
        raw = items
    try:
        return [float(v) for v in raw]
    except ValueError:
        raise CLIError(f"--context: values must be numbers, got {text!r}") from None


def _check_memory(prior, args) -> None:
    """Every map is kept until the file is written: refuse an --n whose maps cannot fit, before
    drawing for hours (float32 maps, and np.concatenate's copy of them)."""
    from .._validate import check_memory

    shape = (prior.card.get("architecture") or {}).get("shape")
    if isinstance(shape, (list, tuple)) and shape:
        try:
            check_memory(2 * 4 * args.n * math.prod(int(s) for s in shape), "--n")
            prior.check_generate(min(args.n, args.batch_size))
        except ValueError as err:
            flag = "--n" if str(err).startswith("--n") else "--batch-size"
            raise CLIError(f"{flag}: {str(err).partition(': ')[2]}") from None


def run(args: argparse.Namespace) -> int:
    from ..priors.prior import load_prior

    if args.n < 1:
        raise CLIError(f"--n: must be >= 1, got {args.n}")
    if not (args.temperature > 0 and math.isfinite(args.temperature)):  # inf gives non-finite maps
        raise CLIError(f"--temperature: must be > 0 and finite, got {args.temperature}")
    if args.batch_size < 1:
        raise CLIError(f"--batch-size: must be >= 1, got {args.batch_size}")
    out = Path(args.out)
    if out.suffix != ".npz":
        raise CLIError(f"--out: expected a .npz file name, got {str(out)!r}")
    check_out_file(out)  # before the (slow) sampling, not at the write
    dev = parse_device(args.device)
    prior = load_prior(args.prior, device=dev)
    names = prior.context_names
    context = parse_context(args.context, names)
    _check_memory(prior, args)

    torch.manual_seed(args.seed)
    chunks = []
    try:
        from tqdm.auto import tqdm

        quiet = args.n <= args.batch_size or getattr(args, "quiet", False)
        bar = tqdm(total=args.n, desc="bayessky sample", unit="map", disable=quiet)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        bar = None
    done = 0
    while done < args.n:
        k = min(args.batch_size, args.n - done)
        maps = prior.generate(k, context=context, temperature=args.temperature)
        chunks.append(maps.detach().cpu().numpy())
        done += k
        if bar is not None:
            bar.update(k)
    if bar is not None:
        bar.close()
    maps = np.concatenate(chunks)
    if not np.isfinite(maps).all():
        print(f"bayessky sample: warning: {int((~np.isfinite(maps)).sum())} non-finite pixel values "
              "(temperature too high or the inverse transform overflowed)")

    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"maps": maps, "prior": np.array(str(args.prior)), "seed": np.array(args.seed),
               "temperature": np.array(args.temperature)}
    if context is not None:
        payload["context"] = np.array(context)
        payload["context_names"] = np.array(names)
    with atomic_path(out, suffix=".npz") as tmp:  # np.savez appends .npz to any other name
        np.savez(tmp, **payload)
    print(f"bayessky sample: wrote {maps.shape[0]} maps of shape {maps.shape[1:]} to {out}")
    return 0
