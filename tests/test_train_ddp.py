"""Data-parallel training (DistributedDataParallel over gloo on 127.0.0.1) against one process.

Reference: the single-process trainer at the same global batch, whose updates are the exact
mean-loss gradient steps (tests/test_train_loop.py checks it against closed forms). Two processes
must reproduce its weights to 1e-3 relative after 2 epochs (float64, same seed and data order,
ActNorm initialised on the first batch, a short last batch split unevenly 2 + 1). The negative
control initialises ActNorm from each rank's half batch only and must miss by more than that.

All the two-process runs share one ``torch.multiprocessing.spawn`` (process start-up dominates);
each test asserts on the files those runs left.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import test_train_standin as standin
import torch

from bayessky.atomic import write_json
from bayessky.cli import main
from bayessky.priors.checkpoint import load_checkpoint, read_safetensors

pytest.importorskip("bayessky.nn.glow")
if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
    pytest.skip("torch.distributed with gloo is needed", allow_module_level=True)

SHAPE = (1, 8, 8)
N_TRAIN, N_VAL, BATCH, EPOCHS = 27, 10, 8, 2  # 27 = 3 * 8 + 3: the last batch splits 2 + 1
TOL = 1e-3
PRIOR_FILES = {"state.safetensors", "history.json", "weights.safetensors", "card.json"}


@pytest.fixture(autouse=True)
def _one_thread():
    yield from standin.single_thread()


def _data():
    # mean 3, sd 2: ActNorm's data-dependent init moves far from identity, so a wrong init shows
    g = torch.Generator().manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(N_TRAIN + N_VAL, *SHAPE, generator=g, dtype=torch.float64)
    x[:, :, :4] *= 0.5  # per-pixel structure the flow can learn
    return x[:N_TRAIN], x[N_TRAIN:]


def _fit(out, resume=False, callback=None, batch_size=BATCH):
    from bayessky.nn.glow import Glow
    from bayessky.train.loop import TrainConfig, fit

    torch.manual_seed(0)
    model = Glow(SHAPE, levels=2, steps=2, hidden=8).double()
    train, val = _data()
    card = {"kind": "glow", "architecture": model.architecture, "transform": [], "data": {"family": "test"}}
    cfg = TrainConfig(epochs=EPOCHS, batch_size=batch_size, lr=1e-2, progress=False, restore_best=False)
    return fit(model, train, val, config=cfg, out=out, resume=resume, card=card, callback=callback)


def _stop_after_first(epoch, record):
    if epoch == 1:
        raise KeyboardInterrupt  # stands for a kill right after epoch 1's checkpoint


def _worker(rank, port, root):
    """One rank of the two-process runs (every rank runs the same calls in the same order)."""
    import bayessky.train.loop as loop
    from bayessky.train.gan import fit_wgan_gp

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=2)
    try:
        report = {}
        _fit(os.path.join(root, "full"))
        with contextlib.suppress(KeyboardInterrupt):
            _fit(os.path.join(root, "cut"), callback=_stop_after_first)
        report["cut_files"] = sorted(os.listdir(os.path.join(root, "cut")))
        torch.distributed.barrier()  # every rank has looked before the resumed run writes
        _fit(os.path.join(root, "cut"), resume=True)
        # negative control: each rank initialises ActNorm from its own half of the first batch
        real = loop.actnorm_reduction
        loop.actnorm_reduction = lambda reduce: contextlib.nullcontext()
        try:
            _fit(os.path.join(root, "local"))
        finally:
            loop.actnorm_reduction = real
        for name, call in (("odd_batch", lambda: _fit(None, batch_size=7)),
                           ("gan", lambda: fit_wgan_gp(torch.nn.Module(), torch.zeros(4, *SHAPE)))):
            try:
                call()
            except ValueError as err:
                report[name] = str(err)
        if rank == 0:
            write_json(os.path.join(root, "report.json"), report)
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The single-process reference (in this process) and the two-process runs (spawned)."""
    root = tmp_path_factory.mktemp("ddp")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = _fit(root / "single")
    finally:
        torch.set_num_threads(n)
    torch.multiprocessing.spawn(_worker, args=(_free_port(), str(root)), nprocs=2)
    return root, ref


def _weights(folder):
    return read_safetensors(folder / "weights.safetensors", "weights")[0]


def _max_rel(got: dict, ref: dict) -> float:
    """max over tensors of max|got - ref| / max|ref| (all floating tensors of the state)."""
    return max(float((got[k] - v).abs().max() / v.abs().max().clamp_min(1e-300))
               for k, v in ref.items() if v.is_floating_point())


