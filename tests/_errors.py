"""Shared assertion for the boundary checks: a one-line error whose message names the argument."""

from __future__ import annotations

import pytest


def refused(exc: type, name: str, fn) -> str:
    """Call ``fn``; it must raise ``exc`` with a one-line message starting ``"{name}:"``."""
    with pytest.raises(exc) as err:
        fn()
    msg = str(err.value)
    assert msg.startswith(f"{name}:") and "\n" not in msg, msg
    return msg
