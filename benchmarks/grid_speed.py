"""The grid engine against the network's own batched log_prob, on one map, in one run.

What is compared (HIGlow case, the packaged model ``bayessky.models.hi_parameters`` with the shipped
64 x 64 conditional Glow ``hi-cglow-64``, 6 levels x 20 steps):

- ``grid``: ``bayessky.infer.grid(hi_parameters.model, map, grid=hi_parameters.grid(N))`` -- the
  N x N conditions of one map through the Pyro model (prior sites + the flow's ``map`` site),
  as users run it; conditions per second = N^2 / time;
- ``network``: ``prior.net.log_prob`` of 128 maps with 128 conditions, ``eval()`` +
  ``torch.inference_mode()`` (the flow_throughput.py setting); maps x conditions per second.

Both are timed interleaved, ``--repeats`` times each, median reported; the ratio grid/network is
the target (>= 0.7). The grid's log-weights are checked against a straightforward loop over the
N^2 points (one conditioned Pyro trace per point, ``log_prob_sum``): max relative difference of
the log joints, max absolute difference of the normalised log-weights and that difference
relative to the log joints' magnitude (the float32 network rounds at that scale).

Clock: on a shared, loaded machine, wall-clock time with 2 OpenMP threads measures the other
processes as much as this one (threads of an oversubscribed OpenMP team spin at every barrier),
so the default is ``--threads 1 --clock thread``: this thread's CPU time. ``--threads 2 --clock
wall`` gives the wall-clock numbers (noted with the load average). Measured here (load 7-10 on the
2 cores): 2 threads, wall clock, 228 s for the 30 x 30 grid with libgomp's default spin-waiting,
10.3 s with ``OMP_WAIT_POLICY=PASSIVE``, 9.6 s with 1 thread; 5.0 s of CPU time with 1 thread
(``benchmarks/results/grid_speed_*.json``, before the engine shared its chunks among processes).
With the engine's default (``--processes auto``: this process and one forked child on the 2
cores), idle: 1.87 s against 3.44 s in one process, 0.84x per process the network's throughput.

    python benchmarks/grid_speed.py [--threads 1 --clock thread] [--size 30] [--repeats 3]
    python benchmarks/grid_speed.py --clock wall --processes auto   # the engine's default, idle machine

``--processes`` is the grid engine's option (default there: ``auto``, one forked single-thread
process per usable core when the grid is worth it); ``ratio_grid_per_process_to_network`` divides
the grid's rate by the processes it used (auto: the usable cores).

Prints one JSON object (and writes it to ``--out`` if given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pyro
import pyro.poutine as poutine
import torch

from bayessky import infer
from bayessky.infer import fast_nuts
from bayessky.models import hi_parameters


def _loop_log_joint(data, axes, flow):
    """log p(theta_j, data) point by point: one conditioned trace per grid point (no batching)."""
    names = list(axes)
    mesh = np.meshgrid(*(np.asarray(axes[k]) for k in names), indexing="ij")
    flat = [m.reshape(-1) for m in mesh]
    out = np.empty(flat[0].size)
    with torch.no_grad(), pyro.validation_enabled(False):
        for j in range(out.size):
            cond = {k: torch.tensor(float(v[j]), dtype=data.dtype) for k, v in zip(names, flat)}
            tr = poutine.trace(poutine.condition(hi_parameters.model, cond)).get_trace(data, flow=flow)
            out[j] = float(tr.log_prob_sum())
    return out.reshape(mesh[0].shape)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prior", default="hi-cglow-64")
    ap.add_argument("--size", type=int, default=30, help="grid points per axis")
    ap.add_argument("--batch", type=int, default=128, help="network log_prob batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=["thread", "wall"], default="thread")
    ap.add_argument("--processes", default="1", help="the grid engine's processes: a count, or 'auto' "
                    "(its default: one forked single-thread process per usable core when it pays)")
    ap.add_argument("--no-check", action="store_true", help="skip the point-by-point reference loop")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.clock == "thread" and args.threads != 1:
        ap.error("--clock thread needs --threads 1")
    processes = None if args.processes == "auto" else int(args.processes)
    if args.clock == "thread" and processes != 1:
        ap.error("--clock thread times this thread only; with forked processes use --clock wall")
    torch.set_num_threads(args.threads)
    clock = time.thread_time if args.clock == "thread" else time.perf_counter

    prior = hi_parameters.learned_likelihood(args.prior, "cpu")
    net = prior.net.eval()
    truth = {"Omega_m": 0.3, "sigma_8": 0.8}
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        # the observed map: one draw of the prior at the truth; the network's batch: draws at
        # random conditions in the prior box (its cost does not depend on the values)
        c1 = torch.tensor([[truth["Omega_m"], truth["sigma_8"]]], dtype=prior.dtype)
        data = prior.transform.inv(net.sample(1, c1, generator=gen))[0, 0]
        lo = torch.tensor([b[0] for b in hi_parameters.BOUNDS.values()], dtype=prior.dtype)
        hi = torch.tensor([b[1] for b in hi_parameters.BOUNDS.values()], dtype=prior.dtype)
        cb = lo + (hi - lo) * torch.rand(args.batch, 2, generator=gen, dtype=prior.dtype)
        yb = net.sample(args.batch, cb, generator=gen)
    axes = hi_parameters.grid(args.size)
    n_points = args.size ** 2

    def run_grid():
        return infer.grid(hi_parameters.model, data, grid=axes, flow=args.prior, processes=processes)

    def run_net():
        with torch.inference_mode():
            net.log_prob(yb, cb)

    def timed(fn):
        t0 = clock()
        out = fn()
        return clock() - t0, out

    post = run_grid()  # warm-up of both paths (oneDNN primitives for these batch sizes)
    run_net()
    t_grid, t_net = [], []
    for _ in range(args.repeats):
        dt, post = timed(run_grid)
        t_grid.append(dt)
        t_net.append(timed(run_net)[0])
    grid_rate = n_points / statistics.median(t_grid)
    cores = fast_nuts.usable_cores()  # what the engine's auto mode forks for
    net_rate = args.batch / statistics.median(t_net)

    out = {
        "benchmark": "grid_speed",
        "prior": args.prior,
        "architecture": {k: v for k, v in net.architecture.items()
                         if k not in ("context_low", "context_high")},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "clock": args.clock,
        # how idle OpenMP threads wait (libgomp default: spin); decisive on an oversubscribed machine
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "grid_points": n_points,
        "grid_processes": args.processes,
        "usable_cores": cores,
        "repeats": args.repeats,
        "grid_seconds": [round(t, 3) for t in t_grid],
        "grid_seconds_median": round(statistics.median(t_grid), 3),
        "grid_conditions_per_s": round(grid_rate, 1),
        "network_batch": args.batch,
        "network_seconds": [round(t, 3) for t in t_net],
        "network_maps_x_conditions_per_s": round(net_rate, 1),
        "ratio_grid_to_network": round(grid_rate / net_rate, 3),
        # the network runs in this one process: with forked grid processes, also per process
        "ratio_grid_per_process_to_network": round(
            grid_rate / (cores if processes is None else processes) / net_rate, 3),
        "posterior_mean": {k: float(v) for k, v in post.mean.items()},
        "truth": truth,
    }
    if not args.no_check:
        t0 = time.perf_counter()
        ref = _loop_log_joint(data, axes, args.prior)
        lj = post.log_prior[0] + post.log_likelihood[0]
        # normalised log-weights from the log joints (log(weights) would be -inf where they underflow)
        lw = lj - np.logaddexp.reduce(lj.reshape(-1))
        lw_ref = ref - np.logaddexp.reduce(ref.reshape(-1))
        scale = float(np.max(np.abs(ref)))
        out["check_vs_point_by_point"] = {
            "loop_seconds_wall": round(time.perf_counter() - t0, 1),
            "log_joint_scale": round(scale, 1),
            "max_rel_diff_log_joint": float(np.max(np.abs(lj - ref) / np.abs(ref))),
            "max_abs_diff_log_weights": float(np.max(np.abs(lw - lw_ref))),
            # relative to the magnitude the log joints are computed at (float32 network: one ulp
            # of ~1e5 is 0.008)
            "max_rel_diff_log_weights": float(np.max(np.abs(lw - lw_ref)) / scale),
            "posterior_mean_loop": {k: float(np.sum(np.exp(lw_ref) * g))
                                    for k, g in zip(axes, np.meshgrid(*axes.values(), indexing="ij"))},
        }
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
