"""Regenerate the shipped CMB spectra table with CAMB: ``python -m bayessky.physics.make_spectra_table``.

The table is the Planck 2018 best fit (TT,TE,EE+lowE+lensing, Planck 2018 VI Table 2 col. 5) with
one massive neutrino of 0.06 eV, computed to ``lmax = 6000`` with CAMB's lensed spectra accurate
to that ell: ``set_for_lmax(6000, lens_potential_accuracy=...)`` adds a 200-ell margin to the
computed range and raises the k range of the lensing potential (non-linear Halofit lensing, as
Planck's best-fit spectra). It stores raw C_ell (not D_ell) in uK^2 for TT/EE/BB/TE, unlensed and
lensed, and the raw lensing-potential spectrum C_ell^phiphi (dimensionless), on ell = 0..6000
(ell < 2 are zero), plus metadata: CAMB version, parameters, accuracy settings and date.

CAMB is needed only here; the library reads the ``.npz`` with numpy (no pickle).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_path

__all__ = ["PLANCK2018", "DEFAULT_PATH", "compute_table", "table_from_results", "write_table", "main"]

#: Planck 2018 TT,TE,EE+lowE+lensing best fit (arXiv:1807.06209, Table 2), mnu = 0.06 eV.
PLANCK2018 = {
    "H0": 67.36,
    "ombh2": 0.02237,
    "omch2": 0.1200,
    "tau": 0.0544,
    "As": 2.100e-9,
    "ns": 0.9649,
    "mnu": 0.06,
    "omk": 0.0,
    "r": 0.0,
}

DEFAULT_PATH = Path(__file__).parent / "data" / "planck2018_camb.npz"


def compute_table(
    lmax: int = 6000, lens_potential_accuracy: int = 12, extra_lmax: int = 4000, params: dict | None = None
) -> dict:
    """Run CAMB and return the table as a dict of numpy arrays (and 0-d string metadata).

    Arguments:
        lmax: highest multipole of the table.
        lens_potential_accuracy: CAMB's lensing-potential accuracy (k_eta_max = 18000 x this);
            CAMB's automatic high-accuracy default is ``max(4, (lmax - 1500) / 500)`` = 9 at 6000.
        extra_lmax: CAMB is run for ``lmax + extra_lmax`` and the table truncated. Lensed power
            at ell ~ 6000 is fed by lenses and unlensed power at higher ell, so a short margin
            biases the top of the table: measured against a run to 15000, TT/EE/BB lensed at
            ell = 6000 were off by 1.1 / 1.5 / 2 % with CAMB's own 200-ell margin, 0.6 / 0.9 / 1.1 %
            with 2000 extra, and 2.5e-4 / 2.9e-4 / 1.2e-4 with 4000 extra (the default).
        params: overrides of :data:`PLANCK2018`.

    :func:`main` also runs a reference at higher accuracy and lmax and stores the maximum relative
    differences in the metadata (``convergence``).
    """
    import camb

    p = dict(PLANCK2018, **(params or {}))
    pars = camb.set_params(
        H0=p["H0"], ombh2=p["ombh2"], omch2=p["omch2"], tau=p["tau"], As=p["As"], ns=p["ns"],
        mnu=p["mnu"], omk=p["omk"], r=p["r"],
    )
    pars.set_for_lmax(lmax + extra_lmax, lens_potential_accuracy=lens_potential_accuracy)
    res = camb.get_results(pars)
    meta = {"params": p, "lens_potential_accuracy": lens_potential_accuracy}
    return table_from_results(res, lmax, meta)


def table_from_results(results, lmax: int, meta: dict | None = None) -> dict:
    """The table arrays from a computed ``camb.CAMBdata`` (raw C_ell in uK^2, raw C^phiphi)."""
    import camb

    pars = results.Params
    unl = results.get_unlensed_scalar_cls(lmax=lmax, CMB_unit="muK", raw_cl=True)
    len_ = results.get_lensed_scalar_cls(lmax=lmax, CMB_unit="muK", raw_cl=True)
    pp = results.get_lens_potential_cls(lmax=lmax, CMB_unit="muK", raw_cl=True)[:, 0]
    ell = np.arange(lmax + 1)
    out = {"ell": ell}
    for i, name in enumerate(("TT", "EE", "BB", "TE")):
        out[name] = np.ascontiguousarray(unl[: lmax + 1, i], dtype=np.float64)
        out[name + "_lensed"] = np.ascontiguousarray(len_[: lmax + 1, i], dtype=np.float64)
    out["PP"] = np.ascontiguousarray(pp[: lmax + 1], dtype=np.float64)
    for k, v in out.items():
        if k != "ell":
            v[:2] = 0.0  # monopole and dipole are not part of the spectra
    meta = {
        "description": "Planck 2018 TT,TE,EE+lowE+lensing best fit, CAMB; "
                       "raw C_ell in uK^2, PP = C_ell^phiphi",
        "camb_version": camb.__version__,
        "T_cmb_K": float(pars.TCMB),
        "lmax": lmax,
        "camb_max_l": int(pars.max_l),
        "nonlinear_lensing": "halofit (" + str(pars.NonLinear) + ")",
        "date": datetime.date.today().isoformat(),
        **(meta or {}),
    }
    out["meta"] = np.array(json.dumps(meta, sort_keys=True))
    return out


def write_table(table: dict, path: str | os.PathLike = DEFAULT_PATH) -> Path:
    """Write ``table`` atomically as a compressed ``.npz`` (temporary file + rename)."""
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:  # np.savez appends .npz to any other name
        np.savez_compressed(tmp, **table)
    return path


def convergence(table: dict, ref: dict) -> dict:
    """Max relative difference per spectrum between two tables at 2 <= ell <= lmax (TE relative to
    sqrt(TT EE), BB unlensed skipped: zero for r = 0)."""
    out = {}
    for name in ("TT", "EE", "TE", "TT_lensed", "EE_lensed", "BB_lensed", "TE_lensed", "PP"):
        a, b = table[name][2:], ref[name][2:]
        if name.startswith("TE"):
            suf = name[2:]
            scale = np.sqrt(ref["TT" + suf][2:] * ref["EE" + suf][2:])
        else:
            scale = np.abs(b)
        out[name] = float(np.max(np.abs(a - b) / scale))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_PATH), help="output .npz (default: the shipped table)")
    parser.add_argument("--lmax", type=int, default=6000)
    parser.add_argument("--lens-potential-accuracy", type=int, default=12)
    parser.add_argument("--extra-lmax", type=int, default=4000)
    parser.add_argument("--no-check", action="store_true",
                        help="skip the convergence check (a second CAMB run at higher accuracy and lmax, "
                             "whose max relative differences are stored in the metadata)")
    args = parser.parse_args(argv)
    table = compute_table(args.lmax, args.lens_potential_accuracy, args.extra_lmax)
    if not args.no_check:
        ref = compute_table(args.lmax, args.lens_potential_accuracy + 4, args.extra_lmax + 2000)
        conv = convergence(table, ref)
        meta = json.loads(str(table["meta"]))
        meta["convergence"] = {
            "reference": f"lens_potential_accuracy {args.lens_potential_accuracy + 4}, "
                         f"extra_lmax {args.extra_lmax + 2000}",
            "max_rel_diff": conv,
        }
        table["meta"] = np.array(json.dumps(meta, sort_keys=True))
        for name, v in conv.items():
            print(f"{name:10s} max |rel diff| vs higher accuracy = {v:.1e}")
    path = write_table(table, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
