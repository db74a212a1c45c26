r"""CMB power spectra: the shipped CAMB table and readers for CAMB and CLASS text output.

All spectra are **raw** :math:`C_\ell` (not :math:`D_\ell = \ell(\ell+1)C_\ell/2\pi`) on the
integer grid ``ell = 0..lmax``: TT/EE/BB/TE in uK^2 and the lensing-potential spectrum
``PP`` = :math:`C_\ell^{\phi\phi}` (dimensionless), ell < 2 set to zero. The default table is
the Planck 2018 best fit made by :mod:`bayessky.physics.make_spectra_table`; CAMB is needed only
to regenerate it.

File conventions read by :func:`load_spectra` (checked against the writers' source code):

=====================================  ==========================================================
CAMB Fortran ``*_scalCls.dat``          ``L TT EE TE PP TP``: D_ell times CMB_outputscale
                                        (uK^2 by default); **PP = l^4 C^phiphi times
                                        CMB_outputscale**, TP = l^3 C^phiT x outputscale
                                        (``results.f90``, "for historical reasons").
CAMB ``*_lensedCls.dat``, ``*_totCls``  ``L TT EE BB TE``: D_ell x outputscale.
CAMB ``*_lenspotentialCls.dat``         ``L TT EE BB TE PP TP EP``: unlensed D_ell x outputscale,
                                        PP = [l(l+1)]^2 C^phiphi / 2 pi (not scaled).
CAMB python ``save_cmb_power_spectra``  ``L TT EE BB TE PP PT PE``: lensed total D_ell in uK^2,
                                        PP = [l(l+1)]^2 C^phiphi / 2 pi.
CLASS ``*_cl.dat`` (``format=class``)   header ``# 1:l 2:TT 3:EE 4:TE 5:BB 6:phiphi 7:TPhi ...``:
                                        every column l(l+1) C_l / 2 pi, dimensionless (in units
                                        of T_cmb^2), phiphi included.
CLASS (``format=camb``)                 ``1:l 2:TT 3:EE 4:BB 5:TE 6:dd 7:dT 8:dE``: D_ell in uK^2,
                                        dd = [l(l+1)]^2 C^phiphi / 2 pi. ``*_cl_lensed.dat`` holds
                                        the lensed spectra in the same layout.
=====================================  ==========================================================
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

__all__ = ["CMBSpectra", "cmb_spectra", "load_spectra", "T_CMB", "DEFAULT_TABLE"]

T_CMB = 2.7255  # K, Fixsen 2009; CAMB's and CLASS's default
DEFAULT_TABLE = Path(__file__).parent / "data" / "planck2018_camb.npz"

_NAMES = ("TT", "EE", "BB", "TE", "TT_lensed", "EE_lensed", "BB_lensed", "TE_lensed", "PP")


@dataclass
class CMBSpectra(Mapping):
    r"""Raw CMB spectra on ``ell = 0..lmax``; attribute or key access (``s.TT`` or ``s["TT"]``).

    Arguments:
        ell: integer multipoles 0..lmax.
        TT, EE, BB, TE: unlensed C_ell in uK^2 (None when not loaded).
        TT_lensed, EE_lensed, BB_lensed, TE_lensed: lensed C_ell in uK^2.
        PP: lensing-potential C_ell^phiphi (dimensionless).
        meta: provenance (source files or CAMB version, parameters, date).

    Iterating yields the names of the spectra present (``ell`` first); ``dict(s)`` gives them.

    Example:
        >>> s = cmb_spectra()
        >>> int(s.ell[-1]), s["TT"].shape
        (6000, (6001,))
        >>> round(float(s.D("TT")[220]))      # first acoustic peak, uK^2
        5741
    """

    ell: np.ndarray
    TT: np.ndarray | None = None
    EE: np.ndarray | None = None
    BB: np.ndarray | None = None
    TE: np.ndarray | None = None
    TT_lensed: np.ndarray | None = None
    EE_lensed: np.ndarray | None = None
    BB_lensed: np.ndarray | None = None
    TE_lensed: np.ndarray | None = None
    PP: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.ell = np.asarray(self.ell, dtype=np.int64)
        n = len(self.ell)
        for name in _NAMES:
            v = getattr(self, name)
            if v is not None:
                v = np.asarray(v, dtype=np.float64)
                if v.shape != (n,):
                    raise ValueError(f"{name}: expected shape ({n},) like ell, got {v.shape}")
                setattr(self, name, v)

    # Mapping over the spectra present
    def __getitem__(self, key: str) -> np.ndarray:
        if key == "ell":
            return self.ell
        if key in _NAMES and getattr(self, key) is not None:
            return getattr(self, key)
        raise KeyError(f"{key!r} (present: {list(self)})")

    def __iter__(self) -> Iterator[str]:
        yield "ell"
        yield from (n for n in _NAMES if getattr(self, n) is not None)

    def __len__(self) -> int:
        return 1 + sum(getattr(self, n) is not None for n in _NAMES)

    def __repr__(self) -> str:
        return f"CMBSpectra(lmax={self.lmax}, spectra={[k for k in self if k != 'ell']})"

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    @property
    def lmax(self) -> int:
        return int(self.ell[-1])

    def D(self, name: str) -> np.ndarray:
        r"""D_ell = ell(ell+1) C_ell / 2 pi of spectrum ``name`` (for PP: [ell(ell+1)]^2 C / 2 pi)."""
        ell = self.ell.astype(np.float64)
        fac = ell * (ell + 1) / (2 * math.pi)
        if name == "PP":
            fac = fac * ell * (ell + 1)
        return fac * self[name]

    def truncate(self, lmax: int) -> CMBSpectra:
        """A copy restricted to ell <= lmax."""
        if not 1 <= lmax <= self.lmax:
            raise ValueError(f"lmax: expected 1 <= lmax <= {self.lmax}, got {lmax}")
        kw = {f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[: lmax + 1])
              for f in fields(self) if f.name not in ("meta",)}
        return CMBSpectra(**kw, meta=dict(self.meta))


def cmb_spectra(path: str | os.PathLike | None = None, lmax: int | None = None) -> CMBSpectra:
    """The CAMB-made table shipped with bayessky (Planck 2018 best fit), or a table written by
    :mod:`~bayessky.physics.make_spectra_table`.

    Arguments:
        path: an ``.npz`` table; default the shipped one.
        lmax: truncate to ``ell <= lmax`` (the shipped table reaches 6000).

    Returns:
        :class:`CMBSpectra` with ell, TT, EE, BB, TE, TT_lensed, EE_lensed, BB_lensed, TE_lensed
        (raw C_ell, uK^2) and PP (C_ell^phiphi); ``meta`` holds CAMB version, parameters, date.
    """
    path = Path(DEFAULT_TABLE if path is None else path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no spectra table at {path}")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("ell", *_NAMES) if k not in z.files]
        if missing:
            raise ValueError(f"path: {path} lacks arrays {missing}")
        kw = {k: np.array(z[k]) for k in ("ell", *_NAMES)}
        meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    meta["source"] = str(path)
    out = CMBSpectra(**kw, meta=meta)
    return out if lmax is None else out.truncate(int(lmax))


# ------------------------------------------------------------------------------------------------
# CAMB / CLASS text files

_CMB_UNITS = ("muK", "uK", "K", "dimensionless")

_CLASS_NAMES = {"TT": "TT", "EE": "EE", "TE": "TE", "BB": "BB", "phiphi": "PP", "dd": "PP",
                "TPhi": "TP", "Ephi": "EP", "dT": "TP", "dE": "EP"}
_CAMB_NAMES = {"TT": "TT", "EE": "EE", "BB": "BB", "TE": "TE", "PP": "PP", "TP": "TP", "PT": "TP",
               "EP": "EP", "PE": "EP"}


def _read_columns(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(comment lines, header column names or [], data array) of a whitespace table."""
    comments = []
    with open(path) as fh:
        for line in fh:
            if line.lstrip().startswith("#"):
                comments.append(line.strip())
            elif line.strip():
                break
    try:
        data = np.loadtxt(path, comments="#", ndmin=2)
    except ValueError as err:
        raise ValueError(f"path: {path} is not a numeric table ({err})") from err
    names: list[str] = []
    for line in comments[::-1]:  # the column header is the last comment line
        body = line.lstrip("#").split()
        if body and all(re.fullmatch(r"\d+:\S+", t) for t in body):  # CLASS "1:l 2:TT ..."
            names = [t.split(":", 1)[1] for t in body]
            break
        if body and body[0] in ("L", "l", "ell"):  # CAMB "#    L    TT    EE ..."
            names = body
            break
    if names and len(names) != data.shape[1]:
        raise ValueError(f"path: header of {path} names {len(names)} columns, the data has {data.shape[1]}")
    return comments, names, data


