"""``--cluster slurm --cluster-config FILE``: the settings of a dask_jobqueue SLURMCluster, validated.

The file is YAML (.yaml/.yml) or JSON (.json), a mapping of:

==================  =========================================================================
``cores``           CPU cores per SLURM job (int > 0, required)
``memory``          memory per job, e.g. ``"16GB"`` (required)
``walltime``        time limit per job, ``"HH:MM:SS"`` or ``"D-HH:MM:SS"`` (required)
``queue``           partition (``partition`` is accepted as its other name)
``account``         account to charge
``jobs``            number of SLURM jobs to start (int > 0, default 1)
``processes``       Dask workers per job (default ``cores``: one single-threaded worker per core)
``job_extra_directives``  further ``#SBATCH`` lines, e.g. ``["--qos=normal"]``
``job_script_prologue``   shell lines run before the worker, e.g. ``["source venv/bin/activate"]``
``local_directory`` worker scratch folder on the node; ``interface`` network interface (e.g. ib0)
``python``          the Python on the nodes (default: this one)
==================  =========================================================================

Nothing else is accepted (a typo would otherwise be dropped silently); errors are one line naming
the file and the key.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .errors import SurveyError

__all__ = ["load_slurm_config", "slurm_kwargs", "SLURM_KEYS"]

SLURM_KEYS = ("cores", "memory", "walltime", "queue", "partition", "account", "jobs", "processes",
              "job_extra_directives", "job_script_prologue", "local_directory", "interface", "python")
_WALLTIME = re.compile(r"^(\d+-)?\d{1,3}:\d{2}(:\d{2})?$")
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*([KMGT]i?B)$", re.IGNORECASE)


def load_slurm_config(path: str | Path) -> dict:
    """Read and validate the config file; returns ``{"kwargs": SLURMCluster kwargs, "jobs": n}``."""
    path = Path(path)
    flag = f"--cluster-config {path.name}"
    from .._validate import check_regular_file

    try:
        check_regular_file(path, "--cluster-config")  # a FIFO would block the read
    except (OSError, ValueError) as err:
        raise SurveyError(str(err)) from None
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            config = yaml.safe_load(text)
        elif path.suffix.lower() == ".json":
            config = json.loads(text)
        else:
            raise SurveyError(f"--cluster-config: expected a .yaml, .yml or .json file, got {path.name!r}")
    except (ValueError, ImportError) as err:
        if isinstance(err, SurveyError):
            raise
        raise SurveyError(f"{flag}: cannot parse: {str(err).splitlines()[0]}") from err
    except Exception as err:  # yaml.YAMLError is no ValueError
        raise SurveyError(f"{flag}: cannot parse: {str(err).splitlines()[0]}") from err
    return slurm_kwargs(config, flag)


def _int(config, key, flag, default=None):
    v = config.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise SurveyError(f"{flag}: {key} must be a positive integer, got {v!r}")
    return v


def _str(config, key, flag, pattern=None, what=""):
    v = config[key]
    if not isinstance(v, str) or not v.strip() or (pattern is not None and not pattern.match(v.strip())):
        raise SurveyError(f"{flag}: {key} must be {what or 'a non-empty string'}, got {v!r}")
    return v.strip()


def _lines(config, key, flag):
    v = config[key]
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise SurveyError(f"{flag}: {key} must be a list of strings, got {v!r}")
    return list(v)


def slurm_kwargs(config, flag: str = "--cluster-config") -> dict:
    """Validate a config mapping; returns ``{"kwargs": ..., "jobs": n}`` (kwargs for SLURMCluster)."""
    if not isinstance(config, dict):
        raise SurveyError(f"{flag}: expected a mapping of settings, got {type(config).__name__}")
    unknown = sorted(set(config) - set(SLURM_KEYS))
    if unknown:
        raise SurveyError(f"{flag}: unknown setting(s) {unknown} (known: {', '.join(SLURM_KEYS)})")
    missing = [k for k in ("cores", "memory", "walltime") if k not in config]
    if missing:
        raise SurveyError(f"{flag}: missing required setting(s) {missing}")
    if "queue" in config and "partition" in config:
        raise SurveyError(f"{flag}: give queue or partition (the same setting), not both")
    cores = _int(config, "cores", flag)
    processes = _int(config, "processes", flag, cores)
    if processes > cores:
        raise SurveyError(f"{flag}: processes ({processes}) must not exceed cores ({cores})")
    kwargs = {
        "cores": cores, "processes": processes,
        "memory": _str(config, "memory", flag, _MEMORY, "a size such as '16GB'"),
        "walltime": _str(config, "walltime", flag, _WALLTIME, "a time 'HH:MM:SS' or 'D-HH:MM:SS'"),
    }
    for key in ("queue", "partition"):
        if key in config:
            kwargs["queue"] = _str(config, key, flag)
    for key in ("account", "local_directory", "interface", "python"):
        if key in config:
            kwargs[key] = _str(config, key, flag)
    for key in ("job_extra_directives", "job_script_prologue"):
        if key in config:
            kwargs[key] = _lines(config, key, flag)
    # one thread per worker: torch's thread count is fixed per task as well (same bits anywhere)
    kwargs["job_script_prologue"] = ["export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1",
                                     *kwargs.get("job_script_prologue", [])]
    return {"kwargs": kwargs, "jobs": _int(config, "jobs", flag, 1)}
