"""Hostile inputs, one table: every row must be refused by the library, in one line naming the
argument, without a traceback, within seconds, leaving nothing in --out (not created) and nothing
written anywhere else (the work folder is compared before and after each row).

The CLI rows run ``bayessky.cli.main`` in-process; a SIGALRM bounds each row (a FIFO or a device
read used to block forever)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bayessky.cli import main

LIMIT_S = 20  # each row must answer within this (most answer in well under a second)


@contextlib.contextmanager
def deadline(seconds: int = LIMIT_S):
    def boom(*_):
        raise TimeoutError(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# -- the work folder: hostile files next to good ones ------------------------------------------------
SCRIPTS = {
    "raise.py": "def model(data):\n    pass\n\n\nraise RuntimeError('boom at import')\n",
    "recurse.py": "def f():\n    return f()\n\n\nf()\n",
    "exit0.py": "import sys\nsys.exit(0)\n",
    "exit3.py": "import sys\nsys.exit(3)\n",
    "syntax.py": "def model(data)\n    pass\n",
    "nomodel.py": "x = 1\n",
    "nolatent.py": ("import pyro\nimport pyro.distributions as dist\n\n\ndef model(data):\n"
                    "    pyro.sample('x', dist.Normal(0.0, 1.0).expand(data.shape).to_event(2), obs=data)\n"),
    "badopt.py": ("import pyro\nimport pyro.distributions as dist\n\n\ndef model(data, scale=1.0):\n"
                  "    mu = pyro.sample('mu', dist.Normal(0.0, 1.0))\n"
                  "    pyro.sample('x', dist.Normal(mu, scale).expand(data.shape).to_event(2), obs=data)\n"),
}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    np.save(w / "maps.npy", rng.lognormal(size=(3, 32, 32)).astype(np.float32))
    np.save(w / "one.npy", np.load(w / "maps.npy")[0])
    np.save(w / "mask2.npy", np.full((32, 32), 2.0))
    np.save(w / "empty.npy", np.zeros((0, 32, 32)))
    np.save(w / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (w / "text.npy").write_text("not an array\n")
    (w / "folder.npy").mkdir()
    os.mkfifo(w / "fifo.npy")
    os.mkfifo(w / "fifo.fits")
    os.mkfifo(w / "fifo.csv")
    os.mkfifo(w / "fifo.txt")
    os.mkfifo(w / "fifo.yaml")
    os.symlink("/dev/zero", w / "zero.fits")
    from astropy.io import fits

    fits.PrimaryHDU(np.ones((32, 32))).writeto(w / "ok.fits")
    (w / "trunc.fits").write_bytes((w / "ok.fits").read_bytes()[:3000])
    (w / "afile").write_text("a file, not a folder\n")
    for name, text in SCRIPTS.items():
        (w / name).write_text(text)
    return w


def snapshot(root: Path) -> dict:
    """Every path under ``root`` with its size and mtime (FIFOs and links are not read)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = os.lstat(p)
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


# -- the CLI table: (argv with {w} = work folder, {out} = output path, the name the error must give) --
MAPS = "{w}/maps.npy"
RUN = ["run", "hi_parameters", "--data", MAPS, "--out", "{out}"]
GRID = RUN + ["--engine", "grid"]
SIM = ["simulate", "hi-toy", "--n", "2", "--out", "{out}/x.npz"]
SAMPLE = ["sample", "hi-cglow-32", "--context", "0.3,0.8", "--out", "{out}/s.npz"]
TRAIN = ["train", "glow", "--data", MAPS, "--out", "{out}", "--epochs", "1"]
DEMO = ["demo", "--out", "{out}"]

