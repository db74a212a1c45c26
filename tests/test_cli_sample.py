"""``bayessky sample``: maps in user units, context parsing, seeds, one-line errors.

References: the maps written must equal T^-1 of the network's own draws for the same seed
(computed here with the inverse transform written out, 10^(8 + 0.5 y)), the sample mean of
log10 maps must match the prior's pixel mean, and every bad input must exit 2 with one line.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayessky.cli import main
from bayessky.nn.gan import GAN
from bayessky.nn.glow import ConditionalGlow
from bayessky.priors import FlowPrior, LatentVariablePrior, save_prior

TRANSFORM = [{"name": "log10"}, {"name": "standardise", "mean": 8.0, "std": 0.5}]


@pytest.fixture(scope="module")
def priors(tmp_path_factory):
    root = tmp_path_factory.mktemp("priors")
    torch.manual_seed(0)
    cglow = ConditionalGlow((1, 4, 4), 2, levels=2, steps=1, hidden=8, context_low=[0.1, 0.6],
                            context_high=[0.5, 1.0]).eval()
    card = {"context": {"names": ["Omega_m", "sigma_8"], "low": [0.1, 0.6], "high": [0.5, 1.0]}}
    save_prior(FlowPrior(cglow, card, TRANSFORM), root / "cglow")
    gan = GAN((1, 8, 8), latent_dim=4, width=4).eval()
    save_prior(LatentVariablePrior(gan, {}, TRANSFORM), root / "gan")
    return root, cglow, gan


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_flow_maps_match_network_draws(priors, tmp_path, capsys):
    root, cglow, _ = priors
    out = tmp_path / "maps.npz"
    code, stdout, _ = _run(capsys, "sample", str(root / "cglow"), "--n", "7", "--context",
                           "Omega_m=0.3,sigma_8=0.8", "--out", str(out), "--seed", "5")
    assert code == 0 and "wrote 7 maps" in stdout
    f = np.load(out)
    assert f["maps"].shape == (7, 4, 4) and (f["maps"] > 0).all()
    assert list(f["context_names"]) == ["Omega_m", "sigma_8"] and np.allclose(f["context"], [0.3, 0.8])
    # independent reference: the network's own draws with the same seed, mapped back by hand
    torch.manual_seed(5)
    with torch.no_grad():
        y = cglow.sample(7, torch.tensor([0.3, 0.8]))[:, 0]
    assert np.allclose(f["maps"], 10.0 ** (8.0 + 0.5 * y.numpy()), rtol=1e-5)


def test_positional_context_seed_and_batches(priors, tmp_path, capsys):
    root = priors[0]
    a, b, c = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"
    assert _run(capsys, "sample", str(root / "cglow"), "--n", "5", "--context", "0.3,0.8",
                "--out", str(a))[0] == 0
    assert _run(capsys, "sample", str(root / "cglow"), "--n", "5", "--context",
                "sigma_8=0.8, Omega_m=0.3", "--out", str(b))[0] == 0
    assert _run(capsys, "sample", str(root / "cglow"), "--n", "5", "--context", "0.3,0.8",
                "--out", str(c), "--seed", "1")[0] == 0
    assert np.array_equal(np.load(a)["maps"], np.load(b)["maps"])  # same seed, same maps
    assert not np.allclose(np.load(a)["maps"], np.load(c)["maps"])


def test_latent_prior_maps_and_statistics(priors, tmp_path, capsys):
    root, _, gan = priors
    out = tmp_path / "gan.npz"
    code, _, _ = _run(capsys, "sample", str(root / "gan"), "--n", "300", "--out", str(out),
                      "--batch-size", "128")
    assert code == 0
    maps = np.load(out)["maps"]
    assert maps.shape == (300, 8, 8) and "context" not in np.load(out)
    # pixel means of log10 maps vs the generator's network-space mean mapped by hand (8 + 0.5 y):
    # 300 draws, per-pixel standard error = sd / sqrt(300); 5-sigma bound on the worst pixel
    with torch.no_grad():
        y = gan.generator(torch.randn(20000, 4))[:, 0].numpy()
    ref_mean, ref_sd = 8.0 + 0.5 * y.mean(0), 0.5 * y.std(0)
    z = (np.log10(maps).mean(0) - ref_mean) / (ref_sd / np.sqrt(300) + 1e-12)
    assert np.abs(z).max() < 5


@pytest.mark.parametrize("argv, message", [
    (["--n", "3"], "--context: required for this conditional prior (Omega_m, sigma_8)"),
    (["--n", "3", "--context", "Omega_m=0.3"], "missing ['sigma_8']"),
    (["--n", "3", "--context", "Omega_m=0.3,sigma8=0.8"], "unknown ['sigma8']"),
    (["--n", "3", "--context", "0.3"], "expected 2 values"),
    (["--n", "3", "--context", "0.3,abc"], "values must be numbers"),
    (["--n", "3", "--context", "0.9,0.8"], "Omega_m outside the training range [0.1, 0.5]"),
    (["--n", "0", "--context", "0.3,0.8"], "--n: must be >= 1"),
    (["--n", "3", "--context", "0.3,0.8", "--temperature", "0"], "--temperature: must be > 0"),
    (["--n", "3", "--context", "0.3,0.8", "--temperature", "inf"], "--temperature: must be > 0 and finite"),
    (["--n", "3", "--context", "0.3,0.8", "--temperature", "nan"], "--temperature: must be > 0 and finite"),
    (["--n", "3", "--context", "0.3,0.8", "--temperature", "-1"], "--temperature: must be > 0"),
])
def test_bad_arguments_exit_2_with_one_line(priors, tmp_path, capsys, argv, message):
    root = priors[0]
    code, _, err = _run(capsys, "sample", str(root / "cglow"), *argv, "--out", str(tmp_path / "x.npz"))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("bayessky sample: error:") and message in err, err
    assert not (tmp_path / "x.npz").exists()


def test_bad_prior_and_output_exit_2(priors, tmp_path, capsys):
    root = priors[0]
    code, _, err = _run(capsys, "sample", "no-such-prior", "--n", "2", "--out", str(tmp_path / "x.npz"))
    assert code == 2 and err.count("\n") == 1 and "no prior named" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "card.json").write_text((root / "gan" / "card.json").read_text())
    torch.save({"w": torch.zeros(2)}, bad / "weights.safetensors")
    code, _, err = _run(capsys, "sample", str(bad), "--n", "2", "--out", str(tmp_path / "x.npz"))
    assert code == 2 and err.count("\n") == 1 and "refusing to unpickle" in err, err
    code, _, err = _run(capsys, "sample", str(root / "gan"), "--n", "2", "--out", str(tmp_path / "x.npy"))
    assert code == 2 and "--out: expected a .npz" in err
    code, _, err = _run(capsys, "sample", str(root / "gan"), "--n", "2", "--context", "0.3",
                        "--out", str(tmp_path / "x.npz"))
    assert code == 2 and "unconditional" in err


def test_out_under_a_file_is_a_one_line_error(priors, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, err = _run(capsys, "sample", str(priors[0] / "cglow"), "--n", "1", "--context", "0.3,0.8",
                        "--out", str(afile / "x.npz"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("bayessky sample: error: --out:"), err
