"""``bayessky models`` and ``bayessky priors``: the listings against the registry and the cards.

The shipped priors' kind, map shape, context names and held-out metric are the values written in
their cards (``models/<name>/card.json`` in the repository), spelled out here.
"""

from __future__ import annotations

import json

import pytest

from bayessky.cli import main
from bayessky.models import MODELS
from bayessky.priors import resolve_prior

SHIPPED = {  # name: (kind, shape, context, metric) as the listing prints them
    "blob-glow-64": ("glow", "1x64x64", "-", "test_nll_per_map=-3126.15"),
    "dust-glow-64": ("glow", "1x64x64", "-", "test_nll_gap_nats_per_map=2.84179"),
    "hi-cglow-32": ("cglow", "1x32x32", "Omega_m,sigma_8", "test_nll_gap_nats=1.0803"),
    "hi-cglow-64": ("cglow", "1x64x64", "Omega_m,sigma_8", "test_nll_gap_nats=26.0451"),
}


def _lines(capsys, argv) -> list[str]:
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out.splitlines()


def test_models_lists_every_packaged_model_with_its_summary_line(capsys):
    lines = _lines(capsys, ["models"])
    names = [line.split()[0] for line in lines]
    assert names == sorted(MODELS) and "hi_parameters" in names
    hi = lines[names.index("hi_parameters")]
    assert hi.split(None, 1)[1] == ("Omega_m and sigma_8 from an HI map with a learned field-level "
                                    "likelihood (HIGlow-style).")


def test_priors_lists_the_shipped_priors_with_kind_shape_context_and_metric(capsys, monkeypatch):
    monkeypatch.delenv("BAYESSKY_MODELS", raising=False)
    rows = {line.split()[0]: tuple(line.split()[1:]) for line in _lines(capsys, ["priors"])}
    assert rows == SHIPPED


def test_priors_lists_a_user_folder_first_and_a_broken_card_as_an_error(tmp_path, capsys, monkeypatch):
    good = tmp_path / "my-prior"
    good.mkdir()
    card = json.loads((resolve_prior("hi-cglow-32") / "card.json").read_text())
    (good / "card.json").write_text(json.dumps(card))
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "card.json").write_text("{not json")
    monkeypatch.setenv("BAYESSKY_MODELS", str(tmp_path))
    lines = _lines(capsys, ["priors"])
    rows = {line.split()[0]: line for line in lines}
    assert set(SHIPPED) | {"my-prior", "broken"} == set(rows)
    assert tuple(rows["my-prior"].split()[1:]) == SHIPPED["hi-cglow-32"]
    assert rows["broken"].split()[1] == "error:"
    assert [line.split()[0] for line in lines][:2] == ["broken", "my-prior"]  # $BAYESSKY_MODELS first


@pytest.mark.parametrize("command", ["models", "priors"])
def test_listing_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"bayessky {command}" in capsys.readouterr().out