def test_two_processes_match_one_at_the_same_global_batch(runs):
    root, ref = runs
    ref_state = ref.model.state_dict()
    got = _weights(root / "full")
    assert set(got) == set(ref_state)
    rel = _max_rel(got, ref_state)
    print(f"max relative weight difference, 2 processes vs 1: {rel:.3g}")
    assert rel < TOL
    # the metrics are all-reduced over the ranks' slices: the same numbers as one process
    card = json.loads((root / "full" / "card.json").read_text())
    for key in ("val_nll_per_map", "val_bits_per_pixel"):
        assert card["metrics"][key] == pytest.approx(ref.metrics[key], rel=1e-8)
    assert card["metrics"]["n_val"] == N_VAL and card["data"]["n_train"] == N_TRAIN
    history = json.loads((root / "full" / "history.json").read_text())
    for a, b in zip(history, ref.history):
        assert a["train_nll_per_map"] == pytest.approx(b["train_nll_per_map"], rel=1e-8)
    assert card["training"]["world_size"] == 2 and card["training"]["backend"] == "gloo"
    assert ref.card["training"]["world_size"] == 1 and ref.card["training"]["backend"] is None


def test_negative_control_local_actnorm_init_misses(runs):
    root, ref = runs
    rel = _max_rel(_weights(root / "local"), ref.model.state_dict())
    print(f"max relative weight difference, local-shard ActNorm init: {rel:.3g}")
    assert rel > 10 * TOL


def test_resume_under_ddp_equals_the_uninterrupted_run(runs):
    root, _ = runs
    report = json.loads((root / "report.json").read_text())
    assert report["cut_files"] == ["history.json", "state.safetensors"]  # nothing partial or temporary
    full, cut = _weights(root / "full"), _weights(root / "cut")
    for k, v in full.items():
        assert torch.equal(cut[k], v), k
    drop = [{k: v for k, v in r.items() if k != "time_s"} for r in
            json.loads((root / "full" / "history.json").read_text())]
    assert drop == [{k: v for k, v in r.items() if k != "time_s"} for r in
                    json.loads((root / "cut" / "history.json").read_text())]


def test_only_rank_zero_writes(runs):
    root, _ = runs
    for name in ("full", "cut", "local"):
        assert set(os.listdir(root / name)) == PRIOR_FILES, name
    assert sorted(p.name for p in root.iterdir()) == ["cut", "full", "local", "report.json", "single"]
    load_checkpoint(root / "full", expected_kind="glow")  # a valid prior folder


def test_refusals_are_one_line(runs):
    report = json.loads((runs[0] / "report.json").read_text())
    assert report["odd_batch"].startswith("batch_size: the global batch 7 is not divisible by the 2")
    assert "WGAN-GP trains in one process" in report["gan"]
    assert all("\n" not in v for v in (report["odd_batch"], report["gan"]))


def test_cli_nproc_matches_one_process(tmp_path):
    # `bayessky train --nproc 2` re-runs itself under torchrun; against the same command in one process
    rng = np.random.default_rng(0)
    maps = 10 ** (1 + 0.3 * rng.normal(size=(24, 8, 8)))
    data = tmp_path / "maps.npy"
    np.save(data, maps)
    def cli(batch):
        return ["train", "glow", "--data", str(data), "--levels", "2", "--steps", "1", "--hidden", "8",
                "--epochs", "1", "--batch-size", str(batch), "--no-progress", "--device", "cpu",
                "--val-fraction", "0.2", "--test-fraction", "0"]

    args = cli(8)
    assert main(args + ["--out", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "bayessky", *args, "--out", str(tmp_path / "two"),
                           "--nproc", "2"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(os.listdir(tmp_path / "two")) == PRIOR_FILES
    card = json.loads((tmp_path / "two" / "card.json").read_text())
    assert card["training"]["world_size"] == 2 and card["training"]["backend"] == "gloo"
    assert "val_nll_physical_per_map" in card["metrics"]  # rank 0's end-of-run card rewrite
    # float32 here: compared as one weight vector (max |difference| / max |weight|) and through
    # the held-out NLL. Per tensor it is ill-conditioned: ActNorm zeroes the channel means of the
    # first batch, so the gradient of the top prior's mean (weights ~1e-4 after one epoch) is
    # float32 rounding noise, which Adam's normalised first step turns into +-lr on either side
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    keys = [k for k, v in one.items() if v.is_floating_point()]
    a, b = torch.cat([one[k].flatten() for k in keys]), torch.cat([two[k].flatten() for k in keys])
    rel = float((a - b).abs().max() / a.abs().max())
    print(f"max weight difference / max weight, CLI 2 processes vs 1 (float32): {rel:.3g}")
    assert rel < TOL
    ref = json.loads((tmp_path / "one" / "card.json").read_text())["metrics"]
    assert card["metrics"]["val_nll_per_map"] == pytest.approx(ref["val_nll_per_map"], rel=1e-5)
    # an odd global batch is refused before any process starts
    odd = subprocess.run([sys.executable, "-m", "bayessky", *cli(7), "--out", str(tmp_path / "odd"),
                          "--nproc", "2"], env=env, capture_output=True, text=True, timeout=120)
    lines = odd.stderr.strip().splitlines()
    assert odd.returncode == 2 and len(lines) == 1 and "--batch-size" in lines[0], odd.stderr