CLI = [
    # demo: every flag checked before the map, the grid or NUTS runs
    ("demo-nuts-samples-negative", DEMO + ["--nuts-samples", "-1"], "--nuts-samples"),
    ("demo-nuts-warmup-negative", DEMO + ["--nuts-warmup", "-3"], "--nuts-warmup"),
    ("demo-grid-size-0", DEMO + ["--grid-size", "0"], "--grid-size"),
    ("demo-grid-size-huge", DEMO + ["--grid-size", "1000000"], "--grid-size"),
    ("demo-seed-negative", DEMO + ["--seed", "-1"], "--seed"),
    ("demo-seed-2^32", DEMO + ["--seed", str(2**32)], "--seed"),
    ("demo-omega-m-outside", DEMO + ["--omega-m", "5"], "--omega-m"),
    ("demo-sigma-8-nan", DEMO + ["--sigma-8", "nan"], "--sigma-8"),
    ("demo-device-unknown", DEMO + ["--device", "gpu"], "--device"),
    ("demo-prior-unconditional", DEMO + ["--prior", "dust-glow-64"], "--prior"),
    ("demo-out-is-a-file", ["demo", "--out", "{w}/afile"], "--out"),
    ("demo-nuts-samples-text", DEMO + ["--nuts-samples", "abc"], "--nuts-samples"),
    # simulate: documented ranges, sizes checked against memory before drawing
    ("sim-omega-m-5", SIM + ["--omega-m", "5", "--sigma-8", "0.8"], "--omega-m"),
    ("sim-omega-m-0.05", SIM + ["--omega-m", "0.05", "--sigma-8", "0.8"], "--omega-m"),
    ("sim-sigma-8-2", SIM + ["--omega-m", "0.3", "--sigma-8", "2"], "--sigma-8"),
    ("sim-sigma-8-inf", SIM + ["--omega-m", "0.3", "--sigma-8", "inf"], "--sigma-8"),
    ("sim-omega-m-alone", SIM + ["--omega-m", "0.3"], "--omega-m"),
    ("sim-size-200000", SIM + ["--size", "200000"], "--n/--size"),
    ("sim-n-10^8", ["simulate", "hi-toy", "--n", "100000000", "--out", "{out}/x.npz"], "--n/--size"),
    ("sim-dust-size-huge", ["simulate", "dust-toy", "--n", "1", "--size", "300000", "--out", "{out}/x.npz"],
     "--n/--size"),
    ("sim-n-0", ["simulate", "hi-toy", "--n", "0", "--out", "{out}/x.npz"], "--n"),
    ("sim-size-1", SIM + ["--size", "1"], "--size"),
    ("sim-seed-negative", SIM + ["--seed", "-1"], "--seed"),
    ("sim-seed-2^40", SIM + ["--seed", str(2**40)], "--seed"),
    ("sim-family-unknown", ["simulate", "nebula", "--n", "1", "--out", "{out}/x.npz"], "FAMILY"),
    ("sim-out-not-npz", ["simulate", "hi-toy", "--n", "1", "--out", "{out}/x.txt"], "--out"),
    ("sim-out-under-a-file", ["simulate", "hi-toy", "--n", "1", "--out", "{w}/afile/x.npz"], "--out"),
    ("sim-dust-mask-unknown", ["simulate", "dust-toy", "--n", "1", "--mask", "disc", "--out", "{out}/x.npz"],
     "--mask"),
    ("sim-dust-noise-negative", ["simulate", "dust-toy", "--n", "1", "--noise-sigma", "-1", "--out",
                                 "{out}/x.npz"], "--noise-sigma"),
    ("sim-dust-noise-inf", ["simulate", "dust-toy", "--n", "1", "--noise-sigma", "inf", "--out",
                            "{out}/x.npz"], "--noise-sigma"),
    ("sim-blobs-no-count", ["simulate", "blobs", "--n", "1", "--out", "{out}/x.npz"], "--n-blobs"),
    ("sim-blobs-count-7", ["simulate", "blobs", "--n", "1", "--n-blobs", "7", "--out", "{out}/x.npz"],
     "--n-blobs"),
    ("sim-blobs-sigma-0", ["simulate", "blobs", "--n", "1", "--n-blobs", "10", "--blob-sigma", "0", "--out",
                           "{out}/x.npz"], "--blob-sigma"),
    ("sim-cmb-n-2", ["simulate", "cmb-lensing", "--n", "2", "--out", "{out}/x.npz"], "--n"),
    ("sim-cmb-frequencies-text", ["simulate", "cmb-lensing", "--frequencies", "a,b", "--out", "{out}/x.npz"],
     "--frequencies"),
    ("sim-cmb-pixel-negative", ["simulate", "cmb-lensing", "--pixel-size", "-1", "--out", "{out}/x.npz"],
     "--pixel-size"),
    ("sim-option-of-another-family", SIM + ["--n-blobs", "10"], "--n-blobs"),
    ("sim-n-text", ["simulate", "hi-toy", "--n", "abc", "--out", "{out}/x.npz"], "--n"),
    # sample: memory of every kept map estimated before drawing
    ("sample-n-10^8", SAMPLE + ["--n", "100000000"], "--n"),
    ("sample-n-0", SAMPLE + ["--n", "0"], "--n"),
    ("sample-seed-negative", SAMPLE + ["--n", "2", "--seed", "-1"], "--seed"),
    ("sample-temperature-0", SAMPLE + ["--n", "2", "--temperature", "0"], "--temperature"),
    ("sample-temperature-inf", SAMPLE + ["--n", "2", "--temperature", "inf"], "--temperature"),
    ("sample-batch-0", SAMPLE + ["--n", "2", "--batch-size", "0"], "--batch-size"),
    ("sample-context-short", ["sample", "hi-cglow-32", "--n", "2", "--context", "0.3", "--out",
                              "{out}/s.npz"], "--context"),
    ("sample-context-text", ["sample", "hi-cglow-32", "--n", "2", "--context", "a,b", "--out",
                             "{out}/s.npz"], "--context"),
    ("sample-out-not-npz", ["sample", "hi-cglow-32", "--n", "2", "--context", "0.3,0.8", "--out",
                            "{out}/s.npy"], "--out"),
    ("sample-device-cuda-missing", SAMPLE + ["--n", "2", "--device", "cuda:7"], "--device"),
    # run: scripts that raise, recurse or exit; options the model cannot use; data that is no data
    ("run-set-grid-size-0", GRID + ["--set", "grid_size=0"], "--set grid_size=0"),
    ("run-set-grid-size-negative", GRID + ["--set", "grid_size=-4"], "--set grid_size=-4"),
    ("run-set-grid-size-text", GRID + ["--set", "grid_size=abc"], "--set grid_size"),
    ("run-set-grid-size-huge", GRID + ["--set", "grid_size=1000000"], "--set grid_size"),
    ("run-set-grid-size-float", GRID + ["--set", "grid_size=2.5"], "--set grid_size"),
    ("run-set-model-option-wrong-type", ["run", "{w}/badopt.py", "--data", MAPS, "--out", "{out}", "--set",
                                         "scale=[1,2,3]"], "--set scale"),
    ("run-set-model-option-negative", ["run", "{w}/badopt.py", "--data", MAPS, "--out", "{out}", "--set",
                                       "scale=-1.0"], "--set scale"),
    ("run-set-no-equals", RUN + ["--set", "grid_size"], "--set"),
    ("run-set-bad-key", RUN + ["--set", "1x=2"], "--set"),
    ("run-set-other-engine", GRID + ["--set", "steps=5"], "--set steps"),
    ("run-set-unknown-option", GRID + ["--set", "colour=1"], "--set"),
    ("run-seed-negative", RUN + ["--seed", "-5"], "--seed"),
    ("run-seed-2^32", RUN + ["--seed", str(2**32)], "--seed"),
    ("run-script-raises", ["run", "{w}/raise.py", "--data", MAPS, "--out", "{out}"], "script"),
    ("run-script-recurses", ["run", "{w}/recurse.py", "--data", MAPS, "--out", "{out}"], "script"),
    ("run-script-exit-0", ["run", "{w}/exit0.py", "--data", MAPS, "--out", "{out}"], "script"),
    ("run-script-exit-3", ["run", "{w}/exit3.py", "--data", MAPS, "--out", "{out}"], "script"),
    ("run-script-syntax", ["run", "{w}/syntax.py", "--data", MAPS, "--out", "{out}"], "script"),
    ("run-script-no-model", ["run", "{w}/nomodel.py", "--data", MAPS, "--out", "{out}"], "script"),
    ("run-script-missing", ["run", "{w}/missing.py", "--data", MAPS, "--out", "{out}"], "script"),
    ("run-model-no-latent", ["run", "{w}/nolatent.py", "--data", MAPS, "--out", "{out}"], "model"),
    ("run-model-unknown", ["run", "nebula", "--data", MAPS, "--out", "{out}"], "model"),
    ("run-data-fifo-npy", ["run", "hi_parameters", "--data", "{w}/fifo.npy", "--out", "{out}"], "--data"),
    ("run-data-fifo-fits", ["run", "hi_parameters", "--data", "{w}/fifo.fits", "--out", "{out}"], "--data"),
    ("run-data-device-as-fits", ["run", "hi_parameters", "--data", "{w}/zero.fits", "--out", "{out}"],
     "--data"),
    ("run-data-manifest-fifo", ["run", "hi_parameters", "--data", "{w}/fifo.csv", "--out", "{out}"],
     "--data"),
    ("run-data-truncated-fits", ["run", "hi_parameters", "--data", "{w}/trunc.fits", "--out", "{out}"],
     "--data"),
    ("run-data-pickle", ["run", "hi_parameters", "--data", "{w}/objects.npy", "--out", "{out}"], "--data"),
    ("run-data-not-npy", ["run", "hi_parameters", "--data", "{w}/text.npy", "--out", "{out}"], "--data"),
    ("run-data-empty", ["run", "hi_parameters", "--data", "{w}/empty.npy", "--out", "{out}"], "--data"),
    ("run-data-missing", ["run", "hi_parameters", "--data", "{w}/nothing.npy", "--out", "{out}"], "--data"),
    ("run-data-folder", ["run", "hi_parameters", "--data", "{w}/folder.npy", "--out", "{out}"], "--data"),
    ("run-mask-fifo", RUN + ["--mask", "{w}/fifo.npy"], "--mask"),
    ("run-mask-values-2", RUN + ["--mask", "{w}/mask2.npy"], "--mask"),
    ("run-noise-without-option", RUN + ["--noise", "0.1"], "--noise"),
    ("run-engine-unknown", RUN + ["--engine", "magic"], "--engine"),
    ("run-device-unknown", RUN + ["--device", "gpu"], "--device"),
    ("run-retries-negative", RUN + ["--retries", "-1"], "--retries"),
    ("run-block-size-0", GRID + ["--block-size", "0"], "--block-size"),
    ("run-block-size-not-grid", RUN + ["--engine", "nuts", "--block-size", "2"], "--block-size"),
    ("run-out-is-a-file", ["run", "hi_parameters", "--data", MAPS, "--out", "{w}/afile"], "--out"),
    ("run-cluster-config-fifo", RUN + ["--cluster", "slurm", "--cluster-config", "{w}/fifo.yaml"],
     "--cluster-config"),
    # train: a resume with nothing to resume, a network too large to build, data that is no data
    ("train-resume-nothing", TRAIN + ["--resume"], "--resume"),
    ("train-hidden-200000", TRAIN + ["--hidden", "200000"], "--hidden"),
    ("train-data-fifo", ["train", "glow", "--data", "{w}/fifo.npy", "--out", "{out}"], "--data"),
    ("train-data-device", ["train", "glow", "--data", "{w}/zero.fits", "--out", "{out}"], "--data"),
    ("train-params-fifo", TRAIN + ["--params", "{w}/fifo.txt"], "--params"),
    ("train-epochs-negative", TRAIN + ["--epochs", "-1"], "--epochs"),
    ("train-batch-size-0", TRAIN + ["--batch-size", "0"], "--batch-size"),
    ("train-lr-negative", TRAIN + ["--lr", "-1"], "--lr"),
    ("train-val-fraction-1.5", TRAIN + ["--val-fraction", "1.5"], "--val-fraction"),
    ("train-seed-negative", TRAIN + ["--seed", "-1"], "--seed"),
    ("train-augment-unknown", TRAIN + ["--augment", "spin"], "--augment"),
    ("train-out-under-a-file", ["train", "glow", "--data", MAPS, "--out", "{w}/afile/run"], "--out"),
]


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ": error: " in ln]


