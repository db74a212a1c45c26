"""Batched multinomial NUTS in plain torch: every chain advances in lockstep, one gradient call
per leapfrog step for all chains.

Why a hand-written core instead of ``pyro.infer.NUTS``: Pyro re-traces and replays the model at
every gradient and builds each chain's tree recursively in Python, one chain at a time, one
process per chain. On the 64 x 64 Wiener-filter posterior of ``benchmarks/nuts_wiener.py``
(4 chains x (500 + 500), float32, 2 idle cores, 1 torch thread per process; median-pixel bulk
ESS/s) Pyro reaches 28 (1 chain), this core 101 in one process and 132 split over two, NumPyro
133 (chains one after another) and 352 (``chain_method="parallel"``, one XLA device per chain,
both cores; repeated runs differ by 10-15 %). This module takes a
*batched* potential ``U(q)``, ``q`` of shape (chains, D), and

* builds the NUTS tree iteratively (NumPyro's checkpointed scheme, no recursion), so the Python
  work per leapfrog is a fixed, short list of tensor operations;
* advances all chains together: at tree doubling ``j`` every chain that has not terminated
  integrates ``2^j`` steps in its own random direction; chains that have stopped (U-turn or
  divergence) are masked, their positions frozen, so ``potential_fn`` is called once per leapfrog
  step on the whole (chains, D) batch and autograd runs once for all chains;
* on a multi-core CPU, splits the chains into blocks run in forked processes
  (``chain_method="parallel"``, NumPyro's counterpart runs one XLA device per chain): a 64 x 64
  potential is too small for torch's intra-op threads to use a second core, a second process
  does. Every chain draws from its own generator, so the split does not change its draws;
* keeps the per-chain scalars (energies, log-weights, masks) in numpy on CPU, where a torch
  tensor shares memory with a numpy array and numpy's dispatch on a few numbers is several times
  cheaper than torch's, and selects rows with ``lerp`` (vectorised) rather than ``torch.where``
  (a scalar loop on CPU); on accelerators everything stays on the device and the host is asked
  whether all chains have stopped only every 8 leaves.

The sampler is the one of Stan and NumPyro: multinomial sampling of the trajectory (Betancourt
2017, appendix A) -- uniform-progressive within a subtree, biased-progressive when a new subtree
is merged at the top level -- and the generalised U-turn criterion with ``p_sharp = M^-1 p``,
checked on every balanced sub-tree through checkpoints of the running momentum sums. A leaf whose
energy error exceeds 1000 (or is not finite) is a divergence and ends the trajectory. Warm-up is
Stan's (see :mod:`bayessky.infer._adaptation`): dual averaging of the step size, windowed
diagonal or dense mass-matrix estimates with Welford's algorithm and shrinkage toward ``1e-3``,
and a "reasonable" initial step size re-found after each mass-matrix update, all per chain.

Where the time goes (same benchmark, one process): 66% in ``potential_fn`` and its autograd
backward (740 us per batched call of 4 chains, the forward a third of it), 380 us of tree
bookkeeping per leapfrog step; lockstep adds 20% gradient calls over the chains' own tree sizes
at 4 chains and 42% at 16 (a transition lasts as long as its longest tree). From the 4- and
16-chain runs, a leapfrog step costs ~600 us of fixed eager dispatch (gradient 426, bookkeeping
176) plus ~130 us per chain (79 + 51: unfused elementwise kernels, and the complex-to-complex
FFT torch's backward of ``rfft2`` runs), which is why splitting 4 chains over two processes gains
only 1.25x (each still pays the fixed part per leapfrog of its longest tree) while XLA,
compiling the whole step at ~100 us per chain-step on one core, is 2.7x ahead (2.8x at 16). Compiling the
potential does not help: ``torch.compile(torch.func.grad_and_value(U))`` (12 s to compile) runs
at 640-660 us per 4-chain call against 620-680 eager, of which the forward and backward FFTs are
~190 us. What is left to try: per-chain asynchronous trees instead of lockstep, and fewer,
fused bookkeeping ops per leaf. Torch's
OpenMP pool degrades badly when the CPU is oversubscribed: on that shared machine 2 torch threads
made the same run 20x slower than 1 thread, so set
``torch.set_num_threads(1)`` for map-sized potentials on a busy CPU.

References:
    The No-U-Turn Sampler (Hoffman & Gelman, 2014), https://arxiv.org/abs/1111.4246
    A Conceptual Introduction to Hamiltonian Monte Carlo (Betancourt, 2017),
    https://arxiv.org/abs/1701.02434
    Composable Effects for Flexible and Accelerated Probabilistic Programming in NumPyro
    (Phan, Pradhan & Jankowiak, 2019), https://arxiv.org/abs/1912.11554
"""

from __future__ import annotations

