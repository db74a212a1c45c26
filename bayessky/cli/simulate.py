"""``bayessky simulate FAMILY --n N --out FILE``: draw maps of a synthetic family into an .npz file.

Families (DATASETS.md): ``hi-toy`` (log-normal HI-like maps of Omega_m, sigma_8), ``dust-toy``
(log-normal dust intensity, optional mask and noisy observation) and ``blobs`` (seed-003 blob
sets). Every file holds ``maps``, the truths, and ``family``, ``version``, ``seed``, ``size`` and
a JSON ``metadata`` string; arrays only, so ``np.load(FILE)`` needs no pickle:

- hi-toy: ``maps`` (linear, 10^(8 + g)), ``omega_m``, ``sigma_8`` (one per map; fixed with
  ``--omega-m/--sigma-8``, else drawn from the prior U(0.1, 0.5) x U(0.6, 1.0)).
- dust-toy: ``maps`` (intensity I), ``g``, ``data`` = M (I + n) with n ~ N(0, noise^2), and
  ``masks`` (one per map) unless ``--mask none``.
- blobs: ``maps``, ``centres`` (row, col), ``amplitudes``, ``n_blobs``, ``sigma``.

All randomness comes from one ``numpy.random.default_rng(seed)``: the same seed gives the same file.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from . import CLIError
from ._write import check_out_file

__all__ = ["add_parser", "run", "simulate"]

FAMILIES = ("hi-toy", "dust-toy", "blobs")
MASKS = ("point", "strip", "none")


def add_parser(sub) -> None:
    p = sub.add_parser("simulate", help="draw maps of a synthetic family (hi-toy, dust-toy, blobs)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("family", help="hi-toy, dust-toy or blobs")
    p.add_argument("--n", type=int, required=True, help="number of maps")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--size", type=int, help="pixels per side (default 64; blobs 128)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g = p.add_argument_group("hi-toy")
    g.add_argument("--omega-m", type=float, help="fixed Omega_m (with --sigma-8); default: prior draws")
    g.add_argument("--sigma-8", type=float, help="fixed sigma_8 (with --omega-m)")
    g = p.add_argument_group("dust-toy")
    g.add_argument("--mask", help="point, strip or none (default point)")
    g.add_argument("--noise-sigma", type=float, help="noise rms per pixel (default 0.05)")
    g = p.add_argument_group("blobs")
    g.add_argument("--n-blobs", type=int, help="1, 10, 50 or 1000")
    g.add_argument("--blob-sigma", type=float, help="blob width in pixels (default 2)")

    def one_line_error(message: str):
        # argparse prints usage + message; the bayessky CLI promises one line
        print(f"bayessky simulate: error: {message}", file=sys.stderr)
        sys.exit(2)

    p.error = one_line_error
    p.set_defaults(func=run)


def _refuse(args, allowed: set[str]) -> None:
    """Refuse options that belong to another family, so a typo does not pass silently."""
    owners = {"omega_m": "hi-toy", "sigma_8": "hi-toy", "mask": "dust-toy", "noise_sigma": "dust-toy",
              "n_blobs": "blobs", "blob_sigma": "blobs"}
    for key, fam in owners.items():
        if key not in allowed and getattr(args, key, None) is not None:
            raise CLIError(f"--{key.replace('_', '-')} applies to {fam}, not {args.family}")


def simulate(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """The arrays of the output file (also usable from Python with an argparse-like namespace)."""
    if args.family not in FAMILIES:
        raise CLIError(f"FAMILY: expected one of {', '.join(FAMILIES)}, got {args.family!r}")
    if args.n < 1:
        raise CLIError(f"--n: expected >= 1, got {args.n}")
    if args.size is not None and args.size < 2:
        raise CLIError(f"--size: expected >= 2, got {args.size}")
    rng = np.random.default_rng(args.seed)
    meta = {"family": args.family, "seed": args.seed, "n": args.n}
    if args.family == "hi-toy":
        from ..families import hi_toy

        _refuse(args, {"omega_m", "sigma_8"})
        size = args.size or 64
        if (args.omega_m is None) != (args.sigma_8 is None):
            raise CLIError("--omega-m and --sigma-8: give both or neither (neither = prior draws)")
        if args.omega_m is None:
            om, s8 = hi_toy.sample_prior(args.n, rng)
            meta["parameters"] = "prior"
        else:
            # S(k) depends on sigma_8^2: a negative value would pass for its absolute value
            for flag, v in (("--omega-m", args.omega_m), ("--sigma-8", args.sigma_8)):
                if not (v > 0 and math.isfinite(v)):
                    raise CLIError(f"{flag}: must be > 0 and finite, got {v}")
            om, s8 = np.full(args.n, args.omega_m), np.full(args.n, args.sigma_8)
            meta["parameters"] = "fixed"
        out = {"maps": hi_toy.sample(args.n, om, s8, size=size, seed=rng), "omega_m": om, "sigma_8": s8,
               "box": np.array(hi_toy.BOX)}
        version = hi_toy.VERSION
    elif args.family == "dust-toy":
        from ..families import dust_toy

        _refuse(args, {"mask", "noise_sigma"})
        size = args.size or 64
        mask = args.mask or "point"
        if mask not in MASKS:
            raise CLIError(f"--mask: expected one of {', '.join(MASKS)}, got {mask!r}")
        noise = dust_toy.NOISE_SIGMA if args.noise_sigma is None else args.noise_sigma
        if not (noise >= 0 and math.isfinite(noise)):
            raise CLIError(f"--noise-sigma: must be >= 0 and finite, got {noise}")
        I, g = dust_toy.sample(args.n, size=size, seed=rng, return_g=True)
        out = {"maps": I, "g": g}
        if mask == "none":
            masks = None
        else:
            make = dust_toy.point_source_mask if mask == "point" else dust_toy.strip_mask
            masks = np.stack([make(size, seed=rng) for _ in range(args.n)])
            out["masks"] = masks
        out["data"] = dust_toy.observe(I, masks, noise_sigma=noise, seed=rng)
        out["noise_sigma"] = np.array(noise)
        meta.update(mask=mask, noise_sigma=noise)
        version = dust_toy.VERSION
    else:
        from ..families import blobs

        _refuse(args, {"n_blobs", "blob_sigma"})
        size = args.size or 128
        if args.n_blobs is None:
            raise CLIError(f"--n-blobs: required for blobs, one of {sorted(blobs.SETS)}")
        if args.n_blobs not in blobs.SETS:
            raise CLIError(f"--n-blobs: expected one of {sorted(blobs.SETS)}, got {args.n_blobs}")
        sigma = 2.0 if args.blob_sigma is None else args.blob_sigma
        if not (sigma > 0 and math.isfinite(sigma)):
            raise CLIError(f"--blob-sigma: must be > 0 and finite, got {sigma}")
        maps, centres, amps = blobs.sample(args.n, args.n_blobs, size=size, sigma=sigma, seed=rng,
                                           return_params=True)
        out = {"maps": maps, "centres": centres, "amplitudes": amps, "n_blobs": np.array(args.n_blobs),
               "sigma": np.array(sigma)}
        meta.update(n_blobs=args.n_blobs, sigma=sigma, rule=blobs.SETS[args.n_blobs])
        version = blobs.VERSION
    meta.update(version=version, size=size)
    out.update(family=np.array(args.family), version=np.array(version), seed=np.array(args.seed),
               size=np.array(size), metadata=np.array(json.dumps(meta, sort_keys=True)))
    return out


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomic write (:func:`bayessky.atomic.atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez adds no suffix
        np.savez(f, **arrays)


def run(args: argparse.Namespace) -> int:
    path = Path(args.out)
    if path.suffix != ".npz":
        raise CLIError(f"--out: expected a .npz file name, got {args.out!r}")
    check_out_file(path)
    arrays = simulate(args)
    _write_npz(path, arrays)
    shape = "x".join(str(s) for s in arrays["maps"].shape[1:])
    print(f"wrote {path}: {args.n} {arrays['version']} maps of {shape} (seed {args.seed})")
    return 0
