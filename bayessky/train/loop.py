"""The generic trainer for likelihood-trained networks (flows: NLL, VAE: negative ELBO).

One loop for every kind: Adam, ``ReduceLROnPlateau`` on the validation loss (HIGlow: factor
0.8, patience 10, floor 1e-5), gradient-norm clipping (2.0), an augmentation hook, early
stopping, a tqdm bar, a training state written atomically after every epoch, exact resume, and
at the end the prior folder (``weights.safetensors`` + ``card.json`` with held-out metrics).

Output folder ``out``::

    out/state.safetensors    training state after the last finished epoch (resume reads it)
    out/history.json         per-epoch losses and learning rates
    out/weights.safetensors  the trained (best-validation) network   } written at the end,
    out/card.json            its model card                          } when a card is given

Resume is exact: the state holds model, best model, Adam moments and step counts, scheduler
fields, early-stopping counters and every random state (torch CPU/CUDA, numpy, python and the
trainer's own shuffling and augmentation generators), so an interrupted run continued with
``resume=True`` produces the same weights as an uninterrupted one (same device, same threads).

Several processes (``torchrun``, see :mod:`bayessky.train.distributed`): when a process group of
more than one process is initialised, ``fit`` trains with ``DistributedDataParallel``. Every rank
draws the same global permutation and augments the same global batch of ``batch_size`` maps with
the same generators, then trains on its contiguous slice; each rank's loss is its share of the
global mean, so DDP's gradient average is the gradient of one process at the same batch size.
ActNorm initialises from the global first batch, validation and test losses are sums over the
ranks' slices, and rank 0 alone writes files (the others wait at a barrier). One process
(no group) runs exactly the code it always did.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from .._validate import device_dtype
from ..atomic import write_json
from ..nn.layers import actnorm_reduction
from ..priors.checkpoint import match_state, read_card
from ._common import (
    MapData,
    as_map_data,
    capture_rng,
    clone_state,
    hardware,
    progress_bar,
    restore_rng,
    write_prior,
)
from .checkpoint import load_state, save_state
from .distributed import Group, current_group, data_parallel
from .losses import Objective, bits_per_pixel, objective_for

__all__ = ["TrainConfig", "TrainResult", "fit", "evaluate", "STATE_FILE"]

STATE_FILE = "state.safetensors"
STATE_FORMAT = "bayessky-train-state-v1"


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`fit` (defaults: HIGlow's training settings, Friedman & Hassan
    2022, https://github.com/friedmanroy/HI-generation).

    Arguments:
        epochs: total epochs (a resumed run continues up to this number).
        batch_size: maps per step; the last partial batch of an epoch is used too.
        lr, betas, weight_decay: Adam.
        grad_clip: max global gradient norm (None: no clipping).
        lr_factor, lr_patience, min_lr: ``ReduceLROnPlateau`` on the monitored loss.
        early_stopping: stop after this many epochs without improvement (None: never).
        eval_batch_size: maps per forward pass when evaluating.
        seed: seeds shuffling, augmentation and the evaluation noise (VAE).
        progress: show tqdm bars on stderr: epochs (with the ETA of the run) and the batches of
            the current epoch (with the ETA of the epoch).
        restore_best: end with the weights of the best monitored epoch.
        max_minutes: wall-time budget of this call, checked between batches: once spent, the
            epoch ends after the current batch (its record has ``partial_epoch``), is evaluated
            and checkpointed, and training stops. Several processes check it at epoch ends only
            (every rank must run the same batches).
        compile: train through ``torch.compile(objective)`` (inductor: fused kernels; evaluation
            stays eager). The HIGlow-size conditional Glow (6 levels x 20 steps, 64 x 64, batch
            32, one CPU thread) trains 1.26x faster (55.0 -> 69.4 maps/s,
            ``benchmarks/flow_throughput.py --levers base,compile``), after minutes of
            compilation; gradients agree with eager ones to 2e-6 of their largest. Not yet with
            several processes (DDP).
    """

    epochs: int = 100
    batch_size: int = 32
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float | None = 2.0
    lr_factor: float = 0.8
    lr_patience: int = 10
    min_lr: float = 1e-5
    early_stopping: int | None = None
    eval_batch_size: int = 256
    seed: int = 0
    progress: bool = True
    restore_best: bool = True
    max_minutes: float | None = None
    compile: bool = False

    def __post_init__(self):
        for key in ("epochs", "batch_size", "lr_patience", "eval_batch_size"):
            v = getattr(self, key)
            if int(v) != v or v < (0 if key in ("epochs", "lr_patience") else 1):
                raise ValueError(f"{key}: expected a {'non-negative' if key == 'epochs' else 'positive'} "
                                 f"integer, got {v!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr: expected a positive learning rate, got {self.lr!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip: expected a positive norm or None, got {self.grad_clip!r}")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"lr_factor: expected a number in (0, 1), got {self.lr_factor!r}")
        if self.early_stopping is not None and self.early_stopping < 1:
            raise ValueError(f"early_stopping: expected a positive patience or None, "
                             f"got {self.early_stopping!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile: expected True or False, got {self.compile!r}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes: expected a positive number or None, got {self.max_minutes!r}")
        self.betas = tuple(float(b) for b in self.betas)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