import math
import multiprocessing as mp
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ._adaptation import DualAveraging, Welford, adaptation_schedule
from ._forked import set_parent_death_signal, stop_processes, usable_cores

__all__ = ["sample", "chain_seeds", "default_chain_method", "usable_cores"]

_MAX_DELTA_ENERGY = 1000.0  # Stan's and NumPyro's divergence threshold on H - H_0
# Keep per-chain scalars on the host (numpy) or as tensors: None picks by device (host on CPU).
# Tests set it to False to run the accelerator code path on CPU.
_HOST_SCALARS: bool | None = None


class _Metric:
    """Euclidean metric ``K(p) = p^T M^-1 p / 2`` from a per-chain inverse mass matrix."""

    def __init__(self, inverse_mass: Tensor):
        self.set(inverse_mass)

    def set(self, inverse_mass: Tensor) -> None:
        self.inverse_mass = inverse_mass
        self.dense = inverse_mass.ndim == 3
        if self.dense:
            # M^-1 = L L^T  =>  p = L^-T z has covariance (L L^T)^-1 = M, without forming M.
            chol = torch.linalg.cholesky(inverse_mass)
            eye = torch.eye(inverse_mass.shape[-1], dtype=inverse_mass.dtype, device=inverse_mass.device)
            self.sqrt_mass = torch.linalg.solve_triangular(chol.mT, eye.expand_as(chol), upper=True)
        else:
            self.sqrt_mass = inverse_mass.rsqrt()

    def velocity(self, p: Tensor) -> Tensor:
        """``dq/dt = M^-1 p`` (chains, D), also the ``p_sharp`` of the U-turn criterion."""
        if self.dense:
            return (self.inverse_mass @ p.unsqueeze(-1)).squeeze(-1)
        return self.inverse_mass * p

    def momentum(self, z: Tensor) -> Tensor:
        """A draw ``p ~ N(0, M)`` from standard normal ``z`` (chains, D)."""
        if self.dense:
            return (self.sqrt_mass @ z.unsqueeze(-1)).squeeze(-1)
        return self.sqrt_mass * z


try:  # the engine call behind torch.autograd.grad, without its per-call argument checks
    from torch.autograd.graph import _engine_run_backward
except ImportError:  # pragma: no cover - older or newer torch: use the public API
    _engine_run_backward = None


