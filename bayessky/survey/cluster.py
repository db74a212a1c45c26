"""Where the maps run: in this process, on a local Dask cluster, on a running Dask scheduler, or on
SLURM through dask_jobqueue. Scheduling, retries and lost workers are Dask's; this module only
builds the client from the command-line flags."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from .errors import SurveyError

__all__ = ["cluster_plan", "open_client", "worker_count"]

_ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _check_address(address: str) -> None:
    if address.lower().endswith(".json"):
        if not Path(address).is_file():
            raise SurveyError(f"--scheduler: no such scheduler file {address!r}")
        return
    if "://" not in address or not address.split("://", 1)[1]:
        raise SurveyError(f"--scheduler: expected tcp://host:port or a scheduler .json file, got {address!r}")


def cluster_plan(*, workers: int | None = None, scheduler: str | None = None, cluster: str | None = None,
                 cluster_config: str | None = None) -> dict | None:
    """Validate the fan-out flags (before any output or process exists); None = run in this process."""
    given = [f for f, v in (("--workers", workers), ("--scheduler", scheduler), ("--cluster", cluster))
             if v is not None]
    if len(given) > 1:
        raise SurveyError(f"{given[0]}: give only one of --workers, --scheduler, --cluster "
                          f"(got {', '.join(given)})")
    if cluster_config and cluster is None:
        raise SurveyError("--cluster-config: only with --cluster slurm")
    if not given:
        return None
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise SurveyError(f"--workers: expected a positive integer, got {workers!r}")
    if scheduler is not None:
        _check_address(scheduler)
    config = None
    if cluster is not None:
        if cluster != "slurm":
            raise SurveyError(f"--cluster: expected 'slurm', got {cluster!r}")
        if not cluster_config:
            raise SurveyError("--cluster slurm: needs --cluster-config FILE (cores, memory, walltime, ...)")
        from .slurm import load_slurm_config

        config = load_slurm_config(cluster_config)
    return {"workers": workers, "scheduler": scheduler, "cluster": cluster, "slurm": config}


@contextmanager
def open_client(plan: dict | None, timeout: float = 60.0):
    """A ``distributed.Client`` for a :func:`cluster_plan` (None: yields None, run in this process).
    Clusters started here are closed on exit."""
    if plan is None:
        yield None
        return
    workers, scheduler, config = plan["workers"], plan["scheduler"], plan["slurm"]
    given = "--workers" if workers else "--scheduler" if scheduler else "--cluster"
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise SurveyError(f"{given}: needs dask.distributed (pip install 'dask[distributed]')") from err
    if scheduler:
        kw = {"scheduler_file": scheduler} if scheduler.lower().endswith(".json") else {"address": scheduler}
        try:
            client = Client(timeout=timeout, **kw)
        except (OSError, TimeoutError) as err:
            why = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise SurveyError(f"--scheduler: cannot connect to {scheduler!r}: {why}") from err
        try:
            yield client
        finally:
            client.close()
        return
    if workers is not None:
        started = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, env=dict(_ONE_THREAD))
    else:
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError as err:
            raise SurveyError("--cluster slurm: needs dask-jobqueue (pip install 'bayessky[slurm]')") from err
        started = SLURMCluster(**config["kwargs"])
        started.scale(jobs=config["jobs"])
    try:
        with Client(started) as client:
            yield client
    finally:
        started.close()


def worker_count(client) -> int:
    """Workers connected now (SLURM jobs join over time); 1 for a run in this process."""
    if client is None:
        return 1
    return max(1, len(client.scheduler_info().get("workers", {})))
