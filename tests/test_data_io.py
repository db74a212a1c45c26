"""Map file reading: npy / npz / FITS / HEALPix round trips and one-line refusals."""

import healpy as hp
import numpy as np
import pytest
from astropy.io import fits

from bayessky.data.io import load_healpix, load_maps

RNG = np.random.default_rng(4)


def _err(exc, fn):
    with pytest.raises(exc) as info:
        fn()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_npy_npz_round_trip(tmp_path):
    a = RNG.normal(size=(3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    out = load_maps(tmp_path / "a.npy")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, a)
    np.savez(tmp_path / "one.npz", x=a[0])
    np.testing.assert_array_equal(load_maps(tmp_path / "one.npz"), a[0])
    np.savez(tmp_path / "many.npz", maps=a, params=np.ones((3, 2)))
    np.testing.assert_array_equal(load_maps(tmp_path / "many.npz"), a)
    np.savez(tmp_path / "keys.npz", x=a, y=2 * a)
    np.testing.assert_array_equal(load_maps(tmp_path / "keys.npz", key="y"), 2 * a)
    assert "available: x, y" in _err(ValueError, lambda: load_maps(tmp_path / "keys.npz", key="z"))
    assert "key=" in _err(ValueError, lambda: load_maps(tmp_path / "keys.npz"))
    np.save(tmp_path / "int.npy", np.arange(16).reshape(4, 4))
    assert load_maps(tmp_path / "int.npy").dtype == np.float64


def test_fits_image_round_trip(tmp_path):
    a = RNG.normal(size=(2, 6, 5))
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(a, name="MAPS")]).writeto(tmp_path / "a.fits")
    out = load_maps(tmp_path / "a.fits")  # first image HDU with data
    np.testing.assert_array_equal(out, a)
    assert out.dtype.byteorder in ("=", "<", "|")
    np.testing.assert_array_equal(load_maps(tmp_path / "a.fits", key="MAPS"), a)
    assert "HDU" in _err(ValueError, lambda: load_maps(tmp_path / "a.fits", key="NOPE"))


def test_healpix(tmp_path):
    nside = 8
    m = RNG.normal(size=hp.nside2npix(nside))
    hp.write_map(tmp_path / "nest.fits", m, nest=True, dtype=np.float64)
    # reference: healpy's own reordering of the NESTED pixels we wrote
    np.testing.assert_allclose(load_healpix(tmp_path / "nest.fits"), hp.reorder(m, n2r=True), rtol=0)
    assert "HEALPix" in _err(ValueError, lambda: load_maps(tmp_path / "nest.fits"))


def test_refusals(tmp_path):
    assert "no such file" in _err(FileNotFoundError, lambda: load_maps(tmp_path / "missing.npy"))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert "unpickle" in _err(ValueError, lambda: load_maps(tmp_path / "obj.npy"))
    np.save(tmp_path / "vec.npy", np.zeros(5))
    assert "shape (5,)" in _err(ValueError, lambda: load_maps(tmp_path / "vec.npy"))
    b = np.ones((2, 4, 4))
    b[0, 1, 1] = b[1, 2, 2] = np.nan
    b[1, 0, 0] = np.inf
    np.save(tmp_path / "nan.npy", b)
    assert "2 NaN and 1 inf" in _err(ValueError, lambda: load_maps(tmp_path / "nan.npy"))
    assert np.isnan(load_maps(tmp_path / "nan.npy", allow_nan=True)).sum() == 2
    np.save(tmp_path / "neg.npy", -np.ones((4, 4)))
    assert "<= 0" in _err(ValueError, lambda: load_maps(tmp_path / "neg.npy", positive=True))
    raw = (tmp_path / "a.npy")
    np.save(raw, np.ones((4, 64, 64)))
    (tmp_path / "trunc.npy").write_bytes(raw.read_bytes()[:1000])
    assert "trunc.npy" in _err(ValueError, lambda: load_maps(tmp_path / "trunc.npy"))
    (tmp_path / "x.png").write_bytes(b"123")
    assert "unsupported" in _err(ValueError, lambda: load_maps(tmp_path / "x.png"))
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 garbage")
    assert "bad.npz" in _err(ValueError, lambda: load_maps(tmp_path / "bad.npz"))


@pytest.mark.parametrize("shape", [(0, 8, 8), (8, 0), (0, 0)])
def test_empty_arrays_refused(tmp_path, shape):
    from bayessky.data.io import check_map_array

    path = tmp_path / "empty.npy"
    np.save(path, np.ones(shape))
    msg = _err(ValueError, lambda: load_maps(path, name="--data"))
    assert msg.startswith("--data:") and "empty" in msg and "empty.npy" in msg
    assert _err(ValueError, lambda: check_map_array(np.ones(shape), "maps")).startswith("maps: empty")


def test_boundary_messages_name_the_argument(tmp_path):
    # a non-zip .npz used to be reported as "holds Python objects; refusing to unpickle"
    (tmp_path / "text.npz").write_bytes(b"hello")
    msg = _err(ValueError, lambda: load_maps(tmp_path / "text.npz"))
    assert msg.startswith("data:") and "not a zip" in msg and "unpickle" not in msg, msg
    msg = _err(TypeError, lambda: load_maps(None))
    assert msg.startswith("data:") and "NoneType" in msg, msg
    m = np.ones(hp.nside2npix(4))
    m[3] = np.inf
    hp.write_map(tmp_path / "inf.fits", m, overwrite=True, dtype=np.float64)
    msg = _err(ValueError, lambda: load_healpix(tmp_path / "inf.fits"))
    assert msg.startswith("data:") and "0 NaN and 1 inf" in msg, msg
