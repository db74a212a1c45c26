"""The unit of work sent to a worker: a block of maps, run by :func:`run_task`.

A task is one map, or for the grid engine a block of maps (one ``infer.grid(stack=True)`` call).
Workers return the InferenceData of each map to the parent, which alone writes the output folder:
one writer means no two processes race on summary.csv or run.json, workers need no access to
the output folder (a SLURM job on another node may not share it), and a map counts as done only
once its files and record are on disk in the parent. The cost is sending each posterior over the
network (a few MB for a 64 x 64 map's draws), small next to the inference itself.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from .engine import run_grid_block, run_model
from .inputs import MapInput
from .model_spec import cached_model, describe_error

__all__ = ["JobSpec", "Task", "MapResult", "run_task", "make_tasks"]

#: errors that belong to the task's machine, not to the map: raised, so Dask retries the task
#: elsewhere (a map's own errors -- bad values, a model's ValueError -- are recorded, not retried)
MACHINE_ERRORS = (MemoryError, OSError)


@dataclass(frozen=True)
class JobSpec:
    """What every map of a run shares: model spec (name or script path), engine and its settings,
    model options, device, base seed (map i uses ``seed + i``), torch threads per task, the
    model's noise option name, and whether the engine shows its progress bar (not a setting of
    the posterior: a run and its resume may differ in it)."""

    model: str
    engine: str
    options: dict
    engine_options: dict
    device: str = "cpu"
    seed: int = 0
    threads: int = 1
    noise_name: str | None = None
    progress: bool = False


@dataclass
class Task:
    """A block of maps (their inputs) run by one call of :func:`run_task`."""

    inputs: list[MapInput]

    @property
    def indices(self) -> list[int]:
        return [m.index for m in self.inputs]


@dataclass
class MapResult:
    """Map ``index``: its InferenceData, or ``error`` (one line); ``seconds`` of compute."""

    index: int
    idata: object = None
    error: str | None = None
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)


def make_tasks(indices: list[int], block_size: int) -> list[list[int]]:
    """Consecutive blocks of ``block_size`` indices (the blocks do not change a map's result)."""
    return [indices[k:k + block_size] for k in range(0, len(indices), block_size)]


def _one_line(err: BaseException, module=None) -> str:
    """The map's error in one line, with the line of the user's script that raised it (a packaged
    model's errors are the library's, reported without a location)."""
    packaged = getattr(module, "__name__", "").startswith("bayessky.")
    return describe_error(err, None if packaged else getattr(module, "__file__", None))


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return np.array_equal(np.asarray(a), np.asarray(b))


def run_task(job: JobSpec, task: Task) -> list[MapResult]:
    """Run a block of maps; returns one :class:`MapResult` per map, in order.

    torch runs ``job.threads`` threads here (restored after): a posterior's bits must not depend on
    how many cores the machine that ran it happened to have.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(job.threads)
    try:
        path = job.model
        mtime = os.stat(path).st_mtime_ns if os.path.isfile(path) else 0
        module = cached_model(job.model, mtime)
        results = {m.index: MapResult(m.index, error=m.error) for m in task.inputs if m.error}
        good = [m for m in task.inputs if not m.error]
        blockable = (job.engine == "grid" and len(good) > 1
                     and all(_same(m.mask, good[0].mask) and _same(m.noise, good[0].noise) for m in good))
        if blockable:
            t0 = time.perf_counter()
            try:
                _, idatas = run_grid_block(module, [m.data for m in good], engine_options=job.engine_options,
                                           options=job.options, device=job.device,
                                           seeds=[job.seed + m.index for m in good], mask=good[0].mask,
                                           noise=good[0].noise, noise_name=job.noise_name,
                                           progress=job.progress)
                dt = (time.perf_counter() - t0) / len(good)
                for m, idata in zip(good, idatas):
                    results[m.index] = MapResult(m.index, idata, seconds=dt)
                good = []
            except MACHINE_ERRORS:
                raise
            except Exception:  # noqa: BLE001 -- one map of the block may be at fault: run them one by one
                pass
        for m in good:
            t0 = time.perf_counter()
            try:
                _, idata = run_model(module, m.data, engine=job.engine, options=job.options,
                                     engine_options=job.engine_options, device=job.device,
                                     seed=job.seed + m.index, mask=m.mask, noise=m.noise,
                                     noise_name=job.noise_name, progress=job.progress)
                results[m.index] = MapResult(m.index, idata, seconds=time.perf_counter() - t0)
            except MACHINE_ERRORS:
                raise
            except (Exception, SystemExit) as err:  # noqa: BLE001 -- a map's failure is recorded; go on
                results[m.index] = MapResult(m.index, error=_one_line(err, module),
                                             seconds=time.perf_counter() - t0)
        return [results[i] for i in task.indices]
    finally:
        torch.set_num_threads(previous)
