"""``bayessky train`` on small files in the CAMELS and simulate layouts (stand-in and a tiny real Glow)."""

import json
import math

import numpy as np
import pytest
import scipy.stats
import test_train_standin as standin
import torch

import bayessky
from bayessky.cli import main
from bayessky.priors import prior as priors
from bayessky.priors.checkpoint import load_checkpoint


@pytest.fixture(autouse=True)
def _one_thread():
    yield from standin.single_thread()


@pytest.fixture
def toy_kind(monkeypatch):
    return standin.register_toy(monkeypatch)


N_SIMS = 10


def _camels(tmp_path, negative=False):
    rng = np.random.default_rng(0)
    params = np.column_stack([rng.uniform(0.1, 0.5, N_SIMS), rng.uniform(0.6, 1.0, N_SIMS),
                              rng.uniform(0.25, 4, (N_SIMS, 2)), rng.uniform(0.5, 2, (N_SIMS, 2))])
    amp = np.repeat(8 + 2 * params[:, 0], 15)[:, None, None]  # maps depend on Omega_m
    maps = (10 ** (amp + 0.3 * rng.normal(size=(N_SIMS * 15, 16, 16)))).astype(np.float32)
    if negative:
        maps[3, 0, 0] = -1.0
    mp, pp = tmp_path / "Maps_HI_IllustrisTNG_LH_z=0.00.npy", tmp_path / "params_LH_IllustrisTNG.txt"
    np.save(mp, maps)
    np.savetxt(pp, params)
    return str(mp), str(pp), maps, np.loadtxt(pp)


def _no_time(history):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in history]


def test_camels_end_to_end(tmp_path, toy_kind, monkeypatch):
    mp, pp, maps, params = _camels(tmp_path)
    out = tmp_path / "run"
    args = ["train", toy_kind, "--data", mp, "--params", pp, "--out", str(out), "--size", "8",
            "--batch-size", "128", "--lr", "0.05", "--seed", "3", "--no-progress", "--device", "cpu"]
    assert main(args + ["--epochs", "2"]) == 0
    card = json.loads((out / "card.json").read_text())
    split = card["data"]["split"]
    tr, va, te = (set(split[k]) for k in ("train_sims", "val_sims", "test_sims"))
    assert (len(tr), len(va), len(te)) == (8, 1, 1) and tr | va | te == set(range(N_SIMS))
    # HIGlow preprocessing fitted on the training simulations only; reference: numpy on the raw
    # file (tiling does not change the set of pixels), float64 sums: agreement to rounding
    rows = np.concatenate([np.arange(15 * s, 15 * s + 15) for s in sorted(tr)])
    ref = np.log10(maps[rows].astype(np.float64))
    log10, std = card["transform"]
    assert log10 == {"name": "log10"} and std["name"] == "standardise"
    assert std["mean"] == pytest.approx(ref.mean(), rel=1e-12)
    assert std["std"] == pytest.approx(ref.std(), rel=1e-12)
    assert card["context"] == {"names": ["Omega_m", "sigma_8"], "low": [0.1, 0.6], "high": [0.5, 1.0]}
    assert card["data"]["n_train"] == 8 * 15 * 4 and card["data"]["layout"] == "camels"
    assert card["training"]["augment"] == {"flips": True, "rot90": "auto", "shifts": False}  # cut tiles
    # physical-units NLL = network NLL + mean over maps of sum(ln x + ln ln 10 + ln std)
    (vs,) = va
    tiles = maps[15 * vs:15 * vs + 15].reshape(15, 2, 8, 2, 8).astype(np.float64)
    jac = (np.log(tiles) + math.log(math.log(10)) + math.log(std["std"])).sum(axis=(1, 2, 3, 4)).mean() / 4
    m = card["metrics"]
    assert m["val_nll_physical_per_map"] == pytest.approx(m["val_nll_per_map"] + jac, rel=1e-9)
    # ... and both numbers are the NLL of the written checkpoint on the validation simulation's
    # tiles, recomputed outside the trainer: the card's val_sims (by simulation, recorded by the
    # CLI) -> its 15 maps cut into 60 tiles of 8 x 8 (the mean does not depend on tile order),
    # context = its (Omega_m, sigma_8) row. The network density is the stand-in's per-pixel
    # Gaussian written with scipy from the loaded weights; the physical one also through the
    # loaded prior's own log_prob. The trainer works in float32 (measured differences: 6e-7 nats
    # of 124 in network space, 3e-5 of 1327 through log_prob), hence rel 1e-6.
    monkeypatch.setattr(priors, "FLOW_KINDS", (*priors.FLOW_KINDS, toy_kind))  # load_prior knows it
    prior = bayessky.load_prior(out)
    assert m["n_val"] == 60 and prior.card["metrics"] == m
    val_tiles = tiles.transpose(0, 1, 3, 2, 4).reshape(60, 8, 8)
    c = params[vs, :2]
    net = {k: v.detach().double().numpy() for k, v in prior.net.named_parameters()}
    y = (np.log10(val_tiles) - std["mean"]) / std["std"]
    loc = net["mu"][0] + np.einsum("d,dij->ij", c, net["w"][:, 0])
    nll_net = -scipy.stats.norm.logpdf(y, loc, np.exp(net["log_s"][0])).sum(axis=(1, 2)).mean()
    assert m["val_nll_per_map"] == pytest.approx(nll_net, rel=1e-6)
    nll_phys = nll_net + jac  # sum over pixels of -log|dT/dx| = ln x + ln ln 10 + ln std
    assert m["val_nll_physical_per_map"] == pytest.approx(nll_phys, rel=1e-6)
    with torch.no_grad():
        lp = prior.log_prob(torch.as_tensor(val_tiles), torch.as_tensor(c).expand(60, 2))
    assert m["val_nll_physical_per_map"] == pytest.approx(-lp.double().mean().item(), rel=1e-6)
    model, _ = load_checkpoint(out, expected_kind=toy_kind)
    assert model.shape == (1, 8, 8) and model.context_dim == 2

    first = _no_time(json.loads((out / "history.json").read_text()))
    assert main(args + ["--epochs", "3"]) == 2  # a run is there: refuses without --resume
    assert main(args + ["--epochs", "3", "--resume"]) == 0
    again = _no_time(json.loads((out / "history.json").read_text()))
    assert len(again) == 3 and again[:2] == first


