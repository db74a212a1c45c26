"""Per-map inputs of ``bayessky run``: masks and noise per map, manifest CSVs, errors, failures,
and a different command into the same folder. References: one-map runs with that map's own mask
and noise (bit-identical), and the conjugate model's closed-form posterior mean."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _survey import assert_same_posterior, closed_form_mean, posterior_values, save, write_script

from bayessky.cli import main

N, H = 3, 6


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("survey_inputs")
    rng = np.random.default_rng(0)
    data = rng.normal(1.0, 1.0, size=(N, H, H))
    masks = (rng.random((N, H, H)) > np.array([0.2, 0.5, 0.8])[:, None, None]).astype(float)
    noise = rng.uniform(0.5, 2.0, size=(N, H, H))
    files = {"script": write_script(tmp), "data": save(tmp, "d.npy", data),
             "masks": save(tmp, "m.npy", masks), "noise": save(tmp, "s.npy", noise)}
    out = tmp / "stack"
    rc = main(["run", files["script"], "--data", files["data"], "--mask", files["masks"], "--noise",
               files["noise"], "--out", str(out), "--no-plots"])
    assert rc == 0
    return tmp, data, masks, noise, files, out


def test_per_map_masks_and_noise_give_each_maps_one_map_posterior(case):
    tmp, data, masks, noise, files, out = case
    for i in range(N):
        one = tmp / f"one{i}"
        rc = main(["run", files["script"], "--data", save(tmp, f"d{i}.npy", data[i]), "--mask",
                   save(tmp, f"m{i}.npy", masks[i]), "--noise", save(tmp, f"s{i}.npy", noise[i]),
                   "--seed", str(i), "--out", str(one), "--no-plots"])  # map i of a stack draws with seed + i
        assert rc == 0
        assert_same_posterior(out / f"posterior_{i:03d}.nc", one / "posterior.nc")
        # and that posterior is the right one: grid quadrature of the conjugate posterior (301 points)
        mean = posterior_values(out / f"posterior_{i:03d}.nc")["__attrs__"]["grid_mean_mu"]
        assert mean == pytest.approx(closed_form_mean(data[i], masks[i], noise[i]), abs=1e-6)
    # the masks differ, so a shared mask would have given other means
    means = [posterior_values(out / f"posterior_{i:03d}.nc")["__attrs__"]["grid_mean_mu"] for i in range(N)]
    assert means[0] != pytest.approx(closed_form_mean(data[0], masks[1], noise[0]), abs=1e-3)
    table = pd.read_csv(out / "summary.csv", index_col=0)
    assert list(table["map"]) == [0, 1, 2]
    meta = json.loads((out / "run.json").read_text())
    assert set(meta["inputs"]) == {"data", "mask", "noise"} and meta["progress"]["done"] == N


def test_manifest_csv_gives_the_stacks_posteriors(case):
    tmp, data, masks, noise, files, out = case
    rows = []
    for i in range(N):
        # relative paths (to the CSV's folder); noise as a file for two rows, a number for one
        noise_cell = f"s{i}.npy" if i < 2 else "0.7"
        save(tmp, f"d{i}.npy", data[i]), save(tmp, f"m{i}.npy", masks[i]), save(tmp, f"s{i}.npy", noise[i])
        rows.append({"data": f"d{i}.npy", "mask": f"m{i}.npy", "noise": noise_cell, "mu": 1.0})
    pd.DataFrame(rows).to_csv(tmp / "manifest.csv", index=False)
    man = tmp / "man"
    assert main(["run", files["script"], "--data", str(tmp / "manifest.csv"), "--out", str(man),
                 "--no-plots"]) == 0
    for i in range(2):
        assert_same_posterior(man / f"posterior_{i:03d}.nc", out / f"posterior_{i:03d}.nc")
    mean = posterior_values(man / "posterior_002.nc")["__attrs__"]["grid_mean_mu"]
    assert mean == pytest.approx(closed_form_mean(data[2], masks[2], 0.7), abs=1e-6)
    assert pd.read_csv(man / "summary.csv", index_col=0)["truth"].tolist() == [1.0] * N


def _err(capsys, argv):
    capsys.readouterr()  # drop what earlier runs printed
    rc = main(argv)
    msg = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(msg) == 1, msg
    return msg[0]


def test_count_and_shape_mismatches_name_the_flag_and_both_shapes(case, tmp_path, capsys):
    _, data, masks, noise, files, _ = case
    base = ["run", files["script"], "--data", files["data"], "--out", str(tmp_path / "o")]
    msg = _err(capsys, base + ["--mask", save(tmp_path, "m2.npy", masks[:2])])
    assert "--mask: shape (2, 6, 6)" in msg and "(6, 6)" in msg and "(3, 6, 6)" in msg, msg
    msg = _err(capsys, base + ["--noise", save(tmp_path, "s5.npy", np.ones((5, 5)))])
    assert "--noise: shape (5, 5)" in msg and "(3, 6, 6)" in msg, msg
    assert "--noise" in _err(capsys, base + ["--noise", "-1"])
    assert "NOISE_OPTION" in _err(capsys, ["run", "hi_parameters", "--data", files["data"], "--noise", "0.1",
                                           "--out", str(tmp_path / "o")])
    pd.DataFrame([{"data": "d0.npy", "mask": "bad_mask.npy"}]).to_csv(tmp_path / "bad.csv", index=False)
    save(tmp_path, "d0.npy", data[0]), save(tmp_path, "bad_mask.npy", np.ones((4, 4)))
    msg = _err(capsys, ["run", files["script"], "--data", str(tmp_path / "bad.csv"),
                        "--out", str(tmp_path / "o")])
    assert "row 1 mask: shape (4, 4)" in msg and "(6, 6)" in msg, msg
    assert not (tmp_path / "o").exists()  # nothing written before the inputs are valid


def test_a_failing_map_is_recorded_and_the_others_complete(case, tmp_path, capsys):
    _, data, masks, noise, files, out = case
    bad = data.copy()
    bad[1, 2, 3] = np.nan  # bad data
    bad = np.concatenate([bad, data[:1] + 1000.0])  # map 3: the model raises (too bright)
    run = tmp_path / "fail"
    rc = main(["run", files["script"], "--data", save(tmp_path, "bad.npy", bad), "--out", str(run),
               "--no-plots"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3 and "2 of 4 map(s) failed" in err[-1], err
    fails = pd.read_csv(run / "failures.csv")
    assert fails["map"].tolist() == [1, 3]
    assert "NaN" in fails["reason"][0] and "too bright" in fails["reason"][1]
    assert json.loads((run / "run.json").read_text())["progress"] == {"done": 2, "failed": 2, "pending": 0}
    for i in (0, 2):  # the others: the conjugate posterior, without mask or noise map
        mean = posterior_values(run / f"posterior_{i:03d}.nc")["__attrs__"]["grid_mean_mu"]
        assert mean == pytest.approx(closed_form_mean(data[i], 1.0, 1.0), abs=1e-6)
    assert not (run / "posterior_001.nc").exists()


def test_a_different_command_is_refused_and_restart_replaces_the_run(case, tmp_path, capsys):
    _, data, masks, noise, files, _ = case
    run = tmp_path / "r"
    assert main(["run", files["script"], "--data", files["data"], "--out", str(run), "--no-plots"]) == 0
    before = (run / "posterior_002.nc").stat().st_mtime_ns
    msg = _err(capsys, ["run", files["script"], "--data", files["data"], "--set", "n=101", "--out", str(run)])
    assert "holds another run (options.n: null before, 101 now)" in msg and "--restart" in msg, msg
    two = save(tmp_path, "two.npy", data[:2])
    msg = _err(capsys, ["run", files["script"], "--data", two, "--out", str(run)])
    assert "inputs.data:" in msg, msg
    assert (run / "posterior_002.nc").stat().st_mtime_ns == before  # the refused runs wrote nothing
    assert main(["run", files["script"], "--data", save(tmp_path, "two.npy", data[:2]), "--set", "n=101",
                 "--out", str(run), "--restart", "--no-plots"]) == 0
    assert not (run / "posterior_002.nc").exists()  # the previous run's third map is gone
    meta = json.loads((run / "run.json").read_text())
    assert meta["n_maps"] == 2 and meta["options"] == {"n": 101}
    mean = posterior_values(run / "posterior_001.nc")["__attrs__"]["grid_mean_mu"]
    # 101 grid points: quadrature error grows, the conjugate mean still within 1e-4
    assert mean == pytest.approx(closed_form_mean(data[1], 1.0, 1.0), abs=1e-4)