def _regrid(ell: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put rows on the integer grid 0..lmax (CAMB writes every 100th ell above 10000: interpolate)."""
    ell = np.rint(ell).astype(np.int64)
    if np.any(np.diff(ell) <= 0):
        raise ValueError("path: multipoles must increase strictly down the first column")
    grid = np.arange(int(ell[-1]) + 1)
    out = np.zeros((len(grid), cols.shape[1]))
    inside = grid >= ell[0]
    for j in range(cols.shape[1]):
        out[inside, j] = np.interp(grid[inside], ell, cols[:, j])
    return grid, out


def _guess_lensed(path: Path, kind: str) -> bool | None:
    name = path.name.lower()
    if kind == "class":
        return "lensed" in name
    if "lensedcls" in name or "lensedtotcls" in name:
        return True
    if any(t in name for t in ("scalcls", "lenspotentialcls", "totcls")):
        return False
    return None


def _parse_file(path: Path, kind: str, raw_cl: bool, lensed: bool | None, cmb_unit: str,
                T_cmb: float) -> dict[str, np.ndarray]:
    comments, names, data = _read_columns(path)
    if data.shape[1] < 2:
        raise ValueError(f"path: {path} has fewer than two columns")
    ell_in, cols = data[:, 0], data[:, 1:]
    names = names[1:]
    if kind == "camb":
        if not names:
            by_count = {3: ["TT", "EE", "TE"], 4: ["TT", "EE", "BB", "TE"],
                        5: ["TT", "EE", "TE", "PP", "TP"], 6: ["TT", "EE", "TE", "PP", "TP", "EP"],
                        7: ["TT", "EE", "BB", "TE", "PP", "TP", "EP"]}
            if cols.shape[1] not in by_count:
                raise ValueError(f"path: cannot tell the columns of header-less {path} ({cols.shape[1]})")
            names = by_count[cols.shape[1]]
        table = _CAMB_NAMES
        scal_convention = "PP" in names and "BB" not in names  # *_scalCls.dat: l^4 C x outputscale
        # tscale turns the file's D_ell into uK^2; CMB_outputscale is what CAMB multiplied the
        # dimensionless spectra by, (T_cmb 1e6)^2 for uK^2 output.
        tscale = {"muK": 1.0, "uK": 1.0, "K": 1e12, "dimensionless": (T_cmb * 1e6) ** 2}[cmb_unit]
        outputscale = (T_cmb * 1e6) ** 2 / tscale
    else:
        if not names:
            raise ValueError(f"path: CLASS file {path} lacks its '# 1:l 2:TT ...' header (headers=yes)")
        table = _CLASS_NAMES
        text = " ".join(comments).lower()
        class_format = "dimensionless" in text or "phiphi" in names
        scal_convention = False
        tscale = (T_cmb * 1e6) ** 2 if class_format else 1.0
    if lensed is None:
        lensed = _guess_lensed(path, kind)
        if lensed is None:
            raise ValueError(f"lensed: cannot tell from the name {path.name!r} whether the spectra are "
                             "lensed; pass lensed=True or False")

    ell_grid, cols = _regrid(ell_in, cols)
    ellf = ell_grid.astype(np.float64)
    ll = ellf * (ellf + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        d_to_c = np.where(ellf > 0, 2 * math.pi / ll, 0.0)
    out = {"ell": ell_grid}
    for j, nm in enumerate(names):
        key = table.get(nm)
        if key is None or key in ("TP", "EP"):
            continue  # cross-spectra with phi and extra tracers are not part of CMBSpectra
        c = cols[:, j]
        if key == "PP":
            if raw_cl:
                pp = c
            elif kind == "class" and class_format:
                pp = c * d_to_c  # l(l+1) C / 2 pi
            elif scal_convention:
                with np.errstate(divide="ignore", invalid="ignore"):
                    pp = np.where(ellf > 0, c / outputscale / ellf**4, 0.0)  # l^4 C x outputscale
            else:
                pp = c * d_to_c**2 / (2 * math.pi)  # [l(l+1)]^2 C / 2 pi
            out["PP"] = pp
        else:
            cl = c * (1.0 if raw_cl else d_to_c) * tscale
            out[key + ("_lensed" if lensed else "")] = cl
    for k, v in out.items():
        if k != "ell":
            v[ell_grid < 2] = 0.0
    return out


def load_spectra(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    kind: str = "camb",
    raw_cl: bool = False,
    *,
    lensed: bool | None = None,
    cmb_unit: str = "muK",
    T_cmb: float = T_CMB,
) -> CMBSpectra:
    r"""Read CAMB or CLASS text output into :class:`CMBSpectra` (raw C_ell, uK^2).

    Arguments:
        path: one file or several (e.g. ``[root_scalCls.dat, root_lensedCls.dat]`` or CLASS's
            ``[root_cl.dat, root_cl_lensed.dat]``); their spectra are merged and truncated to the
            smallest lmax among them (a spectrum found in two files must agree, like CLASS's
            phiphi in both ``_cl`` and ``_cl_lensed``). Conventions per file type: module notes.
        kind: ``"camb"`` (Fortran ``*_scalCls``/``*_lensedCls``/``*_lenspotentialCls``/``*_totCls``
            files or python ``save_cmb_power_spectra``) or ``"class"`` (``*_cl.dat`` /
            ``*_cl_lensed.dat`` with its header, ``format=class`` or ``format=camb``).
        raw_cl: the columns hold raw C_ell (and raw C^phiphi) instead of the writers' D_ell
            conventions (e.g. a ``np.savetxt`` of CAMB's ``raw_cl=True`` arrays).
        lensed: whether the file's TT/EE/BB/TE are lensed; default: from the file name
            (``lensedCls``, ``_cl_lensed`` -> lensed; ``scalCls``, ``lenspotentialCls``, ``totCls``,
            CLASS ``_cl`` -> unlensed).
        cmb_unit: CAMB output scale: ``"muK"`` (CAMB's default ``CMB_outputscale`` = (T_cmb 1e6)^2,
            python ``CMB_unit='muK'``), ``"K"``, or ``"dimensionless"`` (``CMB_outputscale = 1``).
            CLASS files carry their unit in the header.
        T_cmb: CMB temperature in K used to convert dimensionless spectra to uK^2.

    Returns:
        :class:`CMBSpectra`; spectra absent from the files are None.
    """
    if kind not in ("camb", "class"):
        raise ValueError(f"kind: expected 'camb' or 'class', got {kind!r}")
    if cmb_unit not in _CMB_UNITS:
        raise ValueError(f"cmb_unit: expected one of {list(_CMB_UNITS)}, got {cmb_unit!r}")
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        raise ValueError("path: expected at least one file")
    merged: dict[str, np.ndarray] = {}
    lmax = None
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise FileNotFoundError(f"path: no file {p}")
        got = _parse_file(p, kind, raw_cl, lensed, cmb_unit, float(T_cmb))
        lmax = got["ell"][-1] if lmax is None else min(lmax, got["ell"][-1])
        for k, v in got.items():
            if k == "ell":
                continue
            if k in merged:
                # CLASS repeats phiphi in *_cl_lensed.dat; the same spectrum twice is fine, two
                # different ones are not.
                n = min(len(v), len(merged[k]))
                if not np.allclose(v[:n], merged[k][:n], rtol=1e-4, atol=0):
                    raise ValueError(f"path: spectrum {k} differs between the files")
                continue
            merged[k] = v
    ell = np.arange(int(lmax) + 1)
    kw = {k: v[: lmax + 1] for k, v in merged.items()}
    meta = {"source": [str(p) for p in paths], "kind": kind, "raw_cl": raw_cl, "cmb_unit": cmb_unit,
            "T_cmb_K": float(T_cmb)}
    return CMBSpectra(ell=ell, **kw, meta=meta)