def test_simulate_npz_layout(tmp_path, toy_kind):
    rng = np.random.default_rng(1)
    n = 40
    om, s8 = rng.uniform(0.1, 0.5, n), rng.uniform(0.6, 1.0, n)
    maps = 10 ** (8 + 0.2 * rng.normal(size=(n, 8, 8)))
    path = tmp_path / "hi.npz"
    np.savez(path, maps=maps, omega_m=om, sigma_8=s8, family=np.array("hi-toy"), version=np.array("v1"))
    out = tmp_path / "run"
    assert main(["train", toy_kind, "--data", str(path), "--out", str(out), "--epochs", "1",
                 "--no-progress", "--device", "cpu", "--val-fraction", "0.2", "--test-fraction", "0"]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["context"]["names"] == ["omega_m", "sigma_8"]
    assert card["data"]["family"] == "hi-toy" and card["data"]["generator_version"] == "v1"
    assert card["data"]["n_train"] == 32 and card["metrics"]["n_val"] == 8
    assert card["training"]["augment"]["shifts"] is True  # whole periodic maps


def test_tiny_real_conditional_glow(tmp_path):
    # the real network through the CLI, then bayessky.load_prior: the prior's density of a
    # physical map must equal the network density of T(x) plus the log-Jacobian of T (by hand)
    pytest.importorskip("bayessky.nn.glow")
    mp, pp, maps, _ = _camels(tmp_path)
    out = tmp_path / "glow"
    assert main(["train", "cglow", "--data", mp, "--params", pp, "--out", str(out), "--size", "8",
                 "--levels", "1", "--steps", "1", "--hidden", "4", "--epochs", "1", "--batch-size", "256",
                 "--no-progress", "--device", "cpu"]) == 0
    import bayessky

    prior = bayessky.load_prior(out)
    card = prior.card
    x = torch.as_tensor(maps[0, :8, :8], dtype=torch.float64)
    c = torch.tensor([0.3, 0.8], dtype=torch.float64)
    mean, std = card["transform"][1]["mean"], card["transform"][1]["std"]
    y = (torch.log10(x) - mean) / std
    net = prior.net.double()
    log_jac = -(torch.log(x) + math.log(math.log(10)) + math.log(std)).sum()  # d/dx (log10 x - m) / s
    ref = net.log_prob(y[None, None], c[None])[0] + log_jac
    got = prior.distribution(c).log_prob(x)
    assert float(got) == pytest.approx(float(ref), rel=1e-10)


def _err(capsys, argv):
    rc = main(argv)
    msg = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(msg) == 1, msg
    return msg[0]


def test_one_line_errors(tmp_path, capsys, toy_kind):
    mp, pp, *_ = _camels(tmp_path)
    base = ["train", toy_kind, "--out", str(tmp_path / "o"), "--no-progress"]
    assert "no such file" in _err(capsys, base + ["--data", str(tmp_path / "none.npy")])
    assert "fraction" in _err(capsys, base + ["--data", mp, "--val-fraction", "0.95"])
    assert "unknown network kind" in _err(capsys, ["train", "resnet", "--data", mp, "--out", "x"])
    assert "needs parameters" in _err(capsys, ["train", "cglow", "--data", mp, "--out", "x"])
    assert "--levels" in _err(capsys, base + ["--data", mp, "--params", pp, "--levels", "2"])
    assert "--size" in _err(capsys, base + ["--data", mp, "--params", pp, "--size", "5"])
    assert "--context" in _err(capsys, base + ["--data", mp, "--params", pp, "--context", "h0"])
    neg = tmp_path / "neg"
    neg.mkdir()
    mp2, pp2, *_ = _camels(neg, negative=True)
    assert "<= 0" in _err(capsys, base + ["--data", mp2, "--params", pp2, "--transform", "log10"])
    assert "--compile: not with 2 processes" in _err(capsys, base + ["--data", mp, "--nproc", "2",
                                                                      "--compile"])