class TrainResult(NamedTuple):
    """What :func:`fit` returns."""

    model: torch.nn.Module
    history: list[dict]
    metrics: dict
    card: dict | None


@torch.no_grad()
def evaluate(model: torch.nn.Module, data, objective: str | Objective = "nll", *, batch_size: int = 256,
             seed: int | None = 0, device=None) -> float:
    """Mean per-map loss (nats) over ``data`` in eval mode; stochastic objectives use ``seed``.

    The evaluation runs inside ``torch.random.fork_rng`` so it leaves the training RNG untouched
    and gives the same number for the same weights (useful for plateau and early stopping).
    """
    objective = objective_for(objective)
    data = as_map_data(data, "data")
    dev, dtype = device_dtype(model, device=device)
    was = model.training
    model.eval()
    total = 0.0
    devices = []
    if dev.type == "cuda":
        devices = [dev.index if dev.index is not None else torch.cuda.current_device()]
    try:
        with torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.manual_seed(seed)
            for i in range(0, len(data), batch_size):
                x = data.maps[i:i + batch_size].to(device=dev, dtype=dtype)
                c = data.context
                c = None if c is None else c[i:i + batch_size].to(device=dev, dtype=dtype)
                total += float(objective(model, x, c).to(torch.float64).sum())
    finally:
        model.train(was)
    return total / len(data)


def _check_held_out(train: MapData, **held_out: MapData | None) -> None:
    for nm, d in held_out.items():
        if d is not None and tuple(d.maps.shape[1:]) != tuple(train.maps.shape[1:]):
            raise ValueError(f"{nm}: maps of shape {tuple(d.maps.shape[1:])} differ from the training maps "
                             f"{tuple(train.maps.shape[1:])}")


def _evaluate(model, data: MapData, objective: Objective, cfg: TrainConfig, dev,
              group: Group | None) -> float:
    """:func:`evaluate` with the trainer's settings; with a process group, each rank evaluates its
    contiguous slice and the sums are all-reduced (the mean over all of ``data``)."""
    if group is None:
        return evaluate(model, data, objective, batch_size=cfg.eval_batch_size, seed=cfg.seed + 2, device=dev)
    start, stop = group.shard(len(data))
    local = 0.0
    if stop > start:
        part = MapData(data.maps[start:stop], None if data.context is None else data.context[start:stop])
        local = evaluate(model, part, objective, batch_size=cfg.eval_batch_size, seed=cfg.seed + 2,
                         device=dev) * (stop - start)
    return group.total(local) / len(data)


def _held_out_metrics(model, objective: Objective, cfg: TrainConfig, dev, group: Group | None = None,
                      **held_out: MapData | None) -> dict:
    """``{prefix}_{loss}_per_map`` / ``_per_pixel``, ``{prefix}_bits_per_pixel`` and ``n_{prefix}``
    for each held-out set given."""
    metrics = {}
    for prefix, data in held_out.items():
        if data is not None:
            value = _evaluate(model, data, objective, cfg, dev, group)
            n_pix = int(data.maps[0].numel())
            metrics.update({f"{prefix}_{objective.name}_per_map": value,
                            f"{prefix}_{objective.name}_per_pixel": value / n_pix,
                            f"{prefix}_bits_per_pixel": bits_per_pixel(value, n_pix),
                            f"n_{prefix}": len(data)})
    return metrics


