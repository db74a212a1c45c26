"""Every command the README shows (its fenced ``bash`` and ``python`` blocks) and every command in
the docstrings of ``examples/*.py`` runs here, as a user would copy it, so a command that stops
working fails CI.

The blocks run in README order in one temporary folder (``simulate`` writes what ``run`` reads),
with ``examples/``, ``inference/`` and ``benchmarks/`` linked into it so the relative paths of the
text work. The text of a command is never edited: :data:`PLANS` may only append options that shrink
its work (fewer maps, steps, draws; later options win in argparse, and a later ``--set key=value``
wins over an earlier one), write tiny stand-in inputs in the format the command expects (CAMELS
files, a survey manifest), or skip it with the reason. A command that asks for ``--device cuda``
on a machine without CUDA must end in a one-line error; it then also runs with ``--device cpu``.
A command the table does not know fails the test, so a new README command needs a plan here.

The wall time of each command is printed as a table at the end of the module (and written as JSON
to ``$BAYESSKY_README_TIMES`` when set).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()


def _join_lines(text: str) -> list[str]:
    """Shell lines with ``\\`` continuations joined, comments and blank lines dropped."""
    out, cur = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            cur += line[:-1].rstrip() + " "
            continue
        line = (cur + line.strip()).strip()
        cur = ""
        # no README command quotes a '#', so a ' #' starts a comment
        line = re.sub(r"(^|\s+)#.*$", "", line).strip()
        if line:
            out.append(" ".join(line.split()))
    return out


def readme_commands() -> list[tuple[str, str]]:
    """(kind, text) of every README command in order: kind "bash" per shell line, "python" per block."""
    text = (ROOT / "README.md").read_text()
    cmds = []
    for m in re.finditer(r"^```(bash|python)\n(.*?)^```", text, re.S | re.M):
        if m.group(1) == "python":
            cmds.append(("python", m.group(2)))
        else:
            cmds += [("bash", line) for line in _join_lines(m.group(2))]
    return cmds


def example_commands() -> list[tuple[str, str]]:
    """The ``python examples/...`` lines of the examples' module docstrings."""
    cmds = []
    for path in sorted((ROOT / "examples").glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        cmds += [("bash", c) for c in _join_lines(doc)
                 if re.match(r"^(\w+=\S+ )*python examples/", c)]
    return cmds


@dataclass
class Plan:
    """How the test runs one command: ``extra`` appended (shrinks only), ``skip`` a reason, ``setup``
    writes stand-in inputs first, ``cuda`` marks a command that asks for a GPU; for a Python block,
    ``replace`` holds (text, smaller text) pairs, each of which must occur in the block."""

    extra: str = ""
    skip: str | None = None
    setup: object = None
    cuda: bool = False
    replace: tuple = ()
    ok_codes: tuple = (0,)
    timeout: int = 900  # generous: a busy shared machine runs these several times slower
    times: list = field(default_factory=list)


def _camels_standin(work: Path) -> None:
    """Maps_HI_..._z=0.00.npy (15 maps per simulation, 256 x 256, float32, positive) and the
    parameter table params_LH_...txt (one row of 6 parameters per simulation), 4 simulations."""
    rng = np.random.default_rng(0)
    n_sims = 4
    params = np.column_stack([rng.uniform(0.1, 0.5, n_sims), rng.uniform(0.6, 1.0, n_sims),
                              rng.uniform(0.25, 4.0, (n_sims, 2)), rng.uniform(0.5, 2.0, (n_sims, 2))])
    maps = 10 ** (8 + 0.3 * rng.standard_normal((15 * n_sims, 256, 256))).astype(np.float32)
    np.save(work / "Maps_HI_IllustrisTNG_LH_z=0.00.npy", maps.astype(np.float32))
    np.savetxt(work / "params_LH_IllustrisTNG.txt", params)


def _survey_standin(work: Path) -> None:
    """patches.csv as in the README's manifest example: two 64 x 64 dust patches with a mask each and
    a noise given once as a number and once as a per-pixel rms map."""
    from bayessky.families import dust_toy

    for sub in ("patches", "masks", "noise"):
        (work / sub).mkdir(exist_ok=True)
    maps = np.asarray(dust_toy.sample(2, size=64, seed=7), dtype=np.float64)
    rows = ["data,mask,noise"]
    for i, m in enumerate(maps):
        mask = np.ones_like(m)
        mask[20 + 10 * i:28 + 10 * i, 10:30] = 0
        np.save(work / f"patches/p{i:04d}.npy", m * mask)
        np.save(work / f"masks/m{i:04d}.npy", mask)
        noise = "0.05" if i == 0 else f"noise/rms{i:04d}.npy"
        if i:
            np.save(work / noise, np.full_like(m, 0.05))
        rows.append(f"patches/p{i:04d}.npy,masks/m{i:04d}.npy,{noise}")
    (work / "patches.csv").write_text("\n".join(rows) + "\n")


def _resumed(out: str) -> None:
    # every finished map is kept (a failed one is run again)
    assert re.search(r"resuming: [12] of 2 map\(s\) already done", out), out[-2000:]


SETUP = ("set-up command: .ci/run makes the virtual environment and installs; "
         "tests/test_cli_demo.py runs the demo")
WHEEL = "installs the package: .ci/wheel_smoke builds the wheel and runs it from an empty folder"
TRAIN_SMALL = "--n-train 64 --n-val 32 --n-test 32 --epochs 1 --minutes 0.2"
DUST_SMALL = f"--size 16 --levels 2 --steps 1 --hidden 8 --n-check 32 --batch-size 32 {TRAIN_SMALL}"
HI_SMALL = f"--levels 2 --steps 1 --hidden 8 --batch-size 32 {TRAIN_SMALL}"
QUICK_START = "quick start"  # the README's python block

# command text (whitespace-normalised, comments dropped) -> plan; keys must match the text exactly
PLANS: dict[str, Plan] = {
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install . && "
    "bayessky demo": Plan(skip=SETUP),
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e "
    "\".[test]\" && python -m pytest -q": Plan(skip=SETUP),
    QUICK_START: Plan(replace=(("torch.linspace(0.105, 0.495, 40)", "torch.linspace(0.105, 0.495, 8)"),
                               ("torch.linspace(0.605, 0.995, 40)", "torch.linspace(0.605, 0.995, 8)"),
                               ("warmup_steps=200, num_samples=250", "warmup_steps=20, num_samples=20"))),
    "pip install .": Plan(skip=WHEEL),
    "pip wheel --no-deps -w dist . && pip install dist/bayessky-0.1.0-py3-none-any.whl": Plan(skip=WHEEL),
    "bayessky models": Plan(),
    "bayessky priors": Plan(),
    "bayessky simulate hi-toy --n 4 --size 32 --seed 100001 --out maps.npz": Plan(extra="--n 2"),
    "bayessky run hi_parameters --data maps.npz --engine grid --out post/": Plan(extra="--set grid_size=8"),
    "bayessky run inference/hi_parameters.py --data maps.npz --engine nuts --set num_samples=500 "
    "--out post-nuts/":
        Plan(extra="--set num_samples=20 --set warmup_steps=20 --set num_chains=2"),
    "bayessky train cglow --data Maps_HI_IllustrisTNG_LH_z=0.00.npy --params params_LH_IllustrisTNG.txt "
    "--size 64 --levels 6 --steps 20 --hidden 16 --out hi-cglow-camels --device cuda":
        Plan(setup=_camels_standin, cuda=True, extra="--size 16 --levels 2 --steps 1 --hidden 4 --epochs 1"),
    "bayessky simulate dust-toy --n 1 --size 64 --mask point --seed 100000 --out d.npz": Plan(),
    "bayessky run dust_inpainting --data d.npz --key data --mask d.mask.npy --engine map --out inpaint/":
        Plan(extra="--set steps=20"),
    "bayessky run dust_inpainting --data d.npz --key data --mask d.mask.npy --engine nuts --set num_chains=2 "
    "--set warmup_steps=150 --set num_samples=150 --out inpaint-nuts/":
        Plan(extra="--set warmup_steps=10 --set num_samples=10 --set max_tree_depth=3"),
    "bayessky simulate dust-toy --n 1 --size 64 --mask none --noise-sigma 0.2 --out noisy.npz": Plan(),
    "bayessky run dust_inpainting --data noisy.npz --key data --set noise_sigma=0.2 --engine map "
    "--out denoise/":
        Plan(extra="--set steps=20"),
    "bayessky simulate cmb-lensing --out sim.npz --size 64 --seed 1": Plan(),
    "bayessky run cmb_lensing --data sim.npz --engine map --set steps=1000 "
    "--set dust_prior='\"dust-glow-64\"' --out cmbl/":
        Plan(extra="--set steps=5"),
    "python benchmarks/cmb_lensing.py --dust-prior dust-glow-64 --out bench-cmbl":
        Plan(extra="--runs learned --map-steps 5 --timing-n 0"),
    "bayessky run dust_inpainting --data patches.csv --engine map --workers 2 --out dust-run --combine":
        # exit 3 = a map failed and the others completed: MAP on a dust map can diverge to NaN (the
        # README's throughput paragraph reports it); the run must still record it and go on
        Plan(setup=_survey_standin, extra="--set steps=20", ok_codes=(0, 3)),
    "pip install 'bayessky[slurm]'":
        Plan(skip="installs an extra (network); the test extra has dask-jobqueue"),
    "nohup bayessky run hi_parameters --data camels.csv --cluster slurm --cluster-config slurm.yaml "
    "--out camels-run > camels-run.log 2>&1 &": Plan(skip="needs a SLURM cluster (sbatch); "
                                                      "tests/test_survey_dask.py covers the Dask path"),
    # examples/*.py docstrings
    "python examples/healpix_dust_patch.py --prior dust-glow-64 --out healpix-demo/":
        Plan(extra="--nside 128 --steps 10"),
    "python examples/healpix_dust_patch.py --prior true --size 32 --engine nuts --out healpix-demo/":
        Plan(extra="--nside 128 --num-samples 10 --warmup 10"),
    "python examples/train_dust_prior.py --size 64 --out models/dust-glow-64 --minutes 20 --device cuda":
        Plan(cuda=True, extra=DUST_SMALL),
    "OMP_NUM_THREADS=1 python examples/train_dust_prior.py --size 64 --levels 4 --steps 4 --hidden 48 "
    "--n-train 12000 --n-val 1000 --n-test 1000 --n-check 1000 --batch-size 64 --minutes 70 --device cpu "
    "--threads 1 --out runs/dust-glow-64-cpu": Plan(extra=DUST_SMALL),
    "python examples/train_dust_prior.py --size 32 --levels 3 --steps 4 --hidden 32 --n-train 4000 "
    "--minutes 4 --out runs/dust-glow-32-dev": Plan(extra=DUST_SMALL),
    "python examples/train_hi_cglow.py --size 32 --out models/hi-cglow-32 --minutes 8 --device cuda":
        Plan(cuda=True, extra=HI_SMALL),
    "python examples/train_hi_cglow.py --kind maf --size 32 --out runs/hi-maf-32 --minutes 3":
        Plan(extra=HI_SMALL),
    # continues the shipped network (its architecture, not --levels/--steps/--hidden)
    "OMP_NUM_THREADS=1 python examples/train_hi_cglow.py --size 32 --init hi-cglow-32 --fresh "
    "--n-train 30000 --lr 1e-4 --lr-patience 3 --threads 1 --minutes 60 --resume --out runs/hi-cglow-32-long":
        Plan(extra=TRAIN_SMALL),
}
# the second, identical survey command resumes the first: every map is already done
SURVEY = "bayessky run dust_inpainting --data patches.csv --engine map --workers 2 --out dust-run --combine"


def _commands() -> list[tuple[str, str, str]]:
    """(id, kind, text) in order; the survey command's second occurrence is the resume."""
    out, seen = [], {}
    for kind, text in readme_commands() + example_commands():
        key = QUICK_START if kind == "python" else text
        seen[key] = seen.get(key, 0) + 1
        out.append((f"{key[:60]}#{seen[key]}" if seen[key] > 1 else key[:70], kind, text))
    return out


COMMANDS = _commands()
TIMES: list[tuple[str, str, float | None]] = []


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"
    env.pop("BAYESSKY_MODELS", None)
    return env


@pytest.fixture(scope="module")
def work(tmp_path_factory, request):
    folder = tmp_path_factory.mktemp("readme")
    for sub in ("examples", "inference", "benchmarks"):
        (folder / sub).symlink_to(ROOT / sub, target_is_directory=True)
    yield folder
    rows = [f"{'wall s':>7}  {'status':<8} command"]
    rows += [f"{'' if t is None else f'{t:7.1f}':>7}  {st:<8} {name}" for name, st, t in TIMES]
    total = sum(t for _, _, t in TIMES if t is not None)
    rows.append(f"{total:7.1f}  total")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("\nREADME commands (tests/test_readme_commands.py):")
        for row in rows:
            reporter.write_line(row)
    if os.environ.get("BAYESSKY_README_TIMES"):
        Path(os.environ["BAYESSKY_README_TIMES"]).write_text(json.dumps(
            [{"command": n, "status": s, "wall_s": t} for n, s, t in TIMES], indent=1))


def _run(cmd: str, work: Path, timeout: int) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", "-c", cmd], cwd=work, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    return proc, time.perf_counter() - t0


def _fail(proc, cmd: str) -> str:
    return (f"{cmd}\nexit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n"
            f"--- stderr\n{proc.stderr[-3000:]}")


def test_every_command_has_a_plan():
    """A command added to the README (or an example's docstring) needs a plan in PLANS."""
    keys = {QUICK_START if kind == "python" else text for _, kind, text in COMMANDS}
    missing = sorted(keys - set(PLANS))
    assert not missing, f"commands without a plan in tests/test_readme_commands.py: {missing}"
    stale = sorted(set(PLANS) - keys)
    assert not stale, f"plans for commands no longer in the README or examples: {stale}"
    assert any(kind == "python" for _, kind, _ in COMMANDS), "the README's Python quick start is missing"


@pytest.mark.parametrize("cid,kind,text", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_command(cid, kind, text, work):
    plan = PLANS.get(QUICK_START if kind == "python" else text)
    if plan is None:
        pytest.fail(f"no plan for {text!r}")
    if plan.skip:
        TIMES.append((cid, "skipped", None))
        pytest.skip(plan.skip)
    if kind == "python":
        for old, new in plan.replace:
            assert old in text, f"the README's Python block no longer holds {old!r}: update its plan"
            text = text.replace(old, new)
        (work / "quick_start.py").write_text(text)
        cmd = f"python quick_start.py {plan.extra}".strip()
    else:
        cmd = f"{text} {plan.extra}".strip()
    if plan.setup is not None:
        plan.setup(work)
    t_total = 0.0
    if plan.cuda and not CUDA:
        # as written it must stop at once with one line naming the device, not a torch traceback
        proc, dt = _run(f"{text} {plan.extra}", work, plan.timeout)
        t_total += dt
        err = proc.stderr.strip().splitlines()
        assert proc.returncode != 0, _fail(proc, text)
        one_line = len(err) == 1 and "cuda" in err[0].lower() and "Traceback" not in proc.stderr
        assert one_line, _fail(proc, text)
        cmd = f"{cmd} --device cpu"
    proc, dt = _run(cmd, work, plan.timeout)
    t_total += dt
    ok = proc.returncode in plan.ok_codes
    TIMES.append((cid, "ok" if ok else f"exit {proc.returncode}", t_total))
    assert ok, _fail(proc, cmd)
    assert "Traceback" not in proc.stderr, _fail(proc, cmd)
    if text == SURVEY and cid.endswith("#2"):
        _resumed(proc.stdout + proc.stderr)


def test_readme_outputs_exist(work):
    """What the README says the runs write is there (the runs above ran in this folder)."""
    done = {n for n, s, _ in TIMES if s == "ok"}
    if not done:
        pytest.skip("no command ran")
    expect = {"post": ["posterior_000.nc", "summary.csv"],
              "inpaint": ["posterior.nc", "map_mean.npy", "maps.png"],
              "inpaint-nuts": ["posterior.nc", "map_mean.npy", "map_std.npy", "maps.png"],
              "dust-run": ["run.json", "posterior.nc"]}
    for folder, names in expect.items():
        for name in names:
            assert (work / folder / name).is_file(), f"{folder}/{name}"
    assert not (work / "inpaint" / "map_std.npy").exists()  # a MAP point has no std
    shutil.rmtree(work / "hi-cglow-camels", ignore_errors=True)
