"""Survey throughput: maps per hour against Dask workers on this machine, and what a survey costs on
a SLURM allocation (prints JSON; ``--out FILE`` also writes it).

Two packaged models, run as ``bayessky run`` runs them (:mod:`bayessky.survey`: JobSpec, blocks
of maps, Dask LocalCluster of single-threaded worker processes):

- HI parameters: ``hi_parameters`` on 32 x 32 hi-toy-v1 maps, learned likelihood (shipped
  ``hi-cglow-32``), grid engine (40 x 40 grid, the model's default), blocks of maps per task vs
  one map per task, and blocks whose maps x grid points run in one batch (``map_batch``);
- dust: ``dust_inpainting`` on 64 x 64 dust-toy-v1 maps with the shipped ``dust-glow-64`` prior and a
  per-map strip mask, the MAP engine (200 L-BFGS steps; NUTS, not timed here, costs far more).

Each configuration first runs one map per worker untimed (workers load torch and the prior once),
then times the maps: maps/hour = maps / wall seconds * 3600. The projection uses the measured
per-map cost of one single-threaded worker (core-seconds per map): core-hours = maps x cost /
3600, node-hours = core-hours / cores per node (one worker per core; ideal scaling, which the
1 -> 2 worker efficiency below checks on this machine).

    python benchmarks/survey_throughput.py --hi-maps 8 --dust-maps 4 \
        --out benchmarks/results/survey_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from bayessky.families import dust_toy, hi_toy
from bayessky.survey import JobSpec, MapInput, SurveyInputs, cluster_plan, execute, make_tasks, open_client

REPO = Path(__file__).resolve().parents[1]
SURVEYS = {"camels_15000_hi_maps": ("hi", 15_000), "planck_2254_dust_patches": ("dust", 2_254)}


def _inputs(maps: np.ndarray, mask: np.ndarray | None = None, noise: float | None = None) -> SurveyInputs:
    def get(i):
        return MapInput(i, np.array(maps[i], dtype=np.float64), None if mask is None else mask[i], noise)

    return SurveyInputs(len(maps), maps.shape[1:], get, {})


def _measure(job: JobSpec, inputs: SurveyInputs, n: int, workers: int, block: int) -> dict:
    """Warm up one map per worker, then time ``n`` maps (indices after the warm-up ones)."""
    with open_client(cluster_plan(workers=workers)) as client:
        warm = list(range(workers))
        list(execute(job, make_tasks(warm, 1), inputs, client))
        todo = list(range(workers, workers + n))
        t0 = time.perf_counter()
        results = list(execute(job, make_tasks(todo, block), inputs, client))
        wall = time.perf_counter() - t0
    # a map the engine fails on (e.g. a MAP optimisation diverging to NaN) is part of the survey's
    # cost too: counted and reported, as bayessky run records it in failures.csv
    failed = {r.index: r.error for r in results if r.error}
    return {"workers": workers, "block_size": block, "map_batch": job.engine_options.get("map_batch", 1),
            "maps": n, "failed": failed, "wall_s": round(wall, 2),
            "maps_per_hour": round(n / wall * 3600, 1), "core_s_per_map": round(wall * workers / n, 2)}


def _project(core_s: float, n_maps: int, cores_per_node: int, nodes: int) -> dict:
    core_h = n_maps * core_s / 3600
    node_h = core_h / cores_per_node
    return {"maps": n_maps, "core_s_per_map": round(core_s, 2), "core_hours": round(core_h, 1),
            "node_hours": round(node_h, 2), "cores_per_node": cores_per_node, "nodes": nodes,
            "wall_hours_on_nodes": round(node_h / nodes, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hi-maps", type=int, default=8)
    ap.add_argument("--dust-maps", type=int, default=4)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--hi-block", type=int, default=4, help="maps per grid task (vs 1)")
    ap.add_argument("--cores-per-node", type=int, default=64)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    w_max = max(args.workers)
    hi = hi_toy.sample(args.hi_maps + w_max, 0.3, 0.8, size=32, seed=1)
    dust = dust_toy.sample(args.dust_maps + w_max, size=64, seed=2)
    dust = dust + 0.05 * np.random.default_rng(3).normal(size=dust.shape)
    masks = np.ones_like(dust)
    for i in range(len(masks)):  # a strip per map, in another place each time
        masks[i, :, 8 + 4 * (i % 8): 16 + 4 * (i % 8)] = 0.0
    hi_job = JobSpec("hi_parameters", "grid", {}, {"num_samples": 1000}, seed=0)
    dust_job = JobSpec("dust_inpainting", "map", {}, {"steps": 200}, seed=0, noise_name="noise_sigma")
    runs = {"hi": [], "dust": []}
    for w in args.workers:
        for block in sorted({1, args.hi_block}):
            runs["hi"].append(_measure(hi_job, _inputs(hi), args.hi_maps, w, block))
        if args.hi_block > 1:  # the block's maps x grid points in one batch (--set map_batch)
            batched = JobSpec("hi_parameters", "grid", {}, {"num_samples": 1000, "map_batch": args.hi_block},
                              seed=0)
            runs["hi"].append(_measure(batched, _inputs(hi), args.hi_maps, w, args.hi_block))
        runs["dust"].append(_measure(dust_job, _inputs(dust, masks, 0.05), args.dust_maps, w, 1))
    one = {k: min((r for r in v if r["workers"] == 1), key=lambda r: r["core_s_per_map"])
           for k, v in runs.items()}
    wall = {(k, r["workers"], r["block_size"], r["map_batch"]): r["wall_s"]
            for k, v in runs.items() for r in v}
    best = {k: {w: max(r["maps_per_hour"] for r in v if r["workers"] == w) for w in args.workers}
            for k, v in runs.items()}
    result = {
        "benchmark": "survey_throughput",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "note": "2-core machine shared with other work: timings are indicative"},
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                 text=True).stdout.strip() or None,
        "hi": {"model": "hi_parameters", "map": "32x32 hi-toy-v1", "likelihood": "flow (hi-cglow-32)",
               "engine": "grid 40x40, 1000 draws", "runs": runs["hi"]},
        "dust": {"model": "dust_inpainting", "map": "64x64 dust-toy-v1, strip mask, noise 0.05",
                 "prior": "dust-glow-64", "engine": "map (200 L-BFGS steps)", "runs": runs["dust"]},
        "grid_block_speedup": {
            f"workers={w}": round(wall["hi", w, 1, 1] / wall["hi", w, args.hi_block, 1], 3)
            for w in args.workers} if args.hi_block != 1 else None,
        "grid_map_batch_speedup": {
            f"workers={w}": round(wall["hi", w, 1, 1] / wall["hi", w, args.hi_block, args.hi_block], 3)
            for w in args.workers} if args.hi_block != 1 else None,
        "scaling_efficiency": {k: {f"workers={w}": round(best[k][w] / (w * best[k][min(args.workers)]), 3)
                                   for w in args.workers} for k in best},
        "projection": {name: {**_project(one[kind]["core_s_per_map"], n, args.cores_per_node, args.nodes),
                              "from": kind} for name, (kind, n) in SURVEYS.items()},
        "projection_note": ("per-map cost of one single-threaded worker on this machine, ideal scaling "
                            "over cores; the HI model runs 32x32 maps (the shipped prior's size): a "
                            "CAMELS 256x256 map cut into 32x32 patches costs 64 such maps"),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        from bayessky.atomic import write_json

        write_json(args.out, result)


if __name__ == "__main__":
    main()
