r"""WGAN-GP training: a critic and a generator, two Adam optimisers, alternating steps.

Each real batch gives one critic step,

.. math:: L_D = \mathbb{E}[D(G(z))] - \mathbb{E}[D(x)] + \lambda\,\mathbb{E}[(\|\nabla D(\hat x)\| - 1)^2],

and every ``critic_steps`` critic steps one generator step :math:`L_G = -\mathbb{E}[D(G(z))]`
(Gulrajani et al. 2017, https://arxiv.org/abs/1704.00028, algorithm 1). Defaults are those of
cosmikyu's DCGAN-WGP (Han, Sehgal & Villaescusa-Navarro 2021, https://arxiv.org/abs/2104.02735):
5 critic steps, :math:`\lambda = 10`, Adam lr 1e-4, betas (0.5, 0.9), batch 32.

The GAN module must have ``generator`` (z (B, latent_dim) -> maps), ``critic`` (maps -> (B,)
scores) and ``latent_dim`` (:class:`bayessky.nn.GAN`). Files in ``out`` are those of
:func:`bayessky.train.loop.fit`; resume is exact in the same way (both optimisers, the step
counter inside an epoch boundary, and the noise generator are in the state). The held-out
number is the critic's Wasserstein estimate :math:`\mathbb{E}[D(x_\text{val})] - \mathbb{E}[D(G(z))]`
with fixed noise; it is only comparable between epochs of one run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from .._validate import device_dtype
from ..atomic import write_json
from ..priors.checkpoint import match_state
from ._common import as_map_data, capture_rng, hardware, progress_bar, restore_rng, write_prior
from .checkpoint import load_state, save_state
from .distributed import current_group, env_world_size
from .loop import STATE_FILE, TrainResult

__all__ = ["GANConfig", "fit_wgan_gp", "wasserstein_estimate", "check_single_process"]

STATE_FORMAT = "bayessky-gan-state-v1"


@dataclass
class GANConfig:
    """Hyper-parameters of :func:`fit_wgan_gp` (defaults: cosmikyu's DCGAN-WGP)."""

    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    critic_steps: int = 5
    lambda_gp: float = 10.0
    seed: int = 0
    progress: bool = True
    eval_batch_size: int = 256

    def __post_init__(self):
        for key in ("epochs", "batch_size", "critic_steps", "eval_batch_size"):
            v = getattr(self, key)
            if int(v) != v or v < (0 if key == "epochs" else 1):
                raise ValueError(f"{key}: expected a positive integer, got {v!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr: expected a positive learning rate, got {self.lr!r}")
        if not self.lambda_gp >= 0:
            raise ValueError(f"lambda_gp: expected a non-negative weight, got {self.lambda_gp!r}")
        self.betas = tuple(float(b) for b in self.betas)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


def _penalty(critic, real, fake, lam, eps):
    from ..nn.gan import gradient_penalty

    return gradient_penalty(critic, real, fake, lambda_gp=lam, eps=eps)


def _noise(n: int, dim: int, gen: torch.Generator, dev, dtype) -> torch.Tensor:
    return torch.randn(n, dim, generator=gen).to(device=dev, dtype=dtype)


@torch.no_grad()
def wasserstein_estimate(gan, maps: torch.Tensor, *, seed: int = 0, batch_size: int = 256) -> float:
    """``mean D(maps) - mean D(G(z))`` with ``len(maps)`` noise draws from ``seed`` (eval mode)."""
    dev, dtype = device_dtype(gan)
    gen = torch.Generator().manual_seed(seed)
    was = gan.training
    gan.eval()
    real = fake = 0.0
    try:
        for i in range(0, maps.shape[0], batch_size):
            x = maps[i:i + batch_size].to(device=dev, dtype=dtype)
            real += float(gan.critic(x).to(torch.float64).sum())
            z = _noise(x.shape[0], int(gan.latent_dim), gen, dev, dtype)
            fake += float(gan.critic(gan.generator(z)).to(torch.float64).sum())
    finally:
        gan.train(was)
    return (real - fake) / maps.shape[0]


def check_single_process() -> None:
    """Refuse a data-parallel run: WGAN-GP is not wired to DistributedDataParallel.

    Its gradient penalty differentiates the critic's input gradient (a double backward through
    ``torch.autograd.grad(..., create_graph=True)``, which DDP's gradient hooks do not handle:
    pytorch/pytorch issues 47562 and 63812), and the critic and generator alternate with their
    own optimisers, so each would need its own DDP wrapper. One process trains it as before.
    """
    group = current_group()
    world = group.world_size if group is not None else env_world_size()
    if world > 1:
        raise ValueError(f"WORLD_SIZE: WGAN-GP trains in one process (its gradient penalty's double "
                         f"backward is not supported by DistributedDataParallel), got {world} processes; "
                         "run it without torchrun")


def fit_wgan_gp(
    gan: torch.nn.Module,
    train,
    val=None,
    *,
    config: GANConfig | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    out=None,
    resume: bool = False,
    card: Mapping | None = None,
    device=None,
    callback: Callable[[int, dict], bool | None] | None = None,
) -> TrainResult:
    """Train a GAN (``gan.generator``, ``gan.critic``, ``gan.latent_dim``) with WGAN-GP.

    Arguments mirror :func:`bayessky.train.loop.fit`; ``train``/``val`` are maps (N, C, H, W) in
    network space (unconditional). Returns ``(gan, history, metrics, card)``.

    One process only: under ``torchrun`` (``WORLD_SIZE`` > 1 or a process group of several
    processes) it refuses, see :func:`check_single_process`.
    """
    check_single_process()
    cfg = config or GANConfig()
    for attr in ("generator", "critic", "latent_dim"):
        if not hasattr(gan, attr):
            raise TypeError(f"gan: expected a module with generator, critic and latent_dim, "
                            f"{type(gan).__name__} has no {attr}")
    train = as_map_data(train, "train")
    val = as_map_data(val, "val")
    if train.context is not None:
        raise ValueError("train: the WGAN-GP trainer is unconditional, got a context")
    dev, dtype = device_dtype(gan, device=device)
    opt_g = torch.optim.Adam(gan.generator.parameters(), lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(gan.critic.parameters(), lr=cfg.lr, betas=cfg.betas)
    gens = {"shuffle": torch.Generator().manual_seed(cfg.seed),
            "augment": torch.Generator().manual_seed(cfg.seed + 1),
            "noise": torch.Generator().manual_seed(cfg.seed + 3)}
    out = Path(out) if out is not None else None
    state_path = out / STATE_FILE if out is not None else None
    arch = dict(card.get("architecture", {})) if card else None
    epoch, step, history, elapsed = 0, 0, [], 0.0

    if resume and state_path is not None and state_path.exists():
        st = _resume(state_path, card, arch, gan, opt_g, opt_d, gens)
        epoch, step, history = int(st["epoch"]), int(st["step"]), list(st["history"])
        elapsed = float(st["time_s"])

    n = len(train)
    bar = progress_bar(cfg.epochs, min(epoch, cfg.epochs), cfg.progress, "train wgan-gp")
    try:
        while epoch < cfg.epochs:
            t0 = time.perf_counter()
            step, losses = _train_epoch(gan, train, (opt_g, opt_d), cfg, gens, augment, (dev, dtype), step,
                                        epoch + 1)
            epoch += 1
            elapsed += time.perf_counter() - t0
            record = {"epoch": epoch, "critic_loss": sum(losses["critic"]) / max(len(losses["critic"]), 1),
                      "generator_loss": sum(losses["generator"]) / len(losses["generator"])
                      if losses["generator"] else None, "time_s": elapsed}
            if val is not None:
                record["val_wasserstein"] = wasserstein_estimate(gan, val.maps, seed=cfg.seed + 2,
                                                                 batch_size=cfg.eval_batch_size)
            history.append(record)
            if state_path is not None:
                save_state(state_path, {
                    "format": STATE_FORMAT, "kind": card.get("kind") if card else None, "architecture": arch,
                    "epoch": epoch, "step": step, "model": gan.state_dict(),
                    "opt_generator": opt_g.state_dict(), "opt_critic": opt_d.state_dict(),
                    "rng": capture_rng(gens), "history": history, "time_s": elapsed, "config": cfg.to_dict(),
                })
                write_json(out / "history.json", history)
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in record.items()
                             if isinstance(v, float) and k != "time_s"})
            if callback is not None and callback(epoch, record):
                break
    finally:
        bar.close()

    gan.eval()
    metrics: dict = {"n_pix": int(train.maps[0].numel())}
    if val is not None:
        metrics["val_wasserstein"] = wasserstein_estimate(gan, val.maps, seed=cfg.seed + 2,
                                                          batch_size=cfg.eval_batch_size)
        metrics["n_val"] = len(val)
    full_card = None
    if out is not None and card is not None:
        training = {**cfg.to_dict(), "optimizer": "Adam (generator and critic)", "objective": "WGAN-GP",
                    "epochs_run": epoch, "generator_steps": step // cfg.critic_steps, "time_s": elapsed,
                    "hardware": hardware(dev),
                    "augment": augment.to_config() if hasattr(augment, "to_config") else None}
        full_card = write_prior(out, gan, card, training, metrics, n_train=n,
                                n_val=None if val is None else len(val))
    return TrainResult(gan, history, metrics, full_card)


