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
"""

from __future__ import annotations

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
from ..priors.checkpoint import match_state
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
        progress: show a tqdm bar on stderr.
        restore_best: end with the weights of the best monitored epoch.
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


def _held_out_metrics(model, objective: Objective, cfg: TrainConfig, dev, **held_out: MapData | None) -> dict:
    """``{prefix}_{loss}_per_map`` / ``_per_pixel``, ``{prefix}_bits_per_pixel`` and ``n_{prefix}``
    for each held-out set given."""
    metrics = {}
    for prefix, data in held_out.items():
        if data is not None:
            value = evaluate(model, data, objective, batch_size=cfg.eval_batch_size, seed=cfg.seed + 2,
                             device=dev)
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
        train: maps ``(N, C, H, W)`` in network space, or ``(maps, context)`` with context (N, d).
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

    Returns:
        :class:`TrainResult` ``(model, history, metrics, card)``.
    """
    cfg = config or TrainConfig()
    objective = objective_for(objective)
    train = as_map_data(train, "train")
    val = as_map_data(val, "val")
    test = as_map_data(test, "test")
    dev, dtype = device_dtype(model, device=device)
    n_pix = int(train.maps[0].numel())
    _check_held_out(train, val=val, test=test)
    out = Path(out) if out is not None else None
    state_path = out / STATE_FILE if out is not None else None

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.lr_factor,
                                                       patience=cfg.lr_patience, min_lr=cfg.min_lr)
    gens = {"shuffle": torch.Generator().manual_seed(cfg.seed),
            "augment": torch.Generator().manual_seed(cfg.seed + 1)}
    run = _Progress()
    arch = dict(card.get("architecture", {})) if card else None
    if resume and state_path is not None and state_path.exists():
        run = _Progress.from_state(_resume(state_path, card, arch, model, opt, sched, gens))

    n = len(train)
    bar = progress_bar(cfg.epochs, min(run.epoch, cfg.epochs), cfg.progress, f"train {objective.name}")
    stop = run.stopped(cfg)
    try:
        while run.epoch < cfg.epochs and not stop:
            t0 = time.perf_counter()
            total = _train_epoch(model, train, objective, opt, cfg, gens, augment, (dev, dtype),
                                 run.epoch + 1)
            record = {"epoch": run.epoch + 1, f"train_{objective.name}_per_map": total / n,
                      "lr": opt.param_groups[0]["lr"]}
            monitor = total / n
            if val is not None:
                monitor = evaluate(model, val, objective, batch_size=cfg.eval_batch_size,
                                   seed=cfg.seed + 2, device=dev)
                record[f"val_{objective.name}_per_map"] = monitor
            if not math.isfinite(monitor):
                raise FloatingPointError(f"monitored loss is {monitor} at epoch {run.epoch + 1}; lower lr")
            sched.step(monitor)
            run.end_epoch(monitor, model, cfg.restore_best, record, time.perf_counter() - t0)
            stop = run.stopped(cfg)
            if state_path is not None:
                save_state(state_path, {
                    "format": STATE_FORMAT, "kind": card.get("kind") if card else None, "architecture": arch,
                    "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "rng": capture_rng(gens), "config": cfg.to_dict(),
                    **run.state(),
                })
                write_json(out / "history.json", run.history)
            bar.update(1)
            bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in record.items()
                             if k not in ("epoch", "time_s")})
            if callback is not None and callback(run.epoch, record):
                break
    finally:
        bar.close()

    if cfg.restore_best and run.best_state is not None:
        model.load_state_dict(run.best_state)
    model.eval()
    metrics = {"n_pix": n_pix, "best_epoch": run.best_epoch,
               **_held_out_metrics(model, objective, cfg, dev, val=val, test=test)}
    full_card = None
    if out is not None and card is not None:
        training = {**cfg.to_dict(), "optimizer": "Adam", "scheduler": "ReduceLROnPlateau",
                    "objective": f"{objective!r} per pixel", "epochs_run": run.epoch,
                    "stopped_early": bool(stop), "final_lr": opt.param_groups[0]["lr"], "time_s": run.elapsed,
                    "hardware": hardware(dev), "augment": getattr(augment, "to_config", lambda: None)()
                    if augment is not None else None}
        full_card = write_prior(out, model, card, training, metrics, n_train=n,
                                n_val=None if val is None else len(val))
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


def _train_epoch(model, train: MapData, objective: Objective, opt, cfg: TrainConfig, gens, augment,
                 where, epoch: int) -> float:
    """One pass over ``train`` in shuffled batches (epoch ``epoch``, 1-based); the summed loss."""
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
        per_map = objective(model, x, c)
        loss = per_map.mean() / n_pix
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training diverged at epoch {epoch}, batch "
                                     f"{b // cfg.batch_size + 1} (loss {float(loss.detach())}); lower lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        total += float(per_map.detach().to(torch.float64).sum())
    return total
