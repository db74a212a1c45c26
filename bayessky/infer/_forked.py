"""Independent work items evaluated in forked CPU processes, results streamed back in any order.

Why fork (and not ``concurrent.futures`` with spawn, or Dask): the function evaluated is a
closure over a Pyro model, its data and a loaded network, which cannot be pickled; a forked child
inherits it as it is, and only numpy results cross the pipe. Why processes and not torch's
intra-op threads: a small network's kernels (a flow on one 64 x 64 map, hidden width 16) are too
short for a second OpenMP thread to pay; measured in ``benchmarks/grid_speed.py``, 2 threads were
slower than 1, while two single-thread processes each run at the one-thread speed.

Every worker, this process included, runs torch on ONE thread: a forked child of a process whose
GNU OpenMP pool has run hangs in its first multi-threaded op, and one thread per process is what
the split across cores is for. The kernel kills the children if the parent dies.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait

import torch

__all__ = ["can_fork", "run_forked", "usable_cores", "set_parent_death_signal", "stop_processes"]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def set_parent_death_signal() -> None:
    """Linux: have the kernel kill this (worker) process when its parent dies, so a killed run
    leaves no chains behind burning CPU. A no-op elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def stop_processes(procs, timeout: float) -> None:
    """Join each process, terminating those still running after ``timeout`` seconds."""
    for proc in procs:
        if proc.is_alive():
            proc.join(timeout=timeout)
        if proc.is_alive():
            proc.terminate()
        proc.join()


def can_fork() -> bool:
    """This process may fork workers: the platform has ``fork`` and this is not a daemonic
    process (Dask's and multiprocessing's workers are; they may not have children)."""
    return "fork" in mp.get_all_start_methods() and not mp.current_process().daemon


def run_forked(items: Sequence, fn: Callable, processes: int, on_result: Callable, name: str) -> None:
    """Call ``on_result(index, fn(items[index]))`` in this process for every item, ``fn`` running
    here and in ``processes - 1`` forked children, all on one torch thread. Each process takes the
    next item not yet taken (a shared counter), so items of unequal cost keep every process
    busy. A child's exception is raised here, with its type where it pickles; the other children
    are stopped."""
    ctx = mp.get_context("fork")
    counter = ctx.Value("l", 0)

    def take() -> int:
        with counter.get_lock():
            i = counter.value
            counter.value += 1
        return i

    def child(conn):
        try:
            set_parent_death_signal()
            torch.set_num_threads(1)
            while (i := take()) < len(items):
                conn.send(("result", i, fn(items[i])))
            conn.send(("done", None, None))
        except BaseException as err:  # report any failure to the parent, then exit
            try:
                conn.send(("error", None, err))
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                conn.send(("error", None, RuntimeError(f"{type(err).__name__}: {err}")))
        finally:
            conn.close()

    procs, pending = [], {}

    def receive(timeout):
        for conn in wait(list(pending), timeout):
            try:
                kind, i, payload = conn.recv()
            except EOFError:
                k = pending[conn]
                raise RuntimeError(f"{name}: worker process {k} died without a result "
                                   f"(exit code {procs[k].exitcode})") from None
            if kind == "result":
                on_result(i, payload)
            elif kind == "error":
                raise payload
            else:
                del pending[conn]

    threads = torch.get_num_threads()
    try:
        for k in range(processes - 1):
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=child, args=(send,), daemon=True)
            proc.start()
            send.close()
            procs.append(proc)
            pending[recv] = k
        torch.set_num_threads(1)  # this process is one of the workers: one thread, as they are
        while (i := take()) < len(items):
            on_result(i, fn(items[i]))
            receive(0)  # results that arrived meanwhile (progress, and the children's pipes)
        while pending:
            receive(None)
    finally:
        torch.set_num_threads(threads)
        stop_processes(procs, timeout=1)
