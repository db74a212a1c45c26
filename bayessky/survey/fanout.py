"""Fan the blocks of maps out to workers and hand the results back as they finish.

In this process when there is no Dask client; otherwise ``client.submit`` per block with Dask's
``retries`` (a task whose worker died is rescheduled by the scheduler itself) and a bounded number
of blocks in flight, so that only those blocks' maps are read into memory and sent at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from .cluster import worker_count
from .inputs import SurveyInputs
from .tasks import JobSpec, MapResult, Task, run_task

__all__ = ["execute"]


def _task(inputs: SurveyInputs, block: list[int]) -> Task:
    return Task([inputs.get(i) for i in block])


def execute(job: JobSpec, blocks: list[list[int]], inputs: SurveyInputs, client=None, *,
            retries: int = 2, in_flight: int | None = None) -> Iterator[MapResult]:
    """Run every block; yield each map's :class:`MapResult` as its block completes (any order).

    Arguments:
        job: what all maps share. blocks: lists of map indices. inputs: where the maps come from.
        client: a ``distributed.Client``, or None to run here, one block after another.
        retries: Dask's re-runs of a task that raised (machine errors: memory, files).
        in_flight: most blocks submitted at once (default: twice the workers connected, >= 4).
    """
    if client is None:
        for block in blocks:
            yield from run_task(job, _task(inputs, block))
        return
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]
    pending = iter(blocks)
    owner = {}
    running = as_completed()

    def submit() -> bool:
        block = next(pending, None)
        if block is None:
            return False
        future = client.submit(run_task, job, _task(inputs, block), key=f"bayessky-{token}-{block[0]}",
                               retries=retries, pure=False)
        owner[future.key] = block
        running.add(future)
        return True

    def window() -> int:
        return in_flight or max(4, 2 * worker_count(client))

    for _ in range(window()):
        if not submit():
            break
    for future in running:
        block = owner.pop(future.key)
        try:
            results = future.result()
        except Exception as err:  # noqa: BLE001 -- retries spent (or KilledWorker): record, go on
            text = str(err).strip().splitlines()
            reason = f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
            results = [MapResult(i, error=f"task failed: {reason}") for i in block]
        future.release()
        yield from results
        while len(owner) < window() and submit():
            pass
