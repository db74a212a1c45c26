"""``bayessky models``: the packaged models ``bayessky run NAME`` runs, one line each.

Each line is the model's name and the first line of its docstring. A model's full description
(the math, its sites and options) is its module's docstring: ``python -m pydoc
bayessky.models.NAME``.
"""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list the packaged models (bayessky run NAME)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models import describe

    rows = describe()
    width = max((len(name) for name in rows), default=0)
    for name, line in rows.items():
        print(f"{name:<{width}}  {line}".rstrip())
    return 0
