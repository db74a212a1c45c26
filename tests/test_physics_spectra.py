"""CMB spectra: the shipped table against a fresh CAMB run and published Planck numbers; the
CAMB/CLASS readers against files written here in the writers' exact formats (from their source:
CAMB fortran/results.f90 output_cl_files / output_lens_pot_files, CLASS output.c)."""

import json
import math

import numpy as np
import pytest

from bayessky.physics import CMBSpectra, cmb_spectra, load_spectra
from bayessky.physics.make_spectra_table import PLANCK2018, table_from_results, write_table

T0 = 2.7255
FACT = (T0 * 1e6) ** 2  # CAMB's default CMB_outputscale, 7.42835e12
LMAX_FILE = 300
LENSED = ["TT_lensed", "EE_lensed", "BB_lensed", "TE_lensed"]


@pytest.fixture(scope="module")
def truth():
    return cmb_spectra(lmax=LMAX_FILE)


def dl(c, ell, power=1):
    """[l(l+1)]^power C / 2 pi, computed directly."""
    ell = np.asarray(ell, dtype=float)
    return (ell * (ell + 1)) ** power * c / (2 * math.pi)


# ------------------------------------------------------------------------------------------------
# the shipped table


def test_shipped_table_contents_and_published_numbers():
    s = cmb_spectra()
    names = ["TT", "EE", "BB", "TE", "TT_lensed", "EE_lensed", "BB_lensed", "TE_lensed", "PP"]
    assert list(s) == ["ell", *names]
    np.testing.assert_array_equal(s.ell, np.arange(6001))
    for k in s:
        if k != "ell":
            assert s[k].shape == (6001,) and np.all(s[k][:2] == 0) and np.isfinite(s[k]).all()
            assert s[k] is getattr(s, k)
    assert np.all(s.BB == 0)  # r = 0: no unlensed B modes
    for k in ("TT", "EE", "TT_lensed", "EE_lensed", "BB_lensed", "PP"):
        assert np.all(s[k][2:] > 0), k
    m = s.meta
    assert m["camb_version"].startswith("2.") and m["lmax"] == 6000 and len(m["date"]) == 10
    for k, v in PLANCK2018.items():
        assert m["params"][k] == v
    assert {"H0": 67.36, "ombh2": 0.02237, "omch2": 0.12, "tau": 0.0544, "As": 2.1e-9, "ns": 0.9649,
            "mnu": 0.06}.items() <= m["params"].items()
    assert max(m["convergence"]["max_rel_diff"].values()) < 1e-3  # vs higher-accuracy CAMB run
    # Planck 2018 best fit (arXiv:1807.06205 Fig. 1, PLA best-fit spectrum): first TT peak at
    # ell ~ 220 with D ~ 5750 uK^2 (raw C -> D converted by hand here).
    d_tt = dl(s.TT_lensed, s.ell)
    peak = 150 + int(np.argmax(d_tt[150:300]))
    assert 215 <= peak <= 225 and 5600 < d_tt[peak] < 5900
    # lensing potential: [L(L+1)]^2 C^pp / 2 pi peaks at ~1.3e-7 near L ~ 40-60 (Planck 2018 VIII)
    d_pp = dl(s.PP, s.ell, power=2)
    assert 20 < int(np.argmax(d_pp)) < 80 and 1.1e-7 < d_pp.max() < 1.5e-7
    # lensing smooths the acoustic peaks: lensed < unlensed at the third peak, > at the next trough
    d_unl = dl(s.TT, s.ell)
    peak3, trough = 700 + int(np.argmax(d_unl[700:900])), 900 + int(np.argmin(d_unl[900:1100]))
    assert s.TT_lensed[peak3] < s.TT[peak3] and s.TT_lensed[trough] > s.TT[trough]
    # lensing B modes: D_ell^BB ~ 0.1 uK^2 around ell ~ 1000
    assert 0.05 < dl(s.BB_lensed, s.ell)[1000] < 0.15


@pytest.fixture(scope="module")
def camb_run():
    camb = pytest.importorskip("camb")
    pars = camb.CAMBparams()  # built independently of make_spectra_table's camb.set_params call
    pars.set_cosmology(H0=67.36, ombh2=0.02237, omch2=0.1200, tau=0.0544, mnu=0.06)
    pars.InitPower.set_params(As=2.100e-9, ns=0.9649)
    pars.set_for_lmax(2200, lens_potential_accuracy=1)
    return camb.get_results(pars)