def fit(
    model: torch.nn.Module,
    train,
    val=None,
    *,
    objective: str | Objective = "nll",
    config: TrainConfig | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    out=None,
    resume: bool = False,
    card: Mapping | None = None,
    test=None,
    device=None,
    callback: Callable[[int, dict], bool | None] | None = None,
) -> TrainResult:
    """Train ``model`` by minimising ``objective`` on ``train``; monitor ``val``.

    Arguments:
        model: a network with ``log_prob(x[, context])`` (objective ``"nll"``) or ``elbo(x)``
            (``"elbo"``), already on its device.
        train: maps ``(N, C, H, W)`` in network space, or ``(maps, context)`` with context (N, d);
            or a function ``train(epoch) -> data`` (epoch 1-based) that draws each epoch's data,
            for generators that make fresh maps without end (it must be deterministic in
            ``epoch`` for an exact resume; under several processes every rank calls it).
        val: held-out data of the same form (monitors the scheduler, early stopping, best model);
            without it the training loss is monitored.
        objective: ``"nll"``, ``"elbo"`` or an :class:`~bayessky.train.losses.Objective`.
        config: :class:`TrainConfig`.
        augment: ``augment(x, generator) -> x`` applied to each training batch (e.g.
            :class:`bayessky.data.Augment`), drawing from the trainer's seeded generator.
        out: output folder (state every epoch; prior + card at the end when ``card`` is given).
        resume: continue from ``out/state.safetensors`` if it exists.
        card: partial model card (at least ``kind``, ``architecture``; ``transform``,
            ``context``, ``data``); the trainer adds ``training`` and ``metrics``.
        test: optional second held-out set, reported as ``test_*`` metrics.
        device: where batches go (default: the model's device).
        callback: ``callback(epoch, record)`` after each epoch's checkpoint; return True to stop.

    Under an initialised process group of N > 1 processes (``torchrun``), every rank calls
    ``fit`` with the same data and arguments; ``batch_size`` is the global batch and must be
    divisible by N. See the module's docstring.

    Returns:
        :class:`TrainResult` ``(model, history, metrics, card)``.
    """
    cfg = config or TrainConfig()
    objective = objective_for(objective)
    draw = train if callable(train) else None
    val = as_map_data(val, "val")
    test = as_map_data(test, "test")
    dev, dtype = device_dtype(model, device=device)
    out = Path(out) if out is not None else None
    state_path = out / STATE_FILE if out is not None else None
    group = current_group()
    writes = group is None or group.is_main
    if cfg.compile and group is not None:
        raise ValueError("compile: not yet supported with several processes (DDP); train eagerly")

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.lr_factor,
                                                       patience=cfg.lr_patience, min_lr=cfg.min_lr)
    gens = {"shuffle": torch.Generator().manual_seed(cfg.seed),
            "augment": torch.Generator().manual_seed(cfg.seed + 1)}
    run = _Progress()
    arch = dict(card.get("architecture", {})) if card else None
    if resume and state_path is not None and state_path.exists():
        run = _Progress.from_state(_resume(state_path, card, arch, model, opt, sched, gens))

    def epoch_data(epoch: int) -> MapData:
        data = as_map_data(draw(epoch) if draw is not None else train, "train")
        _check_held_out(data, val=val, test=test)
        if group is not None:
            _check_shardable(cfg, len(data), group)
        return data

    drawn_for = run.epoch + 1
    train = epoch_data(drawn_for)
    n, n_pix = len(train), int(train.maps[0].numel())
    bar = progress_bar(cfg.epochs, min(run.epoch, cfg.epochs), cfg.progress and writes,
                       f"train {objective.name}")
    stop = run.stopped(cfg)
    # with a group: the objective under DistributedDataParallel, and the group to shard batches
    step = None if group is None else (data_parallel(model, objective, dev), group)
    # one graph per batch shape (a full and the last, partial batch): dynamic shapes compile slower code
    train_objective = torch.compile(objective, dynamic=False) if cfg.compile else objective
    # ActNorm's data-dependent init (first batch) from the statistics of the global batch
    scope = contextlib.nullcontext() if group is None else actnorm_reduction(group.all_reduce)
    started = time.perf_counter()
    deadline = None if cfg.max_minutes is None else started + 60.0 * cfg.max_minutes
    out_of_time = False
    with scope, contextlib.closing(bar):
        while run.epoch < cfg.epochs and not stop:
            t0 = time.perf_counter()
            if draw is not None and drawn_for != run.epoch + 1:
                drawn_for = run.epoch + 1
                train = epoch_data(drawn_for)
                n = len(train)
            batches = progress_bar(-(-n // cfg.batch_size), 0, cfg.progress and writes,
                                   f"epoch {run.epoch + 1}", unit="batch", leave=False)
            with contextlib.closing(batches):
                total, seen = _train_epoch(model, train, train_objective, opt, cfg, gens, augment,
                                           (dev, dtype), run.epoch + 1, step, bar=batches,
                                           deadline=deadline if group is None else None)
            if group is not None:
                total = group.total(total)
            record = {"epoch": run.epoch + 1, f"train_{objective.name}_per_map": total / seen,
                      "lr": opt.param_groups[0]["lr"]}
            if seen < n:
                record["partial_epoch"] = seen / n
            out_of_time = deadline is not None and time.perf_counter() >= deadline
            monitor = total / n
            if val is not None:
                monitor = _evaluate(model, val, objective, cfg, dev, group)
                record[f"val_{objective.name}_per_map"] = monitor
            if not math.isfinite(monitor):
                raise FloatingPointError(f"monitored loss is {monitor} at epoch {run.epoch + 1}; lower lr")
            sched.step(monitor)
            run.end_epoch(monitor, model, cfg.restore_best, record, time.perf_counter() - t0)
            stop = run.stopped(cfg)
            if state_path is not None and writes:
                save_state(state_path, {
                    "format": STATE_FORMAT, "kind": card.get("kind") if card else None, "architecture": arch,
                    "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "rng": capture_rng(gens), "config": cfg.to_dict(),
                    **run.state(),
                })
                write_json(out / "history.json", run.history)
            if state_path is not None and group is not None:
                group.barrier()  # the state is on disk before any rank may stop (callback, kill)
            bar.update(1)
            bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in record.items()
                             if k not in ("epoch", "time_s")})
            if callback is not None and callback(run.epoch, record):
                break
            if out_of_time:
                break

    if cfg.restore_best and run.best_state is not None:
        model.load_state_dict(run.best_state)
    model.eval()
    metrics = {"n_pix": n_pix, "best_epoch": run.best_epoch,
               **_held_out_metrics(model, objective, cfg, dev, group, val=val, test=test)}
    full_card = None
    if out is not None and card is not None:
        training = {**cfg.to_dict(), "optimizer": "Adam", "scheduler": "ReduceLROnPlateau",
                    "objective": f"{objective!r} per pixel", "epochs_run": run.epoch,
                    "stopped_early": bool(stop), "final_lr": opt.param_groups[0]["lr"], "time_s": run.elapsed,
                    "hardware": hardware(dev), "augment": getattr(augment, "to_config", lambda: None)()
                    if augment is not None else None,
                    "world_size": 1 if group is None else group.world_size,
                    "backend": None if group is None else group.backend}
        if writes:
            full_card = write_prior(out, model, card, training, metrics, n_train=n,
                                    n_val=None if val is None else len(val))
        if group is not None:
            group.barrier()  # rank 0's prior folder is complete; the others read its card
            full_card = full_card if writes else read_card(out)
    return TrainResult(model, run.history, metrics, full_card)