@pytest.mark.parametrize("argv,name", [c[1:] for c in CLI], ids=[c[0] for c in CLI])
def test_cli_refuses_hostile_input(work, tmp_path, capsys, argv, name):
    out = tmp_path / "out"
    argv = [a.format(w=work, out=out) for a in argv]
    before = snapshot(work)
    t0 = time.perf_counter()
    with deadline():
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse's own refusals
            rc = exc.code
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert rc not in (0, None), err
    assert "Traceback" not in err, err
    lines = _error_lines(err)
    assert len(lines) == 1, err
    assert name in lines[0].split(": error: ", 1)[1], lines[0]
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))
    assert snapshot(work) == before  # nothing written, replaced or removed outside --out
    assert elapsed < LIMIT_S


def test_stack_whose_third_map_is_bad_names_that_map(work, tmp_path, capsys):
    """A per-map failure is recorded for that map (exit 3), the others complete."""
    maps = np.load(work / "maps.npy")
    maps[2, 0, 0] = np.nan
    np.save(tmp_path / "bad3.npy", maps)
    out = tmp_path / "out"
    with deadline(60):
        rc = main(["run", "hi_parameters", "--data", str(tmp_path / "bad3.npy"), "--engine", "grid",
                   "--set", "grid_size=4", "--set", "num_samples=50", "--no-plots", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 3 and "Traceback" not in err
    assert "1 of 3 map(s) failed" in err and "map 2:" in err, err
    import pandas as pd

    failures = pd.read_csv(out / "failures.csv")
    assert failures["map"].tolist() == [2]


# -- the Python API table: (call, the error type, the name its message starts with) -------------------
def _nolatent(data):
    import pyro
    import pyro.distributions as dist

    pyro.sample("x", dist.Normal(0.0, 1.0).expand(data.shape).to_event(1), obs=data)


def _idata(values: dict):
    import arviz as az

    return az.from_dict(posterior=values)


def _api_cases(work: Path):
    from bayessky import infer
    from bayessky._validate import check_memory, check_seed
    from bayessky.data.io import load_maps
    from bayessky.families import blobs, dust_toy, hi_toy
    from bayessky.models import hi_parameters
    from bayessky.nn.registry import build_network
    from bayessky.physics.lensing import deflection, lens
    from bayessky.plot import corner
    from bayessky.sky import FlatGeometry
    from bayessky.survey import SurveyError, load_script

    box = FlatGeometry(16, 25 / 16, unit="Mpc/h")
    zeros = torch.zeros(16, 16, dtype=torch.float64)
    d3 = torch.zeros(3)
    rng = np.random.default_rng(1)
    return [
        ("geometry-10^12", lambda: FlatGeometry(10**12, 1.0), ValueError, "n"),
        ("geometry-rect-huge", lambda: FlatGeometry((10**7, 10**7), 1.0), ValueError, "n"),
        ("hi-toy-sample-huge", lambda: hi_toy.sample(10**5, 0.3, 0.8, size=4096), ValueError, "n_maps/size"),
        ("dust-toy-sample-huge", lambda: dust_toy.sample(10**5, size=4096), ValueError, "n_maps/size"),
        ("blobs-sample-huge", lambda: blobs.sample(10**5, 10, size=4096), ValueError, "n_maps/size"),
        ("network-hidden-200000", lambda: build_network(
            "glow", {"shape": [1, 32, 32], "levels": 2, "steps": 2, "hidden": 200000}), ValueError,
         "architecture"),
        ("lens-on-mpc-box", lambda: lens(zeros, zeros, box), ValueError, "geometry"),
        ("deflection-on-mpc-box", lambda: deflection(zeros, box), ValueError, "geometry"),
        ("load-maps-fifo", lambda: load_maps(work / "fifo.npy"), ValueError, "data"),
        ("load-maps-device", lambda: load_maps(work / "zero.fits"), ValueError, "data"),
        ("load-maps-truncated-fits", lambda: load_maps(work / "trunc.fits"), ValueError, "data"),
        ("load-maps-pickle", lambda: load_maps(work / "objects.npy"), ValueError, "data"),
        ("corner-map-variable", lambda: corner(_idata({"m": rng.normal(size=(1, 50, 4, 4))}),
                                               var_names=["m"]), ValueError, "var_names"),
        ("corner-nan-draws", lambda: corner(_idata({"a": np.full((1, 50), np.nan),
                                                    "b": rng.normal(size=(1, 50))})), ValueError, "idata"),
        ("nuts-no-latent", lambda: infer.nuts(_nolatent, d3, num_samples=5, warmup_steps=5,
                                              progress_bar=False), ValueError, "nuts"),
        ("hmc-no-latent", lambda: infer.hmc(_nolatent, d3, num_samples=5, warmup_steps=5,
                                            progress_bar=False), ValueError, "hmc"),
        ("emcee-no-latent", lambda: infer.emcee(_nolatent, d3, steps=10), ValueError, "emcee"),
        ("mclmc-no-latent", lambda: infer.mclmc(_nolatent, d3, num_samples=5, warmup_steps=5,
                                                progress_bar=False), ValueError, "mclmc"),
        ("seed-negative", lambda: check_seed(-1, "seed"), ValueError, "seed"),
        ("seed-bool", lambda: check_seed(True, "seed"), ValueError, "seed"),
        ("memory-petabyte", lambda: check_memory(10**18, "n"), ValueError, "n"),
        ("script-exit-0", lambda: load_script(work / "exit0.py"), SurveyError, "script"),
        ("script-recursion", lambda: load_script(work / "recurse.py"), SurveyError, "script"),
        ("grid-size-0", lambda: hi_parameters.grid(0), ValueError, "grid_size"),
        ("grid-size-text", lambda: hi_parameters.grid("8"), TypeError, "grid_size"),
    ]


API_IDS = ["geometry-10^12", "geometry-rect-huge", "hi-toy-sample-huge", "dust-toy-sample-huge",
           "blobs-sample-huge", "network-hidden-200000", "lens-on-mpc-box", "deflection-on-mpc-box",
           "load-maps-fifo", "load-maps-device", "load-maps-truncated-fits", "load-maps-pickle",
           "corner-map-variable", "corner-nan-draws", "nuts-no-latent", "hmc-no-latent", "emcee-no-latent",
           "mclmc-no-latent", "seed-negative", "seed-bool", "memory-petabyte", "script-exit-0",
           "script-recursion", "grid-size-0", "grid-size-text"]


@pytest.mark.parametrize("case", API_IDS)
def test_api_refuses_hostile_input(work, case):
    cases = {c[0]: c[1:] for c in _api_cases(work)}
    assert set(cases) == set(API_IDS)
    fn, exc, name = cases[case]
    before = snapshot(work)
    with deadline(), pytest.raises(exc) as err:
        fn()
    msg = str(err.value)
    assert msg.startswith(f"{name}:") and "\n" not in msg, msg
    assert snapshot(work) == before


def test_script_errors_carry_the_script_line(work):
    from bayessky.survey import SurveyError, load_script

    for script, line in (("raise.py", 5), ("recurse.py", 2), ("exit3.py", 2), ("syntax.py", 1)):
        with pytest.raises(SurveyError, match=rf"script: {script}.*\({script}, line {line}\)"):
            load_script(work / script)


def test_prior_generate_refuses_before_allocating():
    from bayessky import load_prior

    prior = load_prior("hi-cglow-32")
    with deadline(), pytest.raises(ValueError, match=r"^n: needs about .* GB of memory"):
        prior.generate(10**8, context=[0.3, 0.8])


def test_count_of_hostile_inputs():
    """The issue asks for at least 80 rows across the CLI and the Python API."""
    assert len(CLI) + len(API_IDS) >= 80


# -- symlinks planted in --out under the names bayessky writes ----------------------------------------
def _plant(out: Path, names, victim: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for n in names:
        (out / n).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(victim, out / n)


def _check_links_replaced(out: Path, names, victim: Path, text: str) -> None:
    assert victim.read_text() == text  # the link's target outside --out is untouched
    mode = 0o666 & ~_umask()
    for n in names:
        p = out / n
        if p.exists() or p.is_symlink():
            assert not p.is_symlink() and p.is_file(), n
            assert (p.stat().st_mode & 0o777) == mode, (n, oct(p.stat().st_mode))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_symlinks_in_out_are_replaced_never_followed(work, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    # simulate: the .npz and the mask written next to it
    sim = tmp_path / "sim"
    _plant(sim, ["x.npz", "x.mask.npy"], victim)
    assert main(["simulate", "dust-toy", "--n", "1", "--size", "16", "--out", str(sim / "x.npz")]) == 0
    _check_links_replaced(sim, ["x.npz", "x.mask.npy"], victim, "precious")
    # run: summary.csv, the combined and per-map posteriors, a corner plot, a per-map record (a
    # planted run.json is a foreign run, refused: see the atomic test below)
    out = tmp_path / "run"
    names = ["summary.csv", "posterior.nc", "corner.png", "records/map_000.json"]
    _plant(out, names, victim)
    with deadline(60):
        rc = main(["run", "hi_parameters", "--data", str(work / "one.npy"), "--engine", "grid", "--set",
                   "grid_size=4", "--set", "num_samples=50", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    _check_links_replaced(out, names, victim, "precious")
    # train: the card, the weights, the training state and the history
    trained = tmp_path / "train"
    names = ["card.json", "weights.safetensors", "history.json"]
    _plant(trained, names, victim)
    with deadline(60):
        rc = main(["train", "glow", "--data", str(work / "maps.npy"), "--out", str(trained), "--epochs", "1",
                   "--levels", "1", "--steps", "1", "--hidden", "4", "--val-fraction", "0",
                   "--test-fraction", "0", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    _check_links_replaced(trained, names, victim, "precious")


def test_atomic_writes_replace_a_symlink_and_respect_the_umask(tmp_path):
    from bayessky.atomic import atomic_path, write_json

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    _plant(out, ["run.json", "map.npy"], victim)
    write_json(out / "run.json", {"a": 1})
    with atomic_path(out / "map.npy") as tmp:
        np.save(tmp, np.zeros(3))
    _check_links_replaced(out, ["run.json", "map.npy"], victim, "precious")


def test_a_symlinked_lock_is_refused(work, tmp_path):
    from bayessky.survey import SurveyError, out_lock

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim, out / ".lock")
    with pytest.raises(SurveyError, match=r"^--out: .* is a symlink"), out_lock(out):
        pass
    assert victim.read_text() == "precious"
