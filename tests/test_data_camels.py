"""CAMELS loader on small files written in exactly the CMD and HIGlow layouts."""

import numpy as np
import pytest

from bayessky.data.camels import CAMELS_PARAM_NAMES, load_camels, load_params, split_by_simulation

N_SIMS, PER, H = 4, 15, 16


def _cmd_files(tmp_path, n_sims=N_SIMS, h=H, nan=False, zero=False):
    rng = np.random.default_rng(1)
    maps = (10 ** rng.uniform(6, 10, size=(n_sims * PER, h, h))).astype(np.float32)
    if nan:
        maps[3, 2, 2] = np.nan
        maps[20, 0, 1] = np.nan
    if zero:
        maps[7, 1, 1] = 0.0
    params = np.column_stack([rng.uniform(lo, hi, n_sims) for lo, hi in
                              [(0.1, 0.5), (0.6, 1.0), (0.25, 4), (0.25, 4), (0.5, 2), (0.5, 2)]])
    mp = tmp_path / "Maps_HI_IllustrisTNG_LH_z=0.00.npy"
    pp = tmp_path / "params_LH_IllustrisTNG.txt"
    np.save(mp, maps)
    np.savetxt(pp, params)
    return mp, pp, maps, np.loadtxt(pp)


def _higlow_files(tmp_path, n_sims=3, h=8):
    rng = np.random.default_rng(2)
    maps = rng.uniform(1, 2, size=(n_sims * PER, h, h)).astype(np.float32)
    params = rng.uniform(0.1, 1, size=(n_sims, 6)).round(5)
    mp = tmp_path / "Images_HI_IllustrisTNG_z=5.99.npy"
    pp = tmp_path / "CAMELs_params.csv"
    np.save(mp, maps)
    lines = ["Name,,,,,,,seed"] + [f"LH_{k}," + ",".join(repr(float(v)) for v in params[k]) + f",{k}"
                                   for k in range(n_sims)]
    pp.write_text("\n".join(lines) + "\n")
    return mp, pp, maps, params


