"""The run manifest (``run.json``): what a run computes, so that the same command resumes it and a
different command into the same folder is refused with one line saying what differs.

Identity (compared on resume): the model (name or script path, and the sha256 of its source), the
inputs (sha256 of the data, mask and noise files, or the noise number), the engine and its
settings, the model options, the seed, the number of maps, the device and the package versions.
How the work is spread (``--workers``, ``--scheduler``, ``--cluster``, block size) is recorded but
not compared: a map's posterior depends only on the seed and its index.
"""

from __future__ import annotations

import json
import platform

__all__ = ["IDENTITY", "build_manifest", "difference", "package_versions"]

MANIFEST_VERSION = 1
IDENTITY = ("model", "inputs", "engine", "engine_options", "options", "seed", "n_maps", "device", "versions")


def package_versions() -> dict[str, str]:
    """Versions of the packages a posterior's bits depend on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("bayessky", "torch", "pyro-ppl", "numpy", "scipy", "arviz"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _plain(obj):
    """JSON round trip: tuples become lists, odd objects their str, as run.json will hold them."""
    return json.loads(json.dumps(obj, default=str))


def build_manifest(*, model: dict, inputs: dict, engine: str, engine_options: dict, options: dict,
                   seed: int, n_maps: int, device: str, execution: dict) -> dict:
    """The manifest dict written to run.json (plain JSON types only)."""
    return _plain({
        "manifest_version": MANIFEST_VERSION, "script": model.get("spec"),
        "model": {k: model[k] for k in ("model", "sha256")}, "inputs": inputs, "engine": engine,
        "engine_options": engine_options, "options": options, "seed": seed, "n_maps": n_maps,
        "device": device, "versions": package_versions(), "execution": execution,
    })


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def difference(old: dict, new: dict) -> str | None:
    """One line naming the first identity entry that differs (``None`` when none does)."""
    if old.get("manifest_version") != MANIFEST_VERSION:
        return "the folder holds the outputs of a run without a manifest (an older bayessky)"
    for key in IDENTITY:
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for sub in sorted(set(a) | set(b)):
                if a.get(sub) != b.get(sub):
                    return f"{key}.{sub}: {_short(a.get(sub))} before, {_short(b.get(sub))} now"
        return f"{key}: {_short(a)} before, {_short(b)} now"
    return None