def test_table_conversion_and_shipped_table_vs_fresh_camb(camb_run, tmp_path):
    lmax = 2000
    d = camb_run.get_cmb_power_spectra(CMB_unit="muK", lmax=lmax)  # D_ell, CAMB's default output
    ell = np.arange(lmax + 1)
    to_c = np.zeros(lmax + 1)
    to_c[2:] = 2 * math.pi / (ell[2:] * (ell[2:] + 1))
    ref = {}
    for i, name in enumerate(("TT", "EE", "BB", "TE")):
        ref[name] = d["unlensed_scalar"][:, i] * to_c
        ref[name + "_lensed"] = d["lensed_scalar"][:, i] * to_c
    ref["PP"] = d["lens_potential"][:, 0] * to_c**2 / (2 * math.pi)  # [L(L+1)]^2 C / 2 pi -> C

    # make_spectra_table's conversion of the same CAMB results, written and read back
    path = write_table(table_from_results(camb_run, lmax, {"note": "test"}), tmp_path / "t.npz")
    small = cmb_spectra(path)
    assert small.meta["note"] == "test" and small.lmax == lmax
    for k, v in ref.items():
        np.testing.assert_allclose(small[k], v, rtol=1e-12, atol=0, err_msg=k)

    # the shipped high-accuracy table against this quick run (lens_potential_accuracy 1, whose
    # truncated k range biases high-L lensing): measured max differences 8e-5 (TT), 6e-4 (TT
    # lensed), 9e-4 (EE lensed), 2e-2 (BB lensed), PP 1.8e-3 at L < 500 but 5 % at L = 2000.
    ship = cmb_spectra(lmax=lmax)
    tol = {"TT": 3e-4, "EE": 3e-4, "TE": 3e-4, "TT_lensed": 2e-3, "EE_lensed": 2e-3, "TE_lensed": 2e-3,
           "BB_lensed": 4e-2, "PP": 4e-3}
    for k, t in tol.items():
        scale = np.sqrt(ref["TT" + k[2:]] * ref["EE" + k[2:]]) if k.startswith("TE") else np.abs(ref[k])
        hi = 501 if k == "PP" else lmax + 1
        err = np.abs(ship[k][2:hi] - ref[k][2:hi]) / scale[2:hi]
        assert err.max() < t, (k, err.max())


