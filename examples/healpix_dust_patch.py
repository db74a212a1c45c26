"""HEALPix walk-through: cut a dust patch from a sky map, inpaint its point-source holes with the
learned dust prior, paste the result back onto the sphere and plot it with healpy.

1. A full-sky log-normal dust-like map ``I = exp(0.8 g - 0.32)`` is drawn with healpy: ``g`` has the
   angular spectrum that makes a flat ``size x size`` patch of ``--pixel-arcmin`` pixels a
   dust-toy-v1 field (``C_ell = Omega_pix S_g(kappa)``, ``kappa = ell size d / 2 pi`` cycles per
   patch), so the shipped prior applies to the patch.
2. Point-source holes (discs of 2-5 patch pixels) are cut on the sphere, white noise (rms
   ``--noise`` per HEALPix pixel) is added, and the masked pixels are set to ``hp.UNSEEN``.
3. ``bayessky.sky.healpix.cut_patch`` cuts the gnomonic patch (bilinear interpolation). A patch
   pixel is observed only if all four HEALPix pixels it interpolates are; its noise rms is
   ``noise * sqrt(sum w^2)`` with the interpolation weights w (a per-pixel noise map).
4. The packaged model ``bayessky.models.dust_inpainting`` (any prior: learned, ``true``, ``gaussian``) is run
   with ``bayessky.infer.map`` (default) or NUTS; posterior mean and std come back on the patch.
5. ``paste_patch`` writes the posterior mean into the holes of the HEALPix map (observed HEALPix
   pixels keep their data), and healpy draws the sky before, with holes, and after.

    python examples/healpix_dust_patch.py --prior dust-glow-64 --out healpix-demo/
    python examples/healpix_dust_patch.py --prior true --size 32 --engine nuts --out healpix-demo/
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import healpy as hp
import numpy as np
import torch

from bayessky.families import dust_toy
from bayessky.sky.geometry import ARCMIN
from bayessky.sky.healpix import cut_patch, paste_patch, synfast

ROOT = Path(__file__).resolve().parents[1]


def dust_sky(nside: int, size: int, pixel_arcmin: float, seed: int) -> np.ndarray:
    """Full-sky log-normal intensity whose flat patches of ``size`` pixels are dust-toy-v1-like."""
    d = pixel_arcmin * ARCMIN
    lmax = 3 * nside - 1
    ell = np.arange(lmax + 1)
    kappa = ell * size * d / (2 * math.pi)
    s_g = dust_toy.spectrum(size)  # normalised on the patch grid: c (kappa^2 + 4)^-1.4, mean 1
    c = s_g[0, 0] * 4.0**1.4  # the normalisation constant c of the dust-toy-v1 spectrum (families.dust_toy)
    cl = d * d * c * (kappa**2 + 4.0) ** dust_toy.SLOPE
    cl[ell > math.pi / d] = 0.0  # no power beyond the patch Nyquist: the patch prior knows none
    g = synfast(cl, nside, seed=seed)
    g /= g.std()  # unit variance, as dust-toy-v1's g
    return np.exp(dust_toy.AMPLITUDE * g - dust_toy.OFFSET)


def sky_holes(nside: int, centre, radius_deg: float, pixel_arcmin: float, fraction: float, seed: int):
    """0/1 HEALPix mask: discs of 2-5 patch pixels around random points of the patch region."""
    rng = np.random.default_rng(seed)
    mask = np.ones(hp.nside2npix(nside))
    vec0 = hp.ang2vec(*centre, lonlat=True)
    region = hp.query_disc(nside, vec0, math.radians(radius_deg))
    while (mask[region] == 0).mean() < fraction:
        pix = rng.choice(region)
        r = rng.uniform(2.0, 5.0) * pixel_arcmin * ARCMIN
        mask[hp.query_disc(nside, hp.pix2vec(nside, pix), r)] = 0.0
    return mask


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--prior", default="dust-glow-64", help="learned prior, or 'true' / 'gaussian'")
    p.add_argument("--size", type=int, default=64, help="patch pixels per side (the prior's)")
    p.add_argument("--nside", type=int, default=512)
    p.add_argument("--pixel-arcmin", type=float, default=7.0)
    p.add_argument("--centre", type=float, nargs=2, default=(80.0, 35.0), metavar=("LON", "LAT"))
    p.add_argument("--noise", type=float, default=0.05, help="noise rms per HEALPix pixel")
    p.add_argument("--fraction", type=float, default=0.08, help="masked fraction around the patch")
    p.add_argument("--engine", default="map", choices=["map", "nuts"])
    p.add_argument("--steps", type=int, default=1000, help="MAP optimisation steps (--engine map)")
    p.add_argument("--num-samples", type=int, default=300)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--out", default="healpix-dust-patch")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    # 1-2: the sky, its holes and the noisy observation
    sky = dust_sky(args.nside, args.size, args.pixel_arcmin, args.seed)
    inner = 0.4 * args.size * args.pixel_arcmin / 60.0  # hole centres well inside the patch
    hmask = sky_holes(args.nside, args.centre, inner, args.pixel_arcmin, args.fraction, args.seed + 1)
    rng = np.random.default_rng(args.seed + 2)
    observed = sky + args.noise * rng.standard_normal(sky.size)
    observed_unseen = np.where(hmask > 0, observed, hp.UNSEEN)

    # 3: the patch, its mask (all four interpolation neighbours observed) and its noise map
    patch, proj = cut_patch(
        np.where(hmask > 0, observed, 0.0), args.centre, args.size, args.pixel_arcmin
    )
    true_patch, _ = cut_patch(sky, args.centre, args.size, args.pixel_arcmin)
    lon, lat = proj.lonlat()
    pix, w = hp.get_interp_weights(args.nside, lon.ravel(), lat.ravel(), lonlat=True)
    pmask = (np.where(w > 0, hmask[pix], 1.0).min(0) > 0.5).reshape(proj.shape).astype(float)
    sigma_map = (args.noise * np.sqrt((w**2).sum(0))).reshape(proj.shape)

    # 4: inpainting with the packaged model
    from bayessky import infer
    from bayessky.models import dust_inpainting as script
    dtype = torch.float64 if args.prior in ("true", "gaussian") else torch.float32
    d = torch.as_tensor(patch * pmask, dtype=dtype)
    opts = dict(
        mask=torch.as_tensor(pmask, dtype=dtype),
        prior=args.prior,
        noise_sigma=torch.as_tensor(sigma_map, dtype=dtype),
    )
    t1 = time.perf_counter()
    if args.engine == "map":
        idata = infer.map(script.model, d, steps=args.steps, seed=args.seed, **opts)
    else:
        idata = infer.nuts(
            script.model,
            d,
            num_samples=args.num_samples,
            warmup_steps=args.warmup,
            num_chains=2,
            backend="fast",
            init_strategy="map",
            seed=args.seed,
            progress_bar=False,
            **opts,
        )
    t_inf = time.perf_counter() - t1
    draws = np.asarray(idata.posterior["I"].values, dtype=float).reshape(-1, *proj.shape)
    mean, std = draws.mean(0), draws.std(0)
    np.save(out / "patch_mean.npy", mean)
    np.save(out / "patch_std.npy", std)

    # 5: paste into the holes only (observed HEALPix pixels keep their data) and plot
    pasted, written = paste_patch(observed_unseen, mean, proj)
    inpainted = observed_unseen.copy()
    holes = written[hmask[written] == 0]
    inpainted[holes] = pasted[holes]
    hp.write_map(str(out / "inpainted.fits"), inpainted, overwrite=True, dtype=np.float64)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(16, 9.5))  # room for healpy's colour-bar labels between the rows
    view = dict(
        rot=(args.centre[0], args.centre[1]),
        xsize=500,
        reso=1.05 * args.size * args.pixel_arcmin / 500,
        cmap="inferno",
        min=0.0,
        max=float(np.percentile(true_patch, 99.5)),
        unit="intensity I / <I>",  # dust-toy-v1 intensities have mean 1
    )
    hp.mollview(
        np.log(sky),
        fig=fig.number,
        sub=(2, 3, 1),
        title="ln I (full sky), patch in cyan",
        cmap="inferno",
        unit="ln(I / <I>)",
    )
    hp.projplot(
        *proj.lonlat(
            np.array([0, 0, args.size - 1, args.size - 1, 0]),
            np.array([0, args.size - 1, args.size - 1, 0, 0]),
        ),
        "c-",
        lonlat=True,
    )
    hp.gnomview(sky, fig=fig.number, sub=(2, 3, 2), title="true sky", **view)
    hp.gnomview(observed_unseen, fig=fig.number, sub=(2, 3, 3), title="observed (holes UNSEEN)", **view)
    hp.gnomview(
        inpainted,
        fig=fig.number,
        sub=(2, 3, 4),
        title=f"inpainted ({args.prior}, {args.engine})",
        **view,
    )
    err = np.full(sky.size, hp.UNSEEN)
    err[holes] = inpainted[holes] - sky[holes]
    hp.gnomview(
        err,
        fig=fig.number,
        sub=(2, 3, 5),
        title="inpainted - true (holes)",
        cmap="RdBu_r",
        min=-float(np.abs(err[holes]).max()),
        max=float(np.abs(err[holes]).max()),
        rot=view["rot"],
        xsize=500,
        reso=view["reso"],
        unit=view["unit"],
    )
    ax = fig.add_subplot(2, 3, 6)
    if len(draws) > 1:
        im = ax.imshow(std, origin="lower", cmap="magma")
        ax.set_title("posterior std (patch)")
    else:  # a MAP run has no spread: show the flat patch estimate instead
        im = ax.imshow(mean, origin="lower", cmap="inferno", vmin=view["min"], vmax=view["max"])
        ax.set_title("MAP estimate (flat patch)")
    ax.contour(pmask, [0.5], colors="c", linewidths=0.5)
    ax.set_xlabel("patch pixel")
    fig.colorbar(im, ax=ax, orientation="horizontal", fraction=0.05, pad=0.2).set_label(view["unit"])
    # healpy places its titles above the axes' box: the tight box keeps them in the file
    fig.savefig(out / "healpix_dust_patch.png", dpi=100, bbox_inches="tight")
    plt.close(fig)

    hole = pmask < 0.5
    record = {
        "prior": args.prior,
        "engine": args.engine,
        "nside": args.nside,
        "patch": [args.size, args.size],
        "pixel_arcmin": args.pixel_arcmin,
        "centre": list(args.centre),
        "masked_patch_fraction": float(hole.mean()),
        "patch_mse_masked": float(np.mean((mean[hole] - true_patch[hole]) ** 2)),
        "patch_truth_variance_masked": float(np.var(true_patch[hole])),
        "healpix_holes_filled": int(len(holes)),
        "healpix_mse_filled": float(np.mean((inpainted[holes] - sky[holes]) ** 2)),
        "seconds_inference": t_inf,
        "seconds_total": time.perf_counter() - t0,
        "figure": str(out / "healpix_dust_patch.png"),
    }
    (out / "healpix_dust_patch.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
