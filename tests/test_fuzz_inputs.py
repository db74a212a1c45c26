"""Fuzzing the boundary checks with Hypothesis: whatever the input (shape, dtype, NaN/inf placement,
mask values, a truncated file, a flag's value), the library either accepts it or refuses it with
its own error type in one line naming the argument -- never a torch/numpy error, a traceback or a
hang. Derandomised (the same examples every run) and bounded, so it is a regular fast test."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

FUZZ = settings(derandomize=True, max_examples=25, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

DTYPES = st.sampled_from([np.float32, np.float64, np.int16, np.int64, np.uint8, np.bool_, np.complex64])
SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -1.0, 1e308, 2.0])


def _one_line(err: BaseException, names: tuple[str, ...]) -> None:
    msg = str(err)
    assert "\n" not in msg, msg
    assert msg.startswith(tuple(f"{n}:" for n in names)), msg


@st.composite
def arrays_with_specials(draw, min_dims=0, max_dims=4, max_side=6):
    """An array of a random shape and dtype, with special values (NaN, inf, 0, <0) at random places."""
    dtype = draw(DTYPES)
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=max_side))
    a = np.asarray(draw(hnp.arrays(np.float64, shape, elements=st.floats(-3, 3))))
    if a.size:
        for _ in range(draw(st.integers(0, 3))):
            a.flat[draw(st.integers(0, a.size - 1))] = draw(SPECIAL)
    with np.errstate(invalid="ignore", over="ignore"):
        return a.astype(dtype) if dtype is not np.complex64 else (a + 1j).astype(dtype)


@FUZZ
@given(a=arrays_with_specials(), cut=st.one_of(st.none(), st.integers(0, 200)),
       suffix=st.sampled_from([".npy", ".npz"]))
def test_load_maps_accepts_or_refuses_by_name(tmp_path_factory, a, cut, suffix):
    from bayessky.data.io import load_maps

    path = tmp_path_factory.mktemp("fuzz") / f"maps{suffix}"
    if suffix == ".npy":
        np.save(path, a)
    else:
        np.savez(path, maps=a)
    if cut is not None:  # a truncated file
        path.write_bytes(path.read_bytes()[:cut])
    try:
        out = load_maps(path, name="--data")
    except (ValueError, TypeError, FileNotFoundError) as err:
        _one_line(err, ("--data",))
        return
    # accepted: 2-D or 3-D, real, non-empty, finite, values unchanged
    assert out.ndim in (2, 3) and out.size and out.dtype.kind == "f" and np.isfinite(out).all()
    np.testing.assert_array_equal(out, a.astype(out.dtype))


@FUZZ
@given(s=arrays_with_specials(min_dims=0, max_dims=3))
def test_gaussian_random_field_checks_its_spectrum(s):
    from bayessky.distributions import GaussianRandomField

    try:
        d = GaussianRandomField(s if s.dtype.kind != "c" else s, validate_args=True)
    except (ValueError, TypeError) as err:
        _one_line(err, ("spectrum", "geometry"))
        return
    x = d.sample()
    assert torch.isfinite(d.log_prob(x)).all()


@FUZZ
@given(loc=arrays_with_specials(min_dims=0, max_dims=3), sigma=arrays_with_specials(min_dims=0, max_dims=3),
       mask=st.one_of(st.none(), arrays_with_specials(min_dims=0, max_dims=3)))
def test_map_normal_checks_its_arguments(loc, sigma, mask):
    from bayessky.distributions import MapNormal

    try:
        d = MapNormal(loc, sigma, mask=mask, validate_args=True)
    except (ValueError, TypeError) as err:
        _one_line(err, ("loc", "sigma", "mask", "sigma/mask"))
        return
    assert torch.isfinite(d.log_prob(d.mean)).all()


INTS = st.one_of(st.integers(-3, 40), st.sampled_from([2**32, 2**40, -(2**31), 10**9]))
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([0.3, 0.8]))


@FUZZ
@given(n=INTS, size=INTS, seed=INTS, om=FLOATS, s8=FLOATS)
def test_simulate_flags_exit_0_or_one_line_2(tmp_path_factory, n, size, seed, om, s8):
    from bayessky.cli import main

    out = tmp_path_factory.mktemp("sim") / "x.npz"
    # FLAG=VALUE: argparse reads a lone "-1e+16" as a flag, not as a value
    argv = ["simulate", "hi-toy", f"--n={n}", f"--size={size}", f"--seed={seed}", f"--omega-m={om!r}",
            f"--sigma-8={s8!r}", "--out", str(out)]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
    text = err.getvalue()
    assert "Traceback" not in text
    if rc == 0:
        assert out.is_file() and 1 <= n and 2 <= size and 0 <= seed < 2**32 and 0.1 <= om <= 0.5
    else:
        assert rc == 2 and not out.exists()
        lines = [ln for ln in text.splitlines() if ": error: " in ln]
        msg = lines[0].split(": error: ", 1)[1] if len(lines) == 1 else ""
        assert msg.startswith(("--", "argument --")), text


@FUZZ
@given(items=st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=4))
def test_set_values_parse_or_refuse_by_name(items):
    from bayessky.cli import CLIError
    from bayessky.cli.run import parse_sets

    try:
        out = parse_sets(items)
    except CLIError as err:
        _one_line(err, ("--set",))
        return
    assert all(k.isidentifier() for k in out)
