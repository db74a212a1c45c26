"""``bayessky priors``: the trained priors found by name, one line each.

Columns: name, kind (glow, cglow, maf, ...), shape of one map, the context (conditioning
parameter) names or ``-`` for an unconditional prior, and the held-out metric on its card.
Priors are searched in ``$BAYESSKY_MODELS`` (``os.pathsep``-separated folders) first, then those
shipped with bayessky; a folder whose card does not validate is listed with its error.
"""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run", "format_record"]


def add_parser(sub) -> None:
    p = sub.add_parser("priors", help="list the trained priors (shipped and $BAYESSKY_MODELS)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run)


def _metric(metric: dict | None) -> str:
    if not metric:
        return "-"
    return ", ".join(f"{k}={v:.6g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in metric.items())


def format_record(rec: dict) -> list[str]:
    """The columns of one :func:`bayessky.priors.list_priors` record."""
    if "error" in rec:
        return [rec["name"], "error:", str(rec["error"]).splitlines()[0]]
    shape = rec.get("shape")
    context = rec.get("context")
    return [rec["name"], str(rec.get("kind") or "-"),
            "x".join(str(n) for n in shape) if shape else "-",
            ",".join(context) if context else "-",
            _metric(rec.get("metric"))]


def run(args: argparse.Namespace) -> int:
    from ..priors import list_priors

    rows = [format_record(r) for r in list_priors()]
    if not rows:
        print("no priors found (shipped priors missing and $BAYESSKY_MODELS empty)")
        return 0
    widths = [max(len(r[i]) for r in rows if len(r) > i) for i in range(max(map(len, rows)))]
    for r in rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(r[:-1])] + [r[-1]]
        print("  ".join(cells).rstrip())
    return 0