def test_cmd_layout_full(tmp_path):
    mp, pp, maps, params = _cmd_files(tmp_path)
    d = load_camels(mp, pp)
    np.testing.assert_array_equal(d.maps, maps)
    assert isinstance(d.maps, np.memmap)  # nothing to copy: stays memory-mapped
    for i in range(maps.shape[0]):  # the documented rule: map i uses row i // 15
        assert d.sim_index[i] == i // 15
        np.testing.assert_array_equal(d.params[i], params[i // 15])
    assert d.names == CAMELS_PARAM_NAMES


def test_cut_gives_tiles_of_the_same_simulation(tmp_path):
    mp, pp, maps, params = _cmd_files(tmp_path)
    d = load_camels(mp, pp, size=8, mode="cut")
    assert d.maps.shape == (maps.shape[0] * 4, 8, 8)
    k = 0
    for i in range(maps.shape[0]):  # brute force: explicit slices, row-major tiles
        for a in range(2):
            for b in range(2):
                np.testing.assert_array_equal(d.maps[k], maps[i, 8 * a:8 * a + 8, 8 * b:8 * b + 8])
                assert d.sim_index[k] == i // 15
                np.testing.assert_array_equal(d.params[k], params[i // 15])
                k += 1


def test_downsample_is_block_mean(tmp_path):
    mp, pp, maps, _ = _cmd_files(tmp_path)
    d = load_camels(mp, pp, size=4, mode="downsample")
    ref = np.empty((maps.shape[0], 4, 4))
    for i in range(maps.shape[0]):
        for a in range(4):
            for b in range(4):
                ref[i, a, b] = maps[i, 4 * a:4 * a + 4, 4 * b:4 * b + 4].astype(np.float64).sum() / 16
    # float64 accumulation then float32 storage: 1 ulp of float32
    np.testing.assert_allclose(d.maps, ref, rtol=2e-7)
    np.testing.assert_array_equal(d.sim_index, np.arange(maps.shape[0]) // 15)


def test_simulation_subset(tmp_path):
    mp, pp, maps, params = _cmd_files(tmp_path)
    d = load_camels(mp, pp, sims=[2, 0], mmap=False)
    np.testing.assert_array_equal(d.maps[:15], maps[30:45])
    np.testing.assert_array_equal(d.maps[15:], maps[:15])
    np.testing.assert_array_equal(d.params[0], params[2])
    np.testing.assert_array_equal(d.sim_index, np.repeat([2, 0], 15))


def test_higlow_layout(tmp_path):
    mp, pp, maps, params = _higlow_files(tmp_path)
    d = load_camels(mp, pp)
    np.testing.assert_array_equal(d.maps, maps)
    np.testing.assert_array_equal(d.params, params[np.arange(maps.shape[0]) // 15])  # seed column dropped
    assert d.names == CAMELS_PARAM_NAMES
    p, names = load_params(pp)
    assert p.shape == (3, 6)


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def test_validation_errors(tmp_path):
    mp, pp, maps, params = _cmd_files(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        load_camels(tmp_path / "nope.npy", pp)
    assert "maps" in _one_line(e)
    bad = tmp_path / "params_short.txt"
    np.savetxt(bad, params[:3])
    with pytest.raises(ValueError) as e:
        load_camels(mp, bad)
    assert "60 maps" in _one_line(e) and "45" in _one_line(e)
    with pytest.raises(ValueError) as e:
        load_camels(mp, pp, size=5)
    assert "size" in _one_line(e)
    with pytest.raises(ValueError) as e:
        load_camels(mp, pp, mode="zoom")
    assert "mode" in _one_line(e)
    with pytest.raises(ValueError) as e:
        load_camels(mp, pp, sims=[4])
    assert "sims" in _one_line(e)


def test_nan_and_nonpositive_refused(tmp_path):
    mp, pp, *_ = _cmd_files(tmp_path, nan=True)
    with pytest.raises(ValueError) as e:
        load_camels(mp, pp)
    assert "2 NaN" in _one_line(e)
    sub = tmp_path / "z"
    sub.mkdir()
    mp, pp, *_ = _cmd_files(sub, zero=True)
    load_camels(mp, pp)  # zeros are fine without a log transform
    with pytest.raises(ValueError) as e:
        load_camels(mp, pp, positive=True)
    assert "1 values are <= 0" in _one_line(e)


def test_split_keeps_simulations_together():
    sim = np.repeat(np.arange(20), 15 * 4)  # 20 sims, 15 maps, 4 tiles each
    parts = split_by_simulation(sim, (0.8, 0.1, 0.1), seed=3)
    assert [len(np.unique(sim[p])) for p in parts] == [16, 2, 2]
    sets = [set(sim[p]) for p in parts]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(sim.size))
    again = split_by_simulation(sim, (0.8, 0.1, 0.1), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = split_by_simulation(sim, (0.8, 0.1, 0.1), seed=4)
    assert not np.array_equal(parts[1], other[1])
    # a tiny set still gives every requested split a simulation
    assert [len(p) for p in split_by_simulation(np.arange(3), (0.8, 0.1, 0.1))] == [1, 1, 1]
    with pytest.raises(ValueError, match="fractions"):
        split_by_simulation(sim, (0.8, 0.3))


# ---------------------------------------------------------------------------------------------
# load_training_data: which layout a file pair is, and what each layout yields


def test_training_data_camels_layout_infers_maps_per_sim(tmp_path):
    from bayessky.data.camels import load_training_data

    mp, pp, maps, params = _cmd_files(tmp_path)
    d = load_training_data(mp, pp)
    assert d.info == {"files": [mp.name, pp.name], "layout": "camels", "maps_per_sim": PER, "n_sims": N_SIMS}
    np.testing.assert_array_equal(d.maps, maps)
    np.testing.assert_array_equal(d.sim_index, np.repeat(np.arange(N_SIMS), PER))
    np.testing.assert_array_equal(d.params, np.repeat(params, PER, axis=0))
    assert d.names == list(CAMELS_PARAM_NAMES) and not d.cut
    # cut tiles: 4 per map, each with its map's simulation; downsampling keeps periodic maps
    c = load_training_data(mp, pp, size=H // 2)
    assert c.cut and c.maps.shape == (4 * N_SIMS * PER, H // 2, H // 2)
    np.testing.assert_array_equal(c.sim_index, np.repeat(np.arange(N_SIMS), 4 * PER))
    np.testing.assert_array_equal(c.maps[:4].reshape(2, 2, H // 2, H // 2).transpose(0, 2, 1, 3)
                                  .reshape(H, H), maps[0])
    s = load_training_data(mp, pp, size=H // 2, mode="downsample")
    assert not s.cut and s.maps.shape == (N_SIMS * PER, H // 2, H // 2)
    np.testing.assert_allclose(s.maps[0], maps[0].reshape(H // 2, 2, H // 2, 2).mean((1, 3)), rtol=1e-6)


def test_training_data_npz_with_per_map_arrays_and_sim_index(tmp_path):
    from bayessky.data.camels import load_training_data

    rng = np.random.default_rng(5)
    maps = rng.uniform(1, 2, size=(6, 8, 8))
    om, s8 = rng.uniform(0.1, 0.5, 6), rng.uniform(0.6, 1.0, 6)
    sim = np.array([0, 0, 1, 1, 2, 2])
    path = tmp_path / "toy.npz"
    np.savez(path, maps=maps, omega_m=om, sigma_8=s8, sim_index=sim, family=np.array("hi-toy"),
             version=np.array("v1"), labels=np.arange(6))  # integer arrays are not parameters
    d = load_training_data(path)
    assert d.names == ["omega_m", "sigma_8"] and d.info["layout"] == "maps"
    assert d.info["family"] == "hi-toy" and d.info["generator_version"] == "v1" and d.info["n_sims"] == 3
    np.testing.assert_array_equal(d.params, np.column_stack([om, s8]))
    np.testing.assert_array_equal(d.sim_index, sim)
    # a params array with names wins over per-map arrays
    np.savez(path, maps=maps, params=np.column_stack([om, s8]), param_names=np.array(["a", "b"]), other=om)
    d = load_training_data(path)
    assert d.names == ["a", "b"]
    np.testing.assert_array_equal(d.sim_index, np.arange(6))
    # a separate table, one row per map, takes CAMELS names; tiles repeat each map's row
    table = tmp_path / "p.txt"
    np.savetxt(table, np.column_stack([om, s8]))
    d = load_training_data(path, table, size=4)
    assert d.names == ["Omega_m", "sigma_8"] and d.cut and d.info["files"] == ["toy.npz", "p.txt"]
    np.testing.assert_allclose(d.params, np.repeat(np.column_stack([om, s8]), 4, axis=0))
    # a plain .npy without parameters
    np.save(tmp_path / "plain.npy", maps[0])
    d = load_training_data(tmp_path / "plain.npy")
    assert d.maps.shape == (1, 8, 8) and d.params is None and d.names is None


@pytest.mark.parametrize("case, match", [
    ("missing", r"^data: no such file"),
    ("rows", r"^params: 7 rows do not divide the 60 maps"),
    ("flat", r"^data: expected a stack of maps"),
    ("size", r"^size: cut needs a size dividing"),
    ("mode", r"^mode: expected 'cut' or 'downsample'"),
    ("count", r"^params: 4 rows for 60 maps"),
])
def test_training_data_errors_name_the_argument(tmp_path, case, match):
    from bayessky.data.camels import load_training_data

    mp, pp, maps, params = _cmd_files(tmp_path)
    kwargs = {}
    if case == "missing":
        mp = tmp_path / "none.npy"
    elif case == "rows":
        np.savetxt(pp, np.vstack([params, params[:3]]))
    elif case == "flat":
        np.save(mp, maps[0, 0])
    elif case == "size":
        kwargs["size"] = 5
    elif case == "mode":
        kwargs["mode"] = "nearest"
    else:
        np.savez(tmp_path / "m.npz", maps=maps)
        mp = tmp_path / "m.npz"
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        load_training_data(mp, pp, **kwargs)