@dataclass
class _Progress:
    """Where a run stands: epochs done, history, best monitored value and model, time spent.
    Every epoch saves it in the training state and ``resume`` restores it."""

    epoch: int = 0
    history: list = dataclasses.field(default_factory=list)
    best_value: float = math.inf
    best_epoch: int = 0
    bad: int = 0  # epochs since the last improvement
    best_state: dict | None = None
    elapsed: float = 0.0

    @classmethod
    def from_state(cls, st: dict) -> _Progress:
        return cls(int(st["epoch"]), list(st["history"]), float(st["best_value"]), int(st["best_epoch"]),
                   int(st["bad_epochs"]), st["best_model"], float(st["time_s"]))

    def state(self) -> dict:
        return {"epoch": self.epoch, "best_model": self.best_state, "best_value": self.best_value,
                "best_epoch": self.best_epoch, "bad_epochs": self.bad, "history": self.history,
                "time_s": self.elapsed}

    def end_epoch(self, monitor: float, model, keep_best: bool, record: dict, seconds: float) -> None:
        """Count the epoch, track the best monitored value (and its weights), log ``record``."""
        self.epoch += 1
        if monitor < self.best_value:
            self.best_value, self.best_epoch, self.bad = monitor, self.epoch, 0
            self.best_state = clone_state(model) if keep_best else None
        else:
            self.bad += 1
        self.elapsed += seconds
        record["time_s"] = self.elapsed
        self.history.append(record)

    def stopped(self, cfg: TrainConfig) -> bool:
        """Early stopping: ``cfg.early_stopping`` epochs without improvement."""
        return cfg.early_stopping is not None and self.bad >= cfg.early_stopping


