"""``bayessky simulate FAMILY --n N --out FILE``: draw maps of a synthetic family into an .npz file.

Families (specified in :mod:`bayessky.families`): ``hi-toy`` (log-normal HI-like maps of Omega_m,
sigma_8), ``dust-toy`` (log-normal dust intensity, optional mask and noisy observation) and
``blobs`` (the Gaussian-blob sets); and ``cmb-lensing``, one multi-frequency data set of the
packaged model :mod:`bayessky.models.cmb_lensing`. Every file holds ``maps``, the truths, and
``family``, ``version``, ``seed``, ``size`` and a JSON ``metadata`` string; arrays only, so
``np.load(FILE)`` needs no pickle:

- hi-toy: ``maps`` (linear, 10^(8 + g)), ``omega_m``, ``sigma_8`` (one per map; fixed with
  ``--omega-m/--sigma-8``, else drawn from the prior U(0.1, 0.5) x U(0.6, 1.0)).
- dust-toy: ``maps`` (intensity I), ``g``, ``data`` = M (I + n) with n ~ N(0, noise^2), and
  ``masks`` (one per map) unless ``--mask none``.
- blobs: ``maps``, ``centres`` (row, col), ``amplitudes``, ``n_blobs``, ``sigma``.
- cmb-lensing (``--n 1`` only): ``maps`` = the data (n_freq, H, W) stacked along rows
  (n_freq * H, W), ``channels``, the truths ``f``, ``phi``, ``f_lensed``, ``dust``, ``dust_I``,
  ``noise``, ``mask`` / ``mask_rows`` with ``--mask point``, and the model ``options`` (JSON).

With one masked map (dust-toy ``--n 1``, cmb-lensing) the mask is also written next to the file as
``FILE.mask.npy`` (what ``bayessky run --mask`` reads), and the command that fits the data is printed.

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

FAMILIES = ("hi-toy", "dust-toy", "blobs", "cmb-lensing")
MASKS = ("point", "strip", "none")


def add_parser(sub) -> None:
    p = sub.add_parser("simulate", help="draw maps of a synthetic family (hi-toy, dust-toy, blobs, "
                       "cmb-lensing)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("family", help="hi-toy, dust-toy, blobs or cmb-lensing")
    p.add_argument("--n", type=int, help="number of maps (required; cmb-lensing: 1)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--size", type=int, help="pixels per side (default 64; blobs 128)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g = p.add_argument_group("hi-toy")
    g.add_argument("--omega-m", type=float, help="fixed Omega_m (with --sigma-8); default: prior draws")
    g.add_argument("--sigma-8", type=float, help="fixed sigma_8 (with --omega-m)")
    g = p.add_argument_group("dust-toy")
    g.add_argument("--mask", help="point, strip or none (default point; cmb-lensing: point or none, "
                   "default none)")
    g.add_argument("--noise-sigma", type=float, help="noise rms per pixel (default 0.05)")
    g = p.add_argument_group("blobs")
    g.add_argument("--n-blobs", type=int, help="1, 10, 50 or 1000")
    g.add_argument("--blob-sigma", type=float, help="blob width in pixels (default 2)")
    g = p.add_argument_group("cmb-lensing")
    g.add_argument("--pixel-size", type=float, help="pixel side in arcmin (default 2)")
    g.add_argument("--frequencies", help="channel frequencies in GHz, comma list (default 90,150,220)")
    g.add_argument("--beam-fwhm", help="Gaussian beam FWHM in arcmin, one or one per channel (default 1.5)")
    g.add_argument("--noise-uk-arcmin", help="white-noise depth, one or one per channel (default 3)")
    g.add_argument("--dust-amplitude", type=float, help="dust at 353 GHz in uK_CMB (default 300)")

    def one_line_error(message: str):
        # argparse prints usage + message; the bayessky CLI promises one line
        print(f"bayessky simulate: error: {message}", file=sys.stderr)
        sys.exit(2)

    p.error = one_line_error
    p.set_defaults(func=run)


def _refuse(args, allowed: set[str]) -> None:
    """Refuse options that belong to another family, so a typo does not pass silently."""
    cmb = "cmb-lensing"
    owners = {"omega_m": "hi-toy", "sigma_8": "hi-toy", "mask": "dust-toy and cmb-lensing",
              "noise_sigma": "dust-toy", "n_blobs": "blobs", "blob_sigma": "blobs", "pixel_size": cmb,
              "frequencies": cmb, "beam_fwhm": cmb, "noise_uk_arcmin": cmb, "dust_amplitude": cmb}
    for key, fam in owners.items():
        if key not in allowed and getattr(args, key, None) is not None:
            raise CLIError(f"--{key.replace('_', '-')} applies to {fam}, not {args.family}")


def simulate(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """The arrays of the output file (also usable from Python with an argparse-like namespace)."""
    if args.family not in FAMILIES:
        raise CLIError(f"FAMILY: expected one of {', '.join(FAMILIES)}, got {args.family!r}")
    if getattr(args, "n", None) is None:
        if args.family != "cmb-lensing":
            raise CLIError("--n: required (the number of maps)")
        args.n = 1
    if args.n < 1:
        raise CLIError(f"--n: expected >= 1, got {args.n}")
    if args.size is not None and args.size < 2:
        raise CLIError(f"--size: expected >= 2, got {args.size}")
    _check_memory(args)
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
            # the family is specified on its prior box only (S(k) depends on sigma_8^2: a negative
            # value would even pass for its absolute value)
            for flag, key, v in (("--omega-m", "Omega_m", args.omega_m),
                                 ("--sigma-8", "sigma_8", args.sigma_8)):
                lo, hi = hi_toy.prior_bounds[key]
                if not (math.isfinite(v) and lo <= v <= hi):
                    raise CLIError(f"{flag}: expected a value in hi-toy's range [{lo}, {hi}], got {v}")
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
    elif args.family == "cmb-lensing":
        return _simulate_cmb_lensing(args, meta)
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


def _check_memory(args) -> None:
    """The maps' memory against what the machine has, before any is drawn, naming the flags."""
    from .._validate import check_memory
    from ..families import blobs, dust_toy, hi_toy

    size = args.size or (128 if args.family == "blobs" else 64)
    per_pixel = {"hi-toy": hi_toy, "blobs": blobs}.get(args.family, dust_toy).PEAK_BYTES_PER_PIXEL
    if args.family == "cmb-lensing":  # several fields (f, phi, lensed, dust) and one map per channel
        per_pixel *= 2 * len(_floats(args.frequencies, "--frequencies") or (90, 150, 220)) + 8
    try:
        check_memory(per_pixel * args.n * size * size, "--n/--size")
    except ValueError as err:
        raise CLIError(str(err)) from None


