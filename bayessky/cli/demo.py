"""``bayessky demo``: the main job on shipped defaults (placeholder until the HI demo lands)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the HI parameter-inference demo on shipped defaults")
    p.add_argument("--out", default="bayessky-demo", help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("bayessky demo: the HI demo needs the shipped prior models/hi-cglow-32, "
          "which is not in this build yet.")
    return 0
