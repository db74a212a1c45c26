"""``bayessky --version`` and every command's ``--help`` showing each option's default."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import bayessky
from bayessky.cli import COMMANDS, _build_parser, main


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"bayessky {bayessky.__version__}"


def test_version_from_the_shell():
    out = subprocess.run([sys.executable, "-m", "bayessky", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"bayessky {bayessky.__version__}", out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_shows_every_default(command):
    parser = _build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    text = " ".join(sub.format_help().split())  # argparse wraps lines
    for action in sub._actions:
        if (not action.option_strings or action.nargs == 0
                or action.default in (None, argparse.SUPPRESS)):
            continue
        said = action.help and "default" in action.help.lower()
        assert said or f"(default: {action.default})" in text, (command, action.option_strings)