def _floats(text, flag: str):
    if text is None:
        return None
    try:
        vals = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise CLIError(f"{flag}: expected numbers separated by commas, got {text!r}") from None
    if not all(v > 0 and math.isfinite(v) for v in vals):
        raise CLIError(f"{flag}: values must be > 0 and finite, got {text!r}")
    return vals


def _simulate_cmb_lensing(args, meta: dict) -> dict[str, np.ndarray]:
    """One data set of :mod:`bayessky.models.cmb_lensing` (``--n 1``), its truths and options."""
    from ..models import cmb_lensing as cl

    _refuse(args, {"mask", "pixel_size", "frequencies", "beam_fwhm", "noise_uk_arcmin", "dust_amplitude"})
    if args.n != 1:
        raise CLIError(f"--n: cmb-lensing writes one data set (--n 1), got {args.n}")
    size = args.size or 64
    mask = args.mask or "none"
    if mask not in ("point", "none"):
        raise CLIError(f"--mask: expected point or none for cmb-lensing, got {mask!r}")
    opts = {"pixel_size": 2.0 if args.pixel_size is None else args.pixel_size,
            "frequencies": _floats(args.frequencies, "--frequencies") or list(cl.FREQUENCIES),
            "beam_fwhm": _floats(args.beam_fwhm, "--beam-fwhm") or cl.BEAM_FWHM,
            "noise_uK_arcmin": _floats(args.noise_uk_arcmin, "--noise-uk-arcmin") or cl.NOISE_UK_ARCMIN,
            "dust_amplitude": cl.DUST_AMPLITUDE if args.dust_amplitude is None else args.dust_amplitude}
    for key in ("pixel_size", "dust_amplitude"):
        if not (opts[key] > 0 and math.isfinite(opts[key])):
            raise CLIError(f"--{key.replace('_', '-')}: must be > 0 and finite, got {opts[key]}")
    sim = cl.simulate(size, opts["pixel_size"], opts["frequencies"], opts["beam_fwhm"],
                      opts["noise_uK_arcmin"], opts["dust_amplitude"],
                      mask=None if mask == "none" else mask, seed=args.seed)  # as the model's own
    out = cl.simulation_arrays(sim)
    meta.update(mask=mask, **sim["options"])
    version = "cmb-lensing"
    meta.update(version=version, size=size)
    out.update(family=np.array(args.family), version=np.array(version), size=np.array(size),
               metadata=np.array(json.dumps(meta, sort_keys=True)))
    return out


def _fit_command(path: Path, arrays: dict, mask_path: Path | None) -> str | None:
    """The ``bayessky run`` command that fits a one-map file (None for families without a model)."""
    family = str(arrays["family"])
    if family == "dust-toy":
        cmd = f"bayessky run dust_inpainting --data {path} --key data"
        noise = float(arrays["noise_sigma"])
        if noise != 0.05:
            cmd += f" --set noise_sigma={noise}"
    elif family == "cmb-lensing":
        opts = json.loads(str(arrays["options"]))
        sets = [f"--set {k}={json.dumps(v).replace(' ', '')}" for k, v in opts.items()
                if k in ("frequencies", "beam_fwhm", "noise_uK_arcmin", "pixel_size", "dust_amplitude")]
        cmd = f"bayessky run cmb_lensing --data {path} --engine map {' '.join(sets)}"
    else:
        return None
    return cmd + (f" --mask {mask_path}" if mask_path is not None else "")


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
    if arrays["family"] == "cmb-lensing":
        print(f"wrote {path}: one {arrays['channels'].shape[0]}-channel cmb-lensing data set of "
              f"{arrays['size']}x{arrays['size']} (seed {args.seed})")
        mask = arrays.get("mask_rows")
    else:
        shape = "x".join(str(s) for s in arrays["maps"].shape[1:])
        print(f"wrote {path}: {args.n} {arrays['version']} maps of {shape} (seed {args.seed})")
        mask = arrays["masks"][0] if "masks" in arrays and args.n == 1 else None
    mask_path = None
    if mask is not None:  # one map: its mask as the file ``bayessky run --mask`` reads
        mask_path = path.with_name(path.stem + ".mask.npy")
        with atomic_path(mask_path) as tmp, open(tmp, "wb") as f:
            np.save(f, mask)
        print(f"wrote {mask_path}")
    cmd = _fit_command(path, arrays, mask_path) if args.n == 1 else None
    if cmd:
        print(f"fit it with:\n  {cmd}")
    return 0