def _resume(state_path: Path, card: Mapping | None, arch, model, opt, sched, gens) -> dict:
    """Load a training state into model, optimiser, scheduler and generators; return it."""
    st = load_state(state_path, "state")
    if st.get("format") != STATE_FORMAT:
        raise ValueError(f"resume: {str(state_path)!r} is not a {STATE_FORMAT} file")
    if card is not None and (st.get("kind") != card.get("kind") or st.get("architecture") != arch):
        raise ValueError(f"resume: {str(state_path)!r} was written for kind {st.get('kind')!r} with "
                         "another architecture; use a new --out or the same settings")
    match_state(model, st["model"], st.get("kind") or "given", str(state_path))
    model.load_state_dict(st["model"])
    opt.load_state_dict(st["optimizer"])
    sched.load_state_dict(st["scheduler"])
    restore_rng(st["rng"], gens)
    return st


def _check_shardable(cfg: TrainConfig, n: int, group: Group) -> None:
    """A global batch the ranks can share equally, and a map for every rank in the first batch."""
    if cfg.batch_size % group.world_size:
        raise ValueError(f"batch_size: the global batch {cfg.batch_size} is not divisible by the "
                         f"{group.world_size} processes")
    if n < group.world_size:
        raise ValueError(f"train: {n} maps cannot be shared by {group.world_size} processes")


def _shard_loss(step, x: torch.Tensor, c: torch.Tensor | None, n_pix: int):
    """This rank's per-map losses and its share of the global batch's mean loss per pixel.

    The global batch of ``b`` maps is cut as ``tensor_split`` cuts it; rank r's loss is
    ``sum_r / b * world_size``, so DDP's average over ranks is the global mean whatever the cut
    (equal shards: each rank's local mean). A rank whose shard of a short last batch is empty
    still joins DDP's gradient all-reduce, with one map weighted zero.
    """
    ddp, group = step
    b = x.shape[0]
    start, stop = group.shard(b)
    weight = group.world_size / (b * n_pix)
    if stop == start:
        start, stop, weight = 0, 1, 0.0
    per_map = ddp(x[start:stop], None if c is None else c[start:stop])
    return (per_map if weight else per_map[:0]), per_map.sum() * weight


def _train_epoch(model, train: MapData, objective: Objective, opt, cfg: TrainConfig, gens, augment,
                 where, epoch: int, step=None, bar=None, deadline: float | None = None) -> tuple[float, int]:
    """One pass over ``train`` in shuffled batches (epoch ``epoch``, 1-based); returns the summed
    loss and the number of maps it covers: all of them, or fewer when ``deadline``
    (``time.perf_counter()``) passed after a batch. ``bar`` advances by one per batch.

    With ``step = (ddp, group)`` every rank draws and augments the same global batch and trains
    on its slice of it (:func:`_shard_loss`); the sum is over this rank's maps only.
    """
    dev, dtype = where
    n, n_pix = len(train), int(train.maps[0].numel())
    model.train()
    perm = torch.randperm(n, generator=gens["shuffle"])
    total = 0.0
    for b in range(0, n, cfg.batch_size):
        idx = perm[b:b + cfg.batch_size]
        x = train.maps.index_select(0, idx.to(train.maps.device)).to(device=dev, dtype=dtype)
        c = train.context
        c = None if c is None else c.index_select(0, idx.to(c.device)).to(device=dev, dtype=dtype)
        if augment is not None:
            x = augment(x, gens["augment"])
        if step is None:
            per_map = objective(model, x, c)
            loss = per_map.mean() / n_pix
        else:
            per_map, loss = _shard_loss(step, x, c, n_pix)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training diverged at epoch {epoch}, batch "
                                     f"{b // cfg.batch_size + 1} (loss {float(loss.detach())}); lower lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()  # under DDP: the gradients averaged over the ranks, identical on every rank
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        total += float(per_map.detach().to(torch.float64).sum())
        seen = min(n, b + cfg.batch_size)
        if bar is not None:
            bar.update(1)
        if deadline is not None and time.perf_counter() >= deadline:
            return total, seen
    return total, n