def _resume(state_path: Path, card: Mapping | None, arch, gan, opt_g, opt_d, gens) -> dict:
    """Load a WGAN-GP training state into the GAN, both optimisers and the generators; return it."""
    st = load_state(state_path, "state")
    if st.get("format") != STATE_FORMAT:
        raise ValueError(f"resume: {str(state_path)!r} is not a {STATE_FORMAT} file")
    if card is not None and (st.get("kind") != card.get("kind") or st.get("architecture") != arch):
        raise ValueError(f"resume: {str(state_path)!r} was written for another architecture; use a new "
                         "--out or the same settings")
    match_state(gan, st["model"], "gan", str(state_path))
    gan.load_state_dict(st["model"])
    opt_g.load_state_dict(st["opt_generator"])
    opt_d.load_state_dict(st["opt_critic"])
    restore_rng(st["rng"], gens)
    return st


def _train_epoch(gan, train, optimizers, cfg: GANConfig, gens, augment, where, step: int,
                 epoch: int) -> tuple[int, dict[str, list[float]]]:
    """One pass over ``train``: a critic step per batch, a generator step every ``critic_steps``
    critic steps (counted by ``step`` across epochs). Returns the new step count and the losses."""
    (dev, dtype), (opt_g, opt_d) = where, optimizers
    g_net, d_net, dim = gan.generator, gan.critic, int(gan.latent_dim)
    n = len(train)
    gan.train()
    perm = torch.randperm(n, generator=gens["shuffle"])
    losses: dict[str, list[float]] = {"critic": [], "generator": []}
    for b in range(0, n, cfg.batch_size):
        sel = perm[b:b + cfg.batch_size].to(train.maps.device)
        real = train.maps.index_select(0, sel).to(device=dev, dtype=dtype)
        if augment is not None:
            real = augment(real, gens["augment"])
        m = real.shape[0]
        # critic step: maximise D(real) - D(fake) under the gradient penalty
        with torch.no_grad():
            fake = g_net(_noise(m, dim, gens["noise"], dev, dtype))
        eps = torch.rand(m, generator=gens["noise"]).to(device=dev, dtype=dtype)
        loss_d = d_net(fake).mean() - d_net(real).mean() + _penalty(d_net, real, fake, cfg.lambda_gp, eps)
        if not torch.isfinite(loss_d):
            raise FloatingPointError(f"critic loss is {float(loss_d)} at epoch {epoch}; lower lr")
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        losses["critic"].append(float(loss_d.detach()))
        step += 1
        if step % cfg.critic_steps == 0:
            # generator step: maximise D(G(z)); the critic's gradients are discarded
            z = _noise(cfg.batch_size, dim, gens["noise"], dev, dtype)
            loss_g = -d_net(g_net(z)).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            losses["generator"].append(float(loss_g.detach()))
    return step, losses
