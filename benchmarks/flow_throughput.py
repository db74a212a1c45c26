"""Throughput of bayessky's (conditional) Glow against normflows' Glow, side by side in one run.

Configuration (HIGlow's paper setup, Friedman & Hassan): 1x64x64 maps, 6 levels x 20 steps, hidden
width 16. normflows 1.7 is built as in its Glow example (``MultiscaleFlow`` of ``GlowBlock`` and
``Squeeze`` with per-level ``DiagGaussian`` bases; unconditional, since it has no continuous
conditioning). bayessky runs ``ConditionalGlow`` (context = (Omega_m, sigma_8), HIGlow's bounds)
and, for a like-for-like comparison, the unconditional ``Glow``.

Measured (all models interleaved in every repeat, so load drifts hit them alike; the median over
repeats is reported):
- log_prob: maps/s at batch 128, ``eval()`` + ``torch.inference_mode()``;
- train: maps/s at batch 32 for forward + backward + ``torch.optim.Adam`` step (default settings,
  the same for every model), after ActNorm's data-dependent init.

Prints one JSON object: throughputs, ratios to normflows, parameter counts, torch version,
threads, device, and a torch.profiler table of where the time goes (top ops by self time).

Usage: ``python benchmarks/flow_throughput.py [--device cuda] [--threads 2] [--repeats 7]``; on a
shared machine under load, ``--threads 1 --clock thread`` times each call by its thread's CPU
time, which other processes disturb far less than wall-clock time.
``--malloc-no-trim`` stops glibc from returning freed memory to the OS (for every model alike):
with the default allocator a batch-128 pass refaults its large temporaries on every flow step,
so the default numbers include page-fault time and the no-trim numbers compare the compute.
``--warmup N`` runs N untimed calls of every path first (oneDNN primitive creation, allocator
growth), for every model alike.

Levers (``--levers base,channels_last,bf16[,compile]``): every model is built once per lever, with
the same initial weights, and all (model, lever) pairs are timed interleaved in the same repeats:
- ``channels_last``: the network's 4-D parameters and the input batch in channels_last memory
  format (normflows' convolutions then run NHWC; bayessky's 3x3 convolutions read NHWC buffers
  already, its per-level weight stacks are 5-D and stay as they are);
- ``bf16``: ``torch.autocast("cpu", dtype=torch.bfloat16)`` around log_prob / the loss;
- ``compile``: ``torch.compile`` of the loss (inductor: fused element-wise kernels; minutes of
  compilation per model, not counted).
Each lever's exactness is reported against ``base`` on the same weights and batch: max relative
difference of log_prob and of the loss gradient (all parameters), ``lever_exactness``.

normflows is a benchmark-only dependency (``pip install bayessky[bench]``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import time

import torch


def build_normflows(shape, levels, steps, hidden):
    """normflows' Glow example (examples/glow.ipynb) with unconditional per-level Gaussians."""
    import normflows as nf

    c, h, w = shape
    q0, merges, flows = [], [], []
    for i in range(levels):
        flows.append([nf.flows.GlowBlock(c * 2 ** (levels + 1 - i), hidden, split_mode="channel",
                                         scale=True) for _ in range(steps)] + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (c * 2 ** (levels - i), h // 2 ** (levels - i), w // 2 ** (levels - i))
        else:
            latent = (c * 2 ** (levels + 1), h // 2 ** levels, w // 2 ** levels)
        q0.append(nf.distributions.DiagGaussian(latent))
    return nf.MultiscaleFlow(q0, flows, merges, class_cond=False)


LEVERS = ("base", "channels_last", "bf16", "compile")


class _Model:
    """Uniform calls: log_prob(x, c) and a training step, for each network (and lever)."""

    def __init__(self, name, net, conditional, lr=1e-4, normflows=False, lever="base"):
        self.name, self.net, self.conditional, self.nf = name, net, conditional, normflows
        self.lever = lever
        if lever == "channels_last":
            # 4-D tensors only: module.to(memory_format=) refuses bayessky's 5-D per-level stacks
            with torch.no_grad():
                for t in list(net.parameters()) + list(net.buffers()):
                    if t.dim() == 4:
                        t.data = t.data.contiguous(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self._loss = torch.compile(self._raw_loss) if lever == "compile" else self._raw_loss

    def _input(self, x):
        return x.contiguous(memory_format=torch.channels_last) if self.lever == "channels_last" else x

    def _autocast(self):
        if self.lever == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _raw_log_prob(self, x, c):
        if self.nf:
            return self.net.log_prob(x, None)
        return self.net.log_prob(x, c) if self.conditional else self.net.log_prob(x)

    def _raw_loss(self, x, c):
        return -self._raw_log_prob(x, c).float().mean()

    def log_prob(self, x, c):
        with self._autocast():
            return self._raw_log_prob(self._input(x), c).float()

    def loss(self, x, c):
        with self._autocast():
            return self._loss(self._input(x), c)

    def train_step(self, x, c):
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(x, c)
        loss.backward()
        self.opt.step()
        return loss


def _exactness(base: _Model, other: _Model, x, c) -> dict:
    """log_prob and loss gradient of ``other`` (a lever) against ``base`` on the same weights."""
    def grads(m):
        m.net.zero_grad(set_to_none=True)
        m.loss(x, c).backward()
        return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                for p in m.net.parameters()]

    base.net.eval(), other.net.eval()
    with torch.no_grad():
        lp0, lp1 = base.log_prob(x, c), other.log_prob(x, c)
    g0, g1 = grads(base), grads(other)
    base.net.zero_grad(set_to_none=True), other.net.zero_grad(set_to_none=True)
    num = max(float((a - b).abs().max()) for a, b in zip(g0, g1))
    den = max(float(a.abs().max()) for a in g0)
    return {"log_prob_max_rel": float(((lp1 - lp0).abs() / lp0.abs()).max()),
            "grad_max_abs_over_max_grad": num / den}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


_CLOCK = time.perf_counter


def _timed(fn, device):
    _sync(device)
    t0 = _CLOCK()
    fn()
    _sync(device)
    return _CLOCK() - t0


def _profile(fn, device, top):
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        _sync(device)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, attr, 0) > 0]
    total = sum(getattr(e, attr) for e in events) or 1.0
    events.sort(key=lambda e: getattr(e, attr), reverse=True)
    return {"total_ms": round(total / 1e3, 2),
            "top": [{"op": e.key, "self_ms": round(getattr(e, attr) / 1e3, 2),
                     "share": round(getattr(e, attr) / total, 3), "calls": e.count} for e in events[:top]]}


def _malloc_no_trim() -> None:
    """glibc: never trim the heap nor mmap large blocks, so freed memory is reused, not refaulted."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    if not (libc.mallopt(m_trim_threshold, 2**30) and libc.mallopt(m_mmap_threshold, 2**30)):
        raise RuntimeError("mallopt failed")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--levels", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--lp-batch", type=int, default=128)
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--profile-top", type=int, default=10, help="0: skip profiling")
    ap.add_argument("--no-normflows", action="store_true")
    ap.add_argument("--clock", choices=["wall", "thread"], default="wall",
                    help="thread: this thread's CPU time (needs --threads 1); robust on a loaded machine")
    ap.add_argument("--malloc-no-trim", action="store_true",
                    help="glibc mallopt: keep freed memory (no page-fault churn; all models alike)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls of every path first")
    ap.add_argument("--levers", default="base", help=f"comma-separated, from {','.join(LEVERS)}")
    args = ap.parse_args(argv)
    levers = [v.strip() for v in args.levers.split(",") if v.strip()]
    if not levers or levers[0] != "base" or any(v not in LEVERS for v in levers):
        ap.error(f"--levers: 'base' first, then any of {LEVERS[1:]}, got {args.levers!r}")
    if args.malloc_no_trim:
        _malloc_no_trim()
    global _CLOCK
    if args.clock == "thread":
        if args.threads != 1 or args.device != "cpu":
            ap.error("--clock thread needs --threads 1 on the CPU")
        _CLOCK = time.thread_time

    from bayessky.nn import ConditionalGlow, Glow

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    shape = (1, args.size, args.size)
    low, high = [0.1, 0.6], [0.5, 1.0]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(args.lp_batch, *shape, generator=gen).to(device)
    c = (torch.tensor(low) + 0.4 * torch.rand(args.lp_batch, 2, generator=gen)).to(device)
    xt, ct = x[: args.train_batch].contiguous(), c[: args.train_batch].contiguous()

    builders = []
    if not args.no_normflows:
        import normflows

        builders.append((f"normflows {normflows.__version__} Glow", False, True,
                         lambda: build_normflows(shape, args.levels, args.steps, args.hidden)))
    arch = (args.levels, args.steps, args.hidden)
    builders.append(("bayessky ConditionalGlow", True, False,
                     lambda: ConditionalGlow(shape, 2, *arch, low, high)))
    builders.append(("bayessky Glow", False, False, lambda: Glow(shape, *arch)))
    models, family = [], {}
    for name, conditional, nf, build in builders:
        torch.manual_seed(0)
        net = build().to(device)
        # ActNorm data-dependent initialisation on one training batch, once, in float32; every
        # lever of a model starts from copies of these weights
        base = _Model(name, net, conditional, normflows=nf)
        net.train()
        with torch.no_grad():
            base.log_prob(xt, ct)
        for lever in levers:
            label = name if lever == "base" else f"{name} [{lever}]"
            models.append(base if lever == "base" else
                          _Model(label, copy.deepcopy(net), conditional, normflows=nf, lever=lever))
            family[label] = base
    exact = {}
    for m in models:
        if m.lever != "base":
            exact[m.name] = _exactness(family[m.name], m, xt, ct)
    lp_times = {m.name: [] for m in models}
    tr_times = {m.name: [] for m in models}

    def lp_call(m):
        def f():
            with torch.inference_mode():
                m.log_prob(x, c)
        return f

    for m in models:
        m.net.eval()
        for _ in range(max(1, args.warmup)):
            lp_call(m)()
    for _ in range(args.repeats):
        for m in models:
            lp_times[m.name].append(_timed(lp_call(m), device))
    for m in models:
        m.net.train()
        for _ in range(max(1, args.warmup)):
            m.train_step(xt, ct)
    for _ in range(args.repeats):
        for m in models:
            tr_times[m.name].append(_timed(lambda m=m: m.train_step(xt, ct), device))

    def rate(batch, times, best=False):
        return {k: round(batch / (min(v) if best else statistics.median(v)), 1) for k, v in times.items()}

    out = {
        "benchmark": "flow_throughput",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "clock": args.clock,
        "allocator": "glibc no-trim" if args.malloc_no_trim else "default",
        "load_average_1min": round(os.getloadavg()[0], 2),
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"cpu ({platform.processor() or platform.machine()})"),
        "config": {"shape": list(shape), "levels": args.levels, "steps": args.steps, "hidden": args.hidden,
                   "log_prob_batch": args.lp_batch, "train_batch": args.train_batch,
                   "repeats": args.repeats, "warmup": args.warmup, "levers": levers,
                   "optimizer": "Adam(lr=1e-4), torch defaults"},
        "params": {m.name: sum(p.numel() for p in m.net.parameters()) for m in models},
        "log_prob_maps_per_s": rate(args.lp_batch, lp_times),
        "log_prob_maps_per_s_best": rate(args.lp_batch, lp_times, best=True),
        "train_maps_per_s": rate(args.train_batch, tr_times),
        "train_maps_per_s_best": rate(args.train_batch, tr_times, best=True),
    }
    if not args.no_normflows:
        lp, tr = out["log_prob_maps_per_s"], out["train_maps_per_s"]
        # against normflows with no lever, and against normflows with the same lever
        ref = models[0].name
        out["ratio_vs_normflows"] = {m.name: {"log_prob": round(lp[m.name] / lp[ref], 2),
                                              "train": round(tr[m.name] / tr[ref], 2)}
                                     for m in models if not m.nf}
        same = {m.lever: m.name for m in models if m.nf}
        out["ratio_vs_normflows_same_lever"] = {
            m.name: {"log_prob": round(lp[m.name] / lp[same[m.lever]], 2),
                     "train": round(tr[m.name] / tr[same[m.lever]], 2)} for m in models if not m.nf}
    out["lever_exactness"] = exact
    if args.profile_top:
        prof = {}
        for m in (m for m in models if m.lever == "base"):
            m.net.eval()
            p_lp = _profile(lp_call(m), device, args.profile_top)
            m.net.train()
            p_tr = _profile(lambda m=m: m.train_step(xt, ct), device, args.profile_top)
            prof[m.name] = {"log_prob": p_lp, "train": p_tr}
        out["profile"] = prof
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
