"""A survey run is a durable job: SIGKILL it mid-run, run the same command again, and every map's
posterior equals an uninterrupted run's (bit for bit) while the maps finished before the kill are
kept, not rewritten; while it runs, a second run into the same folder is refused by the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
from _survey import assert_same_posterior, save, write_script

from bayessky.cli import main

N = 6


def _wait_for(predicate, proc, timeout=120.0):
    t0 = time.monotonic()
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before the test could act: "
                                 f"{proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.05)


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, capsys):
    rng = np.random.default_rng(3)
    script = write_script(tmp_path)
    data = save(tmp_path, "d.npy", rng.normal(1.0, 1.0, size=(N, 5, 5)))
    out = tmp_path / "killed"
    cmd = ["run", script, "--data", data, "--out", str(out), "--block-size", "1", "--no-plots"]
    # each map sleeps 1.2 s in the script's grid(): time to see two maps done, try a second run
    # (whose imports take a second or two) and kill the first
    env = {**os.environ, "BAYESSKY_TEST_SLOW": "1.2", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bayessky", *cmd], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: (out / "records" / "map_001.json").is_file(), proc)
        # (c) the lock: a second run into the same folder is refused while the first one runs
        capsys.readouterr()
        assert main(cmd) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "another bayessky run is writing to" in err[0], err
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = sorted(int(p.stem.split("_")[1]) for p in (out / "records").glob("map_*.json"))
    assert 2 <= len(done) < N, done  # killed mid-run
    before = {i: os.stat(out / f"posterior_{i:03d}.nc") for i in done}
    # the same command again (no sleep: the script's hash is unchanged): the flock died with the
    # killed process, so the stale lock file does not block
    assert main(cmd) == 0
    assert "resuming: " in capsys.readouterr().err
    for i in done:
        now = os.stat(out / f"posterior_{i:03d}.nc")
        assert (now.st_ino, now.st_mtime_ns) == (before[i].st_ino, before[i].st_mtime_ns), i
    ref = tmp_path / "uninterrupted"
    assert main(["run", script, "--data", data, "--out", str(ref), "--no-plots"]) == 0
    for i in range(N):
        assert_same_posterior(out / f"posterior_{i:03d}.nc", ref / f"posterior_{i:03d}.nc")
    assert (out / "summary.csv").read_text() == (ref / "summary.csv").read_text()


def test_a_tampered_output_is_recomputed(tmp_path):
    rng = np.random.default_rng(4)
    script = write_script(tmp_path)
    data = save(tmp_path, "d.npy", rng.normal(1.0, 1.0, size=(2, 4, 4)))
    out = tmp_path / "o"
    cmd = ["run", script, "--data", data, "--out", str(out), "--no-plots"]
    assert main(cmd) == 0
    ref = tmp_path / "ref.nc"
    ref.write_bytes((out / "posterior_001.nc").read_bytes())
    (out / "posterior_001.nc").write_bytes(ref.read_bytes()[:100])  # truncated: its sha256 no longer matches
    keep = os.stat(out / "posterior_000.nc")
    assert main(cmd) == 0
    assert_same_posterior(out / "posterior_001.nc", ref)  # recomputed, same values
    now = os.stat(out / "posterior_000.nc")
    assert (now.st_ino, now.st_mtime_ns) == (keep.st_ino, keep.st_mtime_ns)


def test_combine_pads_traces_of_different_lengths(tmp_path):
    """--combine of MAP runs whose optimisation traces differ in length (L-BFGS stops when it
    converges): one InferenceData, the shorter trace padded with NaN, every value in its place."""
    import arviz as az
    import numpy as np
    import xarray as xr

    from bayessky.survey import combine_posteriors

    paths = {}
    for i, n in ((0, 3), (1, 5)):
        idata = az.from_dict(posterior={"x": np.full((1, 1), float(i))})
        # as the MAP engine writes it: a "step" dimension without coordinates
        idata.add_groups(optimization=xr.Dataset({"loss": ("step", np.arange(n, dtype=float) + 10 * i)}))
        paths[i] = tmp_path / f"posterior_{i:03d}.nc"
        idata.to_netcdf(str(paths[i]))
    out = combine_posteriors(paths, tmp_path / "posterior.nc")
    both = az.from_netcdf(out)
    np.testing.assert_array_equal(both.posterior["x"].values.ravel(), [0.0, 1.0])
    loss = both.optimization["loss"].values
    assert loss.shape == (2, 5)
    np.testing.assert_array_equal(loss[0, :3], [0.0, 1.0, 2.0])
    assert np.isnan(loss[0, 3:]).all()
    np.testing.assert_array_equal(loss[1], [10.0, 11.0, 12.0, 13.0, 14.0])
