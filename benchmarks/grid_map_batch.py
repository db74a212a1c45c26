"""The grid engine on a stack of maps: map by map (``map_batch=1``) against maps x grid points in
one batch (``map_batch=K``), on the packaged ``hi_parameters`` model with the shipped learned
likelihood (prints JSON).

Each setting runs twice in alternation (1, K, 1, K); the second time of each is reported, so
both see a warmed-up process. One torch thread by default.

    python benchmarks/grid_map_batch.py --maps 8 --grids 40 10 \
        --out benchmarks/results/grid_map_batch_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from bayessky import infer
from bayessky.families import hi_toy
from bayessky.models import hi_parameters as hp


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--maps", type=int, default=8)
    ap.add_argument("--grids", type=int, nargs="+", default=[40, 10], help="grid points per axis")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    maps = torch.as_tensor(hi_toy.sample(args.maps, 0.3, 0.8, size=32, seed=1)).float()
    rows = []
    for g in args.grids:
        axes = hp.grid(g)
        seconds, means = {}, {}
        for mb in (1, args.maps, 1, args.maps):
            t0 = time.perf_counter()
            post = infer.grid(hp.model, maps, grid=axes, stack=True, map_batch=mb)
            seconds[mb] = time.perf_counter() - t0
            means[mb] = post.mean["Omega_m"]
        rows.append({"grid": f"{g}x{g}", "maps": args.maps, "seconds_map_by_map": round(seconds[1], 2),
                     f"seconds_map_batch_{args.maps}": round(seconds[args.maps], 2),
                     "speedup": round(seconds[1] / seconds[args.maps], 3),
                     "max_abs_diff_mean_Omega_m": float(abs(means[1] - means[args.maps]).max())})
    result = {"benchmark": "grid_map_batch", "model": "hi_parameters (hi-cglow-32), 32x32 maps",
              "threads": args.threads, "load_average_1min": os.getloadavg()[0],
              "machine": platform.platform(), "torch": torch.__version__, "rows": rows}
    print(json.dumps(result, indent=1))
    if args.out:
        from bayessky.atomic import write_json

        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
