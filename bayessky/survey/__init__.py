"""Survey-scale inference: thousands of maps, each with its own mask and noise, as one durable job.

- :mod:`.inputs`: per-map data, masks, noise and truths (stacks or a manifest CSV), validated;
- :mod:`.manifest`: what a run computes (``run.json``), and what differs from a previous run;
- :mod:`.state`: per-map records with output hashes, so a rerun resumes; summary/failures tables;
- :mod:`.lock`: one run per output folder (``fcntl.flock``);
- :mod:`.engine`, :mod:`.tasks`: running a map (or a grid block of maps) anywhere;
- :mod:`.cluster`, :mod:`.slurm`, :mod:`.fanout`: Dask (local, a running scheduler, SLURM);
- :mod:`.combine`: one InferenceData with a ``map`` dimension.

``bayessky run`` (:mod:`bayessky.cli.run`) puts these together and writes the figures.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "SurveyError": ".errors",
    "load_inputs": ".inputs", "SurveyInputs": ".inputs", "MapInput": ".inputs",
    "build_manifest": ".manifest", "difference": ".manifest",
    "JobState": ".state", "out_lock": ".lock",
    "load_model_or_script": ".model_spec", "load_script": ".model_spec", "model_identity": ".model_spec",
    "noise_option": ".model_spec", "file_sha256": ".model_spec",
    "run_model": ".engine", "run_grid_block": ".engine", "model_kwargs": ".engine", "grid_axes": ".engine",
    "check_model_runs": ".engine", "describe_error": ".model_spec",
    "JobSpec": ".tasks", "Task": ".tasks", "MapResult": ".tasks", "run_task": ".tasks",
    "make_tasks": ".tasks", "open_client": ".cluster", "cluster_plan": ".cluster",
    "load_slurm_config": ".slurm", "slurm_kwargs": ".slurm",
    "execute": ".fanout", "combine_posteriors": ".combine",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