def test_cmb_spectra_api(tmp_path):
    s = cmb_spectra(lmax=1000)
    assert s.lmax == 1000 and len(s.TT) == 1001 and len(s) == 10
    ell = np.arange(2, 1001)
    np.testing.assert_allclose(s.D("TT")[2:], s.TT[2:] * ell * (ell + 1) / (2 * np.pi))
    assert set(dict(s)) == set(s)
    t = s.truncate(10)
    assert t.lmax == 10 and list(t) == list(s)
    np.testing.assert_array_equal(t.PP, s.PP[:11])
    with pytest.raises(KeyError):
        s["XX"]
    with pytest.raises(ValueError, match="TT"):
        CMBSpectra(ell=np.arange(5), TT=np.zeros(4))
    with pytest.raises(FileNotFoundError, match="path"):
        cmb_spectra(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", ell=np.arange(3))
    with pytest.raises(ValueError, match="lacks"):
        cmb_spectra(tmp_path / "bad.npz")


# ------------------------------------------------------------------------------------------------
# writers in the codes' formats


def fortran_e(x, w=15, d=6):
    """Fortran Ew.d (gfortran): 0.dddddd E+xx, right-justified."""
    if x == 0:
        body = "0." + "0" * d + "E+00"
    else:
        e = int(math.floor(math.log10(abs(x)))) + 1
        m = abs(x) / 10.0**e
        digits = round(m * 10**d)
        if digits >= 10**d:
            digits //= 10
            e += 1
        body = f"0.{digits:0{d}d}E{e:+03d}"
    return (("-" if x < 0 else "") + body).rjust(w)


def write_camb_fortran(path, names, columns, ells, header=True):
    with open(path, "w") as fh:
        if header:  # open_file_header: '("#",1A5," ",*(A15))' with name tags padded to 8
            fh.write("#" + "L".rjust(5) + " " + "".join(f"{n:<8}".rjust(15) for n in names) + "\n")
        for i, ell in enumerate(ells):
            lab = f"{ell:6d}" if ell <= 10000 else fortran_e(float(ell), 15, 5)
            fh.write(lab + "".join(fortran_e(c[i]) for c in columns) + "\n")


def write_class(path, names, columns, ells, fmt="class", lensed=False):
    first = ("total lensed" if lensed else "total") + " [l(l+1)/2pi] C_l's"
    lmax = ells[-1]
    lines = [f"# dimensionless {first}" if fmt == "class" else f"# {first} (units: [microK]^2)",
             f"# for l=2 to {lmax}, i.e. number of multipoles equal to {lmax - 1}", "#"]
    if fmt == "class":
        lines.append("# -> if you prefer output in CAMB/HealPix/LensPix units/order, set 'format' to 'camb' "
                     "in input file")
    lines.append("# -> if you don't want to see such a header, set 'headers' to 'no' in input file")
    phi_line = {"class": "# -> for CMB lensing (phi), these are C_l^phi-phi for the lensing potential.",
                "camb": "# -> for CMB lensing (d), these are C_l^dd for the deflection field."}
    lines.append(phi_line[fmt])
    lines += ["#    Remember the conversion factors:", "#    C_l^dd (deflection) = l(l+1) C_l^phi-phi",
              "#    C_l^gg (shear/convergence) = 1/4 (l(l+1))^2 C_l^phi-phi", "#"]
    title = "# 1:l " + "".join(f"{'':>{9}}{j + 2:2d}:{n:<13} " for j, n in enumerate(names))
    with open(path, "w") as fh:
        fh.write("\n".join(lines + [title]) + "\n")
        for i, ell in enumerate(ells):  # output_one_line_of_cl: " %4d " then "%*.*e " columns
            fh.write(f" {ell:4d} " + "".join(f"{c[i]:24.12e} " for c in columns) + "\n")


def assert_spectra(loaded, truth, keys, rtol):
    for k in keys:
        np.testing.assert_allclose(loaded[k][2:], truth[k][2:], rtol=rtol, atol=0, err_msg=k)
        assert np.all(loaded[k][:2] == 0)


def test_camb_fortran_scalcls_and_lensedcls(truth, tmp_path):
    ell = np.arange(2, LMAX_FILE + 1)
    t = {k: truth[k][2:] for k in truth if k != "ell"}
    # scalCls: D_ell x CMB_outputscale and PP = l^4 C^pp x CMB_outputscale (results.f90 comment:
    # "Cl_scalar and scalar_output_file numbers are instead l^4 C_phi and l^3 C_phi")
    scal = [dl(t["TT"], ell), dl(t["EE"], ell), dl(t["TE"], ell), FACT * ell**4.0 * t["PP"],
            np.full(ell.shape, 1e-3)]
    write_camb_fortran(tmp_path / "test_scalCls.dat", ["TT", "EE", "TE", "PP", "TP"], scal, ell)
    lensed = [dl(t[k + "_lensed"], ell) for k in ("TT", "EE", "BB", "TE")]
    write_camb_fortran(tmp_path / "test_lensedCls.dat", ["TT", "EE", "BB", "TE"], lensed, ell)
    s = load_spectra([tmp_path / "test_scalCls.dat", tmp_path / "test_lensedCls.dat"])
    assert s.lmax == LMAX_FILE and s.BB is None
    # E15.6 keeps 6 significant digits: relative rounding <= 5e-6
    assert_spectra(s, truth, ["TT", "EE", "TE", "PP", *LENSED], 6e-6)

    # the same without headers (output_file_headers = F): columns from their number
    write_camb_fortran(tmp_path / "nohead_scalCls.dat", [], scal, ell, header=False)
    assert_spectra(load_spectra(tmp_path / "nohead_scalCls.dat"), truth, ["TT", "EE", "TE", "PP"], 6e-6)

    # dimensionless output (CMB_outputscale = 1): D / T^2 in (uK)^2 units removed, PP = l^4 C
    dimless = [c / FACT for c in scal[:3]] + [ell**4.0 * t["PP"], scal[4]]
    write_camb_fortran(tmp_path / "dim_scalCls.dat", ["TT", "EE", "TE", "PP", "TP"], dimless, ell)
    s = load_spectra(tmp_path / "dim_scalCls.dat", cmb_unit="dimensionless")
    assert_spectra(s, truth, ["TT", "EE", "TE", "PP"], 6e-6)


def test_camb_lenspotential_and_sparse_high_ell(truth, tmp_path):
    ell = np.arange(2, LMAX_FILE + 1)
    t = {k: truth[k][2:] for k in truth if k != "ell"}
    # lenspotentialCls: unlensed D_ell x outputscale, PP = [l(l+1)]^2 C / 2 pi (not scaled)
    cols = [dl(t[k], ell) for k in ("TT", "EE", "BB", "TE")] + [dl(t["PP"], ell, 2), 0 * ell, 0 * ell]
    names = ["TT", "EE", "BB", "TE", "PP", "TP", "EP"]
    write_camb_fortran(tmp_path / "x_lenspotentialCls.dat", names, cols, ell)
    s = load_spectra(tmp_path / "x_lenspotentialCls.dat")
    assert_spectra(s, truth, ["TT", "EE", "TE", "PP"], 6e-6)
    assert np.all(s.BB == 0) and s.TT_lensed is None

    # above ell = 10000 CAMB writes every 100th ell with a real-valued label: linear interpolation
    ells = np.concatenate([np.arange(2, 10001), np.arange(10100, 10501, 100)])
    lin = 1.0 + 0.5 * ells  # linear in ell: interpolation is exact
    write_camb_fortran(tmp_path / "hi_lensedCls.dat", ["TT", "EE", "BB", "TE"], [lin] * 4, ells)
    s = load_spectra(tmp_path / "hi_lensedCls.dat")
    e = s.ell[2:].astype(float)
    np.testing.assert_allclose(s.TT_lensed[2:], (1.0 + 0.5 * e) * 2 * np.pi / (e * (e + 1)), rtol=1e-6)


def test_camb_python_saved_file(truth, tmp_path):
    camb = pytest.importorskip("camb")
    ell = np.arange(LMAX_FILE + 1)
    arr = np.zeros((LMAX_FILE + 1, 7))
    for j, k in enumerate(("TT_lensed", "EE_lensed", "BB_lensed", "TE_lensed")):
        arr[:, j] = dl(truth[k], ell)
    arr[:, 4] = dl(truth.PP, ell, 2)
    # CAMB's own writer, as used by CAMBdata.save_cmb_power_spectra (L TT EE BB TE PP PT PE)
    camb.results.save_cmb_power_array(str(tmp_path / "cls.dat"), arr, "TT EE BB TE PP PT PE")
    with pytest.raises(ValueError, match="lensed"):
        load_spectra(tmp_path / "cls.dat")
    s = load_spectra(tmp_path / "cls.dat", lensed=True)
    assert_spectra(s, truth, ["TT_lensed", "EE_lensed", "BB_lensed", "TE_lensed", "PP"], 1e-6)

    # raw C_ell columns (np.savetxt of get_cmb_power_spectra(raw_cl=True))
    raw = np.column_stack([ell] + [truth[k] for k in ("TT_lensed", "EE_lensed", "BB_lensed", "TE_lensed")])
    np.savetxt(tmp_path / "raw_lensedCls.dat", raw, header="L TT EE BB TE")
    s = load_spectra(tmp_path / "raw_lensedCls.dat", raw_cl=True)
    assert_spectra(s, truth, ["TT_lensed", "EE_lensed", "BB_lensed", "TE_lensed"], 1e-12)


@pytest.mark.parametrize("fmt", ["class", "camb"])
def test_class_files(truth, tmp_path, fmt):
    ell = np.arange(2, LMAX_FILE + 1)
    t = {k: truth[k][2:] for k in truth if k != "ell"}
    scale = 1.0 / FACT if fmt == "class" else 1.0  # format=class: dimensionless (units of T_cmb^2)
    for lensed in (False, True):
        suf = "_lensed" if lensed else ""
        tt, ee, bb, te = (dl(t.get(k + suf, 0 * ell), ell) * scale for k in ("TT", "EE", "BB", "TE"))
        if fmt == "class":  # 1:l 2:TT 3:EE 4:TE 5:BB 6:phiphi 7:TPhi 8:Ephi, all l(l+1)C/2pi
            names = ["TT", "EE", "TE", "BB", "phiphi", "TPhi", "Ephi"]
            cols = [tt, ee, te, bb, dl(t["PP"], ell), 0 * ell, 0 * ell]
        else:  # 1:l 2:TT 3:EE 4:BB 5:TE 6:dd 7:dT 8:dE, dd = [l(l+1)]^2 C / 2 pi
            names = ["TT", "EE", "BB", "TE", "dd", "dT", "dE"]
            cols = [tt, ee, bb, te, dl(t["PP"], ell, 2), 0 * ell, 0 * ell]
        write_class(tmp_path / f"run00_cl{suf}.dat", names, cols, ell, fmt=fmt, lensed=lensed)
    s = load_spectra([tmp_path / "run00_cl.dat", tmp_path / "run00_cl_lensed.dat"], kind="class")
    assert_spectra(s, truth, ["TT", "EE", "TE", "PP", *LENSED], 1e-10)
    # a CLASS file without its header cannot be read unambiguously
    np.savetxt(tmp_path / "nohead_cl.dat", np.column_stack([ell, *cols]))
    with pytest.raises(ValueError, match="header"):
        load_spectra(tmp_path / "nohead_cl.dat", kind="class")


def test_load_spectra_errors(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        load_spectra(tmp_path / "x.dat", kind="cosmosis")
    with pytest.raises(FileNotFoundError, match="path"):
        load_spectra(tmp_path / "missing_scalCls.dat")
    with pytest.raises(ValueError, match="cmb_unit"):
        load_spectra(tmp_path / "x.dat", cmb_unit="mK")
    (tmp_path / "junk_lensedCls.dat").write_text("# L TT\nhello world\n")
    with pytest.raises(ValueError, match="path"):
        load_spectra(tmp_path / "junk_lensedCls.dat")


def test_meta_is_json_not_pickle():
    with np.load(cmb_spectra().meta["source"], allow_pickle=False) as z:
        assert z["meta"].dtype.kind == "U"
        json.loads(str(z["meta"]))