class _Gradient:
    """``q -> (U(q), dU/dq)`` for a batched potential, by one autograd call for all chains.

    The first call goes through ``torch.autograd.grad`` and checks the output shape; later calls
    go straight to the autograd engine with the same arguments, which saves the ~50 us of Python
    argument normalisation that ``torch.autograd.grad`` spends on every call (measurable against
    a 64 x 64 FFT potential).
    """

    def __init__(self, potential_fn: Callable[[Tensor], Tensor], chains: int):
        self.fn = potential_fn
        self.chains = chains
        self.ones: Tensor | None = None

    def __call__(self, q: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            x = q.detach().requires_grad_(True)
            u = self.fn(x)
            if self.ones is None or _engine_run_backward is None:
                if not isinstance(u, Tensor) or tuple(u.shape) != (self.chains,):
                    shape = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
                    raise ValueError(
                        f"potential_fn: expected a tensor of shape ({self.chains},), got {shape}")
                self.ones = torch.ones_like(u)
                # Chains are independent, so the gradient of sum_c U_c is each chain's own
                # gradient; grad_outputs = 1 gives it without building the sum.
                (g,) = torch.autograd.grad(u, x, grad_outputs=self.ones)
            else:
                (g,) = _engine_run_backward((u,), (self.ones,), False, False, (x,), False,
                                            accumulate_grad=False)
        return u.detach(), g


def _vdot(a: Tensor, b: Tensor) -> Tensor:
    return torch.linalg.vecdot(a, b)


def chain_seeds(seed: int, chains: int) -> list[int]:
    """Independent 63-bit seeds of the chains' own generators from one user seed (numpy's
    ``SeedSequence``, so nearby user seeds give unrelated streams)."""
    words = np.random.SeedSequence(int(seed)).generate_state(chains, dtype=np.uint64)
    return [int(w >> np.uint64(1)) for w in words]


class _ChainRandom:
    """One torch generator per chain, each drawing a fixed amount per transition.

    Why not one generator for the batch: with per-chain streams a chain's trajectory depends
    only on its own seed and state, not on which other chains share its batch, so chains split
    across processes (``chain_method="parallel"``) give the same draws as one batch. Each
    transition takes one momentum draw and one block of ``2 max_depth + 2^max_depth - 1``
    uniforms per chain (directions, top-level and leaf multinomial choices) whether or not the
    tree uses them all -- a few microseconds, against milliseconds of gradients.
    """

    def __init__(self, seeds: list[int], device: torch.device):
        self.gens = []
        for s in seeds:
            g = torch.Generator(device=device)
            g.manual_seed(s)
            self.gens.append(g)

    def normal(self, dim: int, rows=None, **kw) -> Tensor:
        """(chains, dim) standard normals; only the chains in ``rows`` (all by default) draw,
        the others get zeros."""
        if rows is None:
            return torch.stack([torch.randn(dim, generator=g, **kw) for g in self.gens])
        out = torch.zeros(len(self.gens), dim, **kw)
        for c in rows:
            out[c] = torch.randn(dim, generator=self.gens[c], **kw)
        return out

    def uniform(self, n: int, **kw) -> Tensor:
        """(chains, n) uniforms on [0, 1)."""
        return torch.stack([torch.rand(n, generator=g, **kw) for g in self.gens])


def _find_reasonable_step_size(grad, metric, q, u, g, step_size, rng: _ChainRandom) -> Tensor:
    """NumPyro's heuristic, per chain: halve or double ``eps`` until the one-step acceptance
    ``exp(-dH)`` crosses 0.8; the first step size on the other side is returned."""
    chains = q.shape[0]
    finfo = torch.finfo(q.dtype)
    direction = torch.zeros(chains, dtype=q.dtype, device=q.device)
    last = torch.zeros_like(direction)
    active = torch.ones(chains, dtype=torch.bool, device=q.device)
    log_target = math.log(0.8)
    # log2(max / tiny) doublings sweep the whole exponent range; NumPyro's loop is unbounded.
    for _ in range(2 * int(math.log2(finfo.max) - math.log2(finfo.tiny)) + 4):
        step_size = torch.where(active, step_size * torch.exp2(direction), step_size)
        rows = active.nonzero().flatten().tolist()
        p = metric.momentum(rng.normal(q.shape[1], rows, dtype=q.dtype, device=q.device))
        h0 = u + 0.5 * _vdot(p, metric.velocity(p))
        eps = step_size.unsqueeze(-1)
        p1 = torch.addcmul(p, eps, g, value=-0.5)
        # Frozen chains keep their position so that extreme step sizes never reach the model.
        q1 = torch.where(active.unsqueeze(-1), torch.addcmul(q, eps, metric.velocity(p1)), q)
        u1, g1 = grad(q1)
        p1 = torch.addcmul(p1, eps, g1, value=-0.5)
        delta = u1 + 0.5 * _vdot(p1, metric.velocity(p1)) - h0
        new = torch.where(log_target < -delta, 1.0, -1.0).to(q.dtype)  # NaN energy => shrink
        last = torch.where(active, direction, last)
        direction = torch.where(active, new, direction)
        sane = ((step_size > finfo.tiny) | (direction >= 0)) & ((step_size < finfo.max) | (direction <= 0))
        active = active & sane & ((last == 0) | (direction == last))
        if not bool(active.any()):
            break
    return step_size


_NP_DTYPE = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def _where_rows_host(mask: np.ndarray, a: Tensor, b: Tensor) -> Tensor:
    """``where(mask[:, None], a, b)`` for a host-side boolean ``mask``; free when it is uniform."""
    k = int(np.count_nonzero(mask))
    if k == len(mask):
        return a
    if k == 0:
        return b
    return torch.where(torch.from_numpy(mask).unsqueeze(-1), a, b)


def _blend_rows_host(mask: np.ndarray, a: Tensor, b: Tensor) -> Tensor:
    """Rows of ``a`` where ``mask`` else rows of ``b``, exact when both rows are finite.

    ``torch.lerp(b, a, w)`` returns ``b`` for ``w = 0`` and ``a`` for ``w = 1`` exactly (it
    evaluates ``a - (a - b)(1 - w)`` for ``w >= 0.5``) and is vectorised on CPU, where
    ``torch.where`` over (chains, D) runs a scalar loop at about 4x the cost of an ``add``. Used
    where rows that are not finite belong to chains whose values are discarded anyway.
    """
    k = int(np.count_nonzero(mask))
    if k == len(mask):
        return a
    if k == 0:
        return b
    return torch.lerp(b, a, torch.from_numpy(mask.astype(_NP_DTYPE[a.dtype])).unsqueeze(-1))


def _where_rows_device(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(mask.unsqueeze(-1), a, b)


class _NUTS:
    """One multinomial-NUTS transition for a batch of chains (see the module docstring).

    The (chains, D) state (positions, momenta, gradients, checkpoints) is always a torch tensor
    on the input's device. The per-chain scalars (energies, log-weights, masks, random
    numbers) live in ``xp``: numpy on CPU, where a torch tensor shares its memory with a numpy
    array and numpy's dispatch on 4-element arrays is several times cheaper than torch's; torch
    on accelerators, where host round trips would stall the device.
    """

    def __init__(self, grad: _Gradient, metric: _Metric, max_tree_depth: int, q: Tensor):
        self.grad, self.metric, self.max_depth = grad, metric, max_tree_depth
        chains, dim = q.shape
        self.kw = {"dtype": q.dtype, "device": q.device}
        # Checkpoints of the subtree being built: for an even leaf k, P_k = S_k - p_k / 2 (S the
        # running momentum sum) and V_k = M^-1 p_k, so the U-turn test of the balanced sub-tree
        # k..n only needs rho = (S_n - p_n / 2) - P_k (= sum_{k..n} p - (p_k + p_n) / 2).
        self.ckpt_sum = torch.empty(max_tree_depth, chains, dim, **self.kw)
        self.ckpt_vel = torch.empty_like(self.ckpt_sum)
        # Leaf n of a subtree stores its checkpoint at index popcount(n >> 1) (n even) and, for n
        # odd, tests the sub-trees closed by its trailing ones: indices idx_max - ones + 1..idx_max.
        n_max = 2 ** (max_tree_depth - 1)
        self.ckpt_idx = []
        for n in range(n_max):
            idx_max = bin(n >> 1).count("1")
            ones = len(bin(n)) - len(bin(n).rstrip("1")) if n & 1 else 0
            self.ckpt_idx.append((idx_max - ones + 1, idx_max))
        host = q.device.type == "cpu" and q.dtype in _NP_DTYPE  # numpy has no bfloat16
        self.host = host if _HOST_SCALARS is None else _HOST_SCALARS
        if self.host:
            self.xp = np
            self.to_xp = Tensor.numpy  # zero-copy view
            self.to_torch = torch.from_numpy
            self.select, self.blend = _where_rows_host, _blend_rows_host
            self.sync_every = 1  # a host check is free and lets a subtree stop early
            self.w_buf = torch.empty(n_max, chains, dtype=q.dtype).numpy()
            self.dead_buf = np.empty((n_max, chains), dtype=bool)
            self.false = np.zeros(chains, dtype=bool)
            self.zero_int = np.zeros(chains, dtype=np.int64)
        else:
            self.xp = torch
            self.to_xp = self.to_torch = lambda t: t
            self.select = self.blend = _where_rows_device
            self.sync_every = 8
            self.w_buf = torch.empty(n_max, chains, **self.kw)
            self.dead_buf = torch.empty(n_max, chains, dtype=torch.bool, device=q.device)
            self.false = torch.zeros(chains, dtype=torch.bool, device=q.device)
            self.zero_int = torch.zeros(chains, dtype=torch.long, device=q.device)

    def _subtree(self, depth, q, p, g, eps, h0, dead, log_u):
        """Integrate ``2^depth`` leaves from (q, p, g); uniform multinomial choice among them.

        ``dead`` (chains,) marks chains that take no part (their position is frozen). Returns the
        last leaf, the subtree's log-weight, momentum sum and proposal, the updated ``dead`` and
        the per-chain step count, summed acceptance and divergence flag.
        """
        xp, to_xp, blend, host = self.xp, self.to_xp, self.blend, self.host
        grad, velocity = self.grad, self.metric.velocity
        ckpt_sum, ckpt_vel, ckpt_idx = self.ckpt_sum, self.ckpt_vel, self.ckpt_idx
        n_leaves = 2**depth
        # Per-leaf log-weights and masks go to buffers; the statistics are reduced once at the end.
        w_buf, dead_buf = self.w_buf[:n_leaves], self.dead_buf[:n_leaves]
        weight = xp.full_like(h0, -math.inf)
        p_sum = torch.zeros_like(p)
        prop_q, prop_g, prop_u, prop_w = q, g, h0, weight
        v = p
        n_done = n_leaves
        # Dead chains are frozen. On the host their step size is set to zero (q, p unchanged
        # exactly; momenta made finite below so that 0 * p stays 0); on accelerators their
        # position is kept by a where, NaN-proof without a host check.
        # With a diagonal metric the drift q += eps M^-1 p is one fused op on eps M^-1.
        diag = not self.metric.dense
        n_dead = -1
        eps_live, half = eps, 0.5 * eps
        eps_minv = eps * self.metric.inverse_mass if diag else None
        dead_c = None if host else dead.unsqueeze(-1)
        for n in range(n_leaves):
            if host and n_dead != (k := int(np.count_nonzero(dead))):
                n_dead = k
                eps_live = eps * torch.from_numpy((~dead).astype(_NP_DTYPE[eps.dtype])).unsqueeze(-1)
                half = 0.5 * eps_live
                if diag:
                    eps_minv = eps_live * self.metric.inverse_mass
            p = torch.addcmul(p, half, g, value=-1.0)
            q_new = torch.addcmul(q, eps_minv, p) if diag else torch.addcmul(q, eps_live, velocity(p))
            q = q_new if host else torch.where(dead_c, q, q_new)
            u, g = grad(q)
            p = torch.addcmul(p, half, g, value=-1.0)
            v = velocity(p)
            u = to_xp(u)
            # w = H0 - H, the leaf's log-weight; NaN or infinite energy => weight 0, divergence.
            w = h0 - u - 0.5 * to_xp(_vdot(p, v))
            if host:
                if not np.isfinite(w).all():
                    w = np.where(np.isfinite(w), w, -math.inf)
                    p, g = torch.nan_to_num(p, 0.0, 0.0, 0.0), torch.nan_to_num(g, 0.0, 0.0, 0.0)
                    v = velocity(p)
            else:
                w = torch.nan_to_num(w, nan=-math.inf, posinf=-math.inf)
            w_buf[n] = w
            dead_buf[n] = dead
            new_weight = xp.logaddexp(weight, w)
            take = log_u[n] < w - new_weight
            prop_u = xp.where(take, u, prop_u)
            prop_w = xp.where(take, w, prop_w)
            prop_q = blend(take, q, prop_q)
            prop_g = blend(take, g, prop_g)
            weight = new_weight
            p_sum += p
            lo, hi = ckpt_idx[n]
            stop = w < -_MAX_DELTA_ENERGY
            if n % 2 == 0:
                torch.add(p_sum, p, alpha=-0.5, out=ckpt_sum[hi])
                ckpt_vel[hi].copy_(v)
            else:
                rho = torch.add(p_sum, p, alpha=-0.5) - ckpt_sum[lo:hi + 1]
                d = to_xp(torch.minimum(_vdot(ckpt_vel[lo:hi + 1], rho), _vdot(v, rho)))
                stop = stop | (d <= 0).any(0)
            dead = dead | stop
            if not host:
                dead_c = dead.unsqueeze(-1)
            if (n + 1) % self.sync_every == 0 and n + 1 < n_leaves and bool(dead.all()):
                n_done = n + 1
                break
        live = ~dead_buf[:n_done]
        w_all = w_buf[:n_done]
        steps = live.sum(0)
        accept = xp.where(live, xp.exp(w_all.clip(max=0.0)), 0.0).sum(0)
        diverging = (live & (w_all < -_MAX_DELTA_ENERGY)).any(0)
        return (q, p, g, v, weight, p_sum, prop_q, prop_u, prop_g, prop_w, dead, diverging, steps,
                accept)

    def transition(self, q0: Tensor, u0: Tensor, g0: Tensor, step_size: Tensor, rng: _ChainRandom):
        """One NUTS draw per chain from (q0, U(q0), grad U(q0)); returns (q, U, grad, stats)."""
        xp, to_xp, metric, max_depth = self.xp, self.to_xp, self.metric, self.max_depth
        select, blend = self.select, self.blend
        kw = self.kw
        p0 = metric.momentum(rng.normal(q0.shape[1], **kw))
        v0 = metric.velocity(p0)
        u0 = to_xp(u0)
        h0 = u0 + 0.5 * to_xp(_vdot(p0, v0))
        # Rows: max_depth directions, max_depth top-level choices, then the leaves of subtree j
        # at max_depth + 2^j - 1 ... (see _ChainRandom: a fixed amount per chain and transition).
        draws = to_xp(rng.uniform(2 * max_depth + 2**max_depth - 1, **kw).T.contiguous())
        going_right, log_u = draws[:max_depth] < 0.5, xp.log(draws[max_depth:])
        step = to_xp(step_size)
        # Tree state: both ends (q, p, grad, velocity), the multinomial proposal with its
        # log-weight w = H0 - H, the tree's log-weight and the momentum sum of the trajectory.
        # A chain that is done keeps its proposal; its other fields may go stale, unused.
        ql, pl, gl, vl = q0, p0, g0, v0
        qr, pr, gr, vr = q0, p0, g0, v0
        prop_q, prop_u, prop_g = q0, u0, g0
        prop_w = weight = xp.zeros_like(h0)
        p_sum = p0
        done = self.false
        depth = self.zero_int
        steps = self.zero_int
        accept = xp.zeros_like(h0)
        diverging = self.false
        for j in range(max_depth):
            if j > 0 and bool(done.all()):
                break
            right = going_right[j]
            eps = self.to_torch(xp.where(right, step, -step)).unsqueeze(-1)
            (q, p, g, v, w_sub, p_sum_sub, sq, su, sg, sw, dead, div, n_steps, acc) = self._subtree(
                j, blend(right, qr, ql), blend(right, pr, pl), blend(right, gr, gl), eps, h0, done,
                log_u[max_depth + 2**j - 1: max_depth + 2 ** (j + 1) - 1])
            steps = steps + n_steps
            accept = accept + acc
            diverging = diverging | div
            depth = depth + ~done
            # Biased progressive sampling: move to the new subtree with prob min(1, W_new / W_old),
            # never to a subtree that turned or diverged, nor for a chain already done.
            take = ~dead & (log_u[j] < w_sub - weight)
            prop_u = xp.where(take, su, prop_u)
            prop_w = xp.where(take, sw, prop_w)
            # NaN-proof here: a chain that is done keeps its proposal whatever its subtree holds.
            prop_q = select(take, sq, prop_q)
            prop_g = select(take, sg, prop_g)
            weight = xp.logaddexp(weight, w_sub)
            p_sum = p_sum + p_sum_sub
            # Rows that are not finite can only belong to chains that are now done.
            qr, pr, gr, vr = (blend(right, a, b) for a, b in ((q, qr), (p, pr), (g, gr), (v, vr)))
            ql, pl, gl, vl = (blend(right, b, a) for a, b in ((q, ql), (p, pl), (g, gl), (v, vl)))
            rho = p_sum - 0.5 * (pl + pr)
            turning = to_xp(torch.minimum(_vdot(vl, rho), _vdot(vr, rho))) <= 0
            done = dead | turning
        stats = {
            "accept_prob": accept / steps.clip(min=1),
            "num_steps": steps,
            "tree_depth": depth,
            "diverging": diverging,
            "energy": h0 - prop_w,
            "potential_energy": prop_u,
        }
        return prop_q, self.to_torch(prop_u), prop_g, stats


def _as_step_size(step_size, chains: int, like: Tensor) -> Tensor:
    eps = torch.as_tensor(step_size, dtype=like.dtype, device=like.device).detach().clone()
    if eps.ndim > 1 or (eps.ndim == 1 and eps.numel() not in (1, chains)):
        raise ValueError(f"step_size: expected a scalar or shape ({chains},), got shape {tuple(eps.shape)}")
    if not (torch.isfinite(eps).all() and (eps > 0).all()):
        raise ValueError(f"step_size: must be finite and > 0, got {step_size!r}")
    return eps.expand(chains).clone()


def sample(
    potential_fn: Callable[[Tensor], Tensor],
    initial_params: Tensor,
    num_samples: int,
    warmup_steps: int,
    *,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    step_size: float | Tensor | None = None,
    seed: int | None = None,
    progress_bar: bool = True,
    chain_method: str = "vectorized",
    processes: int | None = None,
) -> dict[str, Tensor]:
    r"""Run batched multinomial NUTS on the flat potential ``U(q) = -log p(q)``.

    Every chain has its own momentum, tree, step size and mass matrix; all chains advance in
    lockstep so each leapfrog step calls ``potential_fn`` once on the whole batch.

    Arguments:
        potential_fn: ``q (chains, D) -> U (chains,)``, the negative log joint density on the
            flat unconstrained space, differentiable by autograd; rows must not interact.
        initial_params: starting points (chains, D); its device and dtype are used throughout.
        num_samples: draws kept per chain after warm-up.
        warmup_steps: adaptation iterations (discarded): dual-averaging step size and, when
            there are at least 20, windowed mass-matrix estimates.
        target_accept: target mean acceptance statistic of the dual averaging, in (0, 1).
        max_tree_depth: at most ``2^max_tree_depth - 1`` leapfrog steps per transition.
        dense_mass: adapt a full (D, D) inverse mass matrix instead of its diagonal.
        step_size: initial step size (scalar or (chains,)); ``None`` finds one heuristically.
            With ``warmup_steps = 0`` a given step size is used unchanged.
        seed: seeds the chains' own generators (:func:`chain_seeds`); ``None`` draws one from
            torch's global RNG. Chain ``c``'s draws depend only on ``seed`` and its own start,
            not on the number of chains beside it nor on ``chain_method``.
        progress_bar: show a tqdm bar over iterations (of the first process when parallel).
        chain_method: ``"vectorized"``: all chains in lockstep in this process, one potential
            call per leapfrog step for the batch (the choice on accelerators and for cheap
            potentials). ``"parallel"``: the chains split into ``processes`` contiguous blocks,
            each run vectorized in a forked CPU process -- the way to use several cores when
            one potential call is too small to keep them busy (a 64 x 64 map).
        processes: worker processes for ``"parallel"``; default: the usable CPU cores, at most
            one per chain.

    Returns:
        A dict of tensors: ``samples`` (chains, num_samples, D); per draw (chains, num_samples)
        ``diverging`` (bool), ``energy`` (Hamiltonian of the chosen point), ``potential_energy``,
        ``accept_prob`` (mean over the trajectory), ``num_steps``, ``tree_depth``; and the
        adapted ``step_size`` (chains,) and ``inverse_mass_matrix`` (chains, D) or (chains, D, D).

    Example:
        >>> q0 = torch.zeros(2, 3)
        >>> out = sample(lambda q: 0.5 * (q**2).sum(-1), q0, 50, 50, seed=0, progress_bar=False)
        >>> out["samples"].shape, out["step_size"].shape
        (torch.Size([2, 50, 3]), torch.Size([2]))
    """
    if not isinstance(initial_params, Tensor) or initial_params.ndim != 2:
        is_t = isinstance(initial_params, Tensor)
        shape = tuple(initial_params.shape) if is_t else type(initial_params).__name__
        raise ValueError(f"initial_params: expected a tensor of shape (chains, D), got {shape}")
    if not initial_params.is_floating_point():
        raise ValueError(f"initial_params: expected a floating dtype, got {initial_params.dtype}")
    if not torch.isfinite(initial_params).all():
        raise ValueError("initial_params: contains non-finite values")
    for name, value in (("num_samples", num_samples), ("warmup_steps", warmup_steps)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    if not 0.0 < target_accept < 1.0:
        raise ValueError(f"target_accept: must be in (0, 1), got {target_accept!r}")
    if int(max_tree_depth) != max_tree_depth or max_tree_depth < 1:
        raise ValueError(f"max_tree_depth: expected an integer >= 1, got {max_tree_depth!r}")
    num_samples, warmup_steps, max_tree_depth = int(num_samples), int(warmup_steps), int(max_tree_depth)

    if chain_method not in ("vectorized", "parallel"):
        raise ValueError(f"chain_method: expected 'vectorized' or 'parallel', got {chain_method!r}")
    if processes is not None and (int(processes) != processes or processes < 1):
        raise ValueError(f"processes: expected an integer >= 1, got {processes!r}")
    chains = initial_params.shape[0]
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    seeds = chain_seeds(seed, chains)
    options = dict(num_samples=num_samples, warmup_steps=warmup_steps, target_accept=target_accept,
                   max_tree_depth=max_tree_depth, dense_mass=dense_mass, step_size=step_size)
    q = initial_params.detach().clone()
    groups = 1
    if chain_method == "parallel":
        if q.device.type != "cpu":
            raise ValueError(f"chain_method: 'parallel' runs chains in CPU processes; on {q.device.type} "
                             "use 'vectorized' (one batch on the device)")
        if "fork" not in mp.get_all_start_methods():
            raise ValueError("chain_method: 'parallel' needs the 'fork' start method, which this "
                             "platform lacks; use 'vectorized'")
        groups = min(chains, processes or usable_cores())
    if groups <= 1:
        return _run_batch(potential_fn, q, seeds, progress_bar=progress_bar, **options)
    return _run_parallel(potential_fn, q, seeds, groups, progress_bar=progress_bar, **options)


def default_chain_method(chains: int, device: torch.device) -> str:
    """"parallel" where it can run and help (CPU, fork, >= 2 chains and cores), else "vectorized"."""
    parallel = (chains >= 2 and device.type == "cpu" and usable_cores() >= 2
                and "fork" in mp.get_all_start_methods())
    return "parallel" if parallel else "vectorized"


def _run_batch(potential_fn, q: Tensor, seeds: list[int], *, num_samples, warmup_steps, target_accept,
               max_tree_depth, dense_mass, step_size, progress_bar, desc: str = "") -> dict[str, Tensor]:
    """All chains of ``q`` (chains, D) in lockstep in this process; see :func:`sample`."""
    chains, dim = q.shape
    kw = {"dtype": q.dtype, "device": q.device}
    rng = _ChainRandom(seeds, q.device)
    grad = _Gradient(potential_fn, chains)

    # -inf - (-inf) = NaN in a log-weight difference is expected (a first leaf that diverged) and
    # compares False, which is what the sampler wants: silence numpy's warnings about it.
    with torch.no_grad(), np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        u, g = grad(q)
        bad = ~(torch.isfinite(u) & torch.isfinite(g).all(-1))
        if bad.any():
            raise ValueError(f"initial_params: potential or gradient not finite for chains "
                             f"{bad.nonzero().flatten().tolist()}")
        if dense_mass:
            inverse_mass = torch.eye(dim, **kw).expand(chains, dim, dim).clone()
        else:
            inverse_mass = torch.ones(chains, dim, **kw)
        metric = _Metric(inverse_mass)
        eps = _as_step_size(1.0 if step_size is None else step_size, chains, q)
        if step_size is None or warmup_steps > 0:
            eps = _find_reasonable_step_size(grad, metric, q, u, g, eps, rng)
        nuts = _NUTS(grad, metric, max_tree_depth, q)

        schedule = adaptation_schedule(warmup_steps)
        averaging = DualAveraging(torch.log(10 * eps))
        welford = Welford(chains, dim, dense_mass, **kw)
        window = 0
        finfo = torch.finfo(q.dtype)

        samples = torch.empty(chains, num_samples, dim, **kw)
        stat_names = ("diverging", "energy", "potential_energy", "accept_prob", "num_steps", "tree_depth")
        stat_dtypes = {"diverging": torch.bool, "tree_depth": torch.long}
        stats_out = {k: torch.empty(chains, num_samples, dtype=stat_dtypes.get(k, q.dtype), device=q.device)
                     for k in stat_names}

        bar = None
        if progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=warmup_steps + num_samples,
                       desc=f"{desc}warmup" if warmup_steps else f"{desc}sample")
        try:
            for it in range(warmup_steps + num_samples):
                q, u, g, stats = nuts.transition(q, u, g, eps, rng)
                if it < warmup_steps:
                    accept_prob = torch.as_tensor(stats["accept_prob"]).to(**kw)
                    log_eps = averaging.update(accept_prob, target_accept)
                    if it == warmup_steps - 1:
                        log_eps = averaging.x_avg  # Stan keeps the averaged iterate
                    eps = log_eps.exp().clamp(finfo.tiny, finfo.max)
                    middle = 0 < window < len(schedule) - 1
                    if middle:
                        welford.update(q)
                    if it == schedule[window][1]:
                        if middle:
                            metric.set(welford.covariance(regularize=True))
                            welford.reset()
                            eps = _find_reasonable_step_size(grad, metric, q, u, g, eps, rng)
                            averaging.reset(torch.log(10 * eps))
                        window += 1
                else:
                    i = it - warmup_steps
                    samples[:, i] = q
                    for k in stat_names:
                        stats_out[k][:, i] = torch.as_tensor(stats[k])
                if bar is not None:
                    bar.update(1)
                    if it + 1 == warmup_steps:
                        bar.set_description(f"{desc}sample")
                    if it % 10 == 0:
                        bar.set_postfix(step=f"{float(eps.mean()):.3g}",
                                        depth=f"{float(stats['tree_depth'].sum()) / chains:.2g}")
        finally:
            if bar is not None:
                bar.close()

    out = {"samples": samples, **stats_out, "step_size": eps,
           "inverse_mass_matrix": metric.inverse_mass}
    return out


def _run_parallel(potential_fn, q: Tensor, seeds: list[int], groups: int, *, progress_bar,
                  **options) -> dict[str, Tensor]:
    """Chains split into ``groups`` contiguous blocks, each run by :func:`_run_batch` in a forked
    process; results concatenated along the chain axis.

    Why fork and not spawn (Pyro's and the benchmark's choice for whole programs): the potential
    is typically a closure over a Pyro model and its data, which cannot be pickled; a forked
    child inherits it as it is. Only the children's results (numpy arrays this module made) cross
    the pipe. Each child runs torch on ONE thread: a forked child of a process whose GNU OpenMP
    pool has run hangs in its first multi-threaded op (measured here: a 3000 x 3000 product
    never returns), and one thread per process is what the split across cores is for anyway.
    """
    ctx = mp.get_context("fork")
    blocks = np.array_split(np.arange(q.shape[0]), groups)

    def child(conn, k, rows):
        try:
            set_parent_death_signal()
            torch.set_num_threads(1)
            lo, hi = int(rows[0]), int(rows[-1]) + 1
            out = _run_batch(potential_fn, q[lo:hi].clone(), seeds[lo:hi],
                             progress_bar=progress_bar and k == 0,
                             desc=f"chains {lo}-{hi - 1} of {q.shape[0]}: ", **options)
            conn.send(("ok", {key: v.numpy() for key, v in out.items()}))
        except BaseException as err:  # report any failure to the parent, then exit
            conn.send(("error", f"{type(err).__name__}: {err}"))
        finally:
            conn.close()

    procs, conns = [], []
    try:
        for k, rows in enumerate(blocks):
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=child, args=(send, k, rows), daemon=True)
            proc.start()
            send.close()
            procs.append(proc)
            conns.append(recv)
        results = []
        for k, conn in enumerate(conns):
            try:
                status, payload = conn.recv()
            except EOFError:
                raise RuntimeError(f"chain_method='parallel': worker {k} died without a result "
                                   f"(exit code {procs[k].exitcode})") from None
            if status != "ok":
                raise RuntimeError(f"chain_method='parallel': worker {k} failed: {payload}")
            results.append(payload)
    finally:
        stop_processes(procs, timeout=5)
    out = {key: torch.from_numpy(np.concatenate([r[key] for r in results], 0)).to(q.device)
           for key in results[0]}
    return out
