"""Multi-scale Glow and conditional Glow (HIGlow) for periodic maps.

Data -> latent, per level: squeeze 2x2 -> K flow steps -> split (half of the channels leave with a
learned Gaussian prior given the other half); the last level keeps all its channels and has a
learned per-channel prior. A flow step is ActNorm + invertible 1x1 convolution (one fused
convolution) -> [affine injector] -> affine coupling. For a 1x64x64 map and 6 levels the latents
are 2x32x32, 4x16x16, 8x8x8, 16x4x4, 32x2x2, 128x1x1.

The latents returned by :meth:`Glow.forward` are *whitened* by their priors, eps = (z - mu) / sigma,
so under the model they are i.i.d. N(0, 1) and the density of a map is

.. math:: \\log p(x \\mid c) = \\sum_i \\log \\mathcal{N}(\\epsilon_i(x, c); 0, 1)
          + \\log\\left|\\det \\frac{\\partial \\epsilon}{\\partial x}\\right| .

Sampling pushes N(0, T^2) draws back through :meth:`Glow.inverse`, a deterministic differentiable
function of the draws and of the context (a reparametrised sample: gradients reach the context).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .._validate import as_tensor, check_map
from . import _context
from .coupling import (
    INJECTOR_LOG_SCALE_RANGE,
    ContextMLP,
    affine_coupling,
    check_coupling_args,
    init_coupling_weights,
    inject,
)
from .layers import (
    actnorm_statistics,
    conv1x1,
    conv_input,
    lu_weight,
    lu_weight_inverse,
    random_lu,
    squeeze,
    unsqueeze,
)

__all__ = ["Glow", "ConditionalGlow", "FlowSteps", "SplitPrior", "TopPrior"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

# Graph-free passes run the batch in chunks whose largest coupling activation stays under this
# many bytes. A 1x64x64, hidden-16 Glow at batch 128 allocates and frees ~10 MB activations
# 240 times per pass; glibc hands that memory back to the OS after every step, and refaulting it
# (~90k page faults) cost a third of the pass. Chunks of this size are reused from the heap and
# stay in cache, while keeping the per-call overhead of small batches low.
_CHUNK_BYTES = 6 * 2**20


def _cache_key(tensors) -> tuple:
    """Changes whenever a tensor is modified in place (optimiser step, load_state_dict), moved or
    replaced: the version counter plus storage address, dtype and device."""
    return tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in tensors)


class FlowSteps(nn.Module):
    r"""K Glow flow steps of one level, with each parameter stacked over the steps.

    Step k, data -> latent: ActNorm + LU 1x1 convolution (folded into one convolution with bias),
    then the affine injector (if given), then the affine coupling (see
    :func:`~bayessky.nn.coupling.affine_coupling`).

    Why stacked: a 6-level, 20-step Glow has 1,300 small parameter tensors when every step owns
    its modules. Stacking gives ~12 per level, so the 120 LU weight assemblies run as a handful of
    batched matrix ops per level, and the optimiser updates ~70 tensors instead of 1,300. Each
    pass unbinds the stacks once into per-step views (one backward op per stack).

    Caching: when no autograd graph is needed (eval / ``no_grad``, or frozen weights with a
    context that requires grad, as in HMC), the folded weights, biases and log-determinants are
    cached, keyed on the parameters' version counters.

    Arguments:
        steps: K.
        channels: C at this level (>= 2).
        hidden: hidden channels of the coupling CNNs.
        context_dim: context length d fed to the couplings as constant channels (0: none).
        periodic, min_scale, activation: see :class:`~bayessky.nn.coupling.AffineCoupling`.
        actnorm: include ActNorm (data-dependent init on the first training batch, step by step).
    """

    def __init__(self, steps: int, channels: int, hidden: int, context_dim: int = 0,
                 periodic: bool = True, actnorm: bool = True, min_scale: float = 0.01,
                 activation: str = "relu"):
        super().__init__()
        check_coupling_args(channels, min_scale, activation)
        self.steps, self.channels = int(steps), int(channels)
        self.periodic, self.min_scale, self.activation = bool(periodic), float(min_scale), activation
        lus = [random_lu(channels) for _ in range(steps)]
        perm, lower, upper, sign_s, log_s = (torch.stack(t) for t in zip(*lus))
        self.register_buffer("perm", perm)
        self.register_buffer("sign_s", sign_s)
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(upper)
        self.log_s = nn.Parameter(log_s)
        if actnorm:
            self.an_log_scale = nn.Parameter(torch.zeros(steps, channels))
            self.an_bias = nn.Parameter(torch.zeros(steps, channels))
            self.register_buffer("initialized", torch.zeros(steps, dtype=torch.bool))
        else:
            self.an_log_scale = self.an_bias = None
        ws = [init_coupling_weights(channels, hidden, context_dim) for _ in range(steps)]
        self.coupling = nn.ParameterList(torch.stack(t) for t in zip(*ws))
        self._cache: dict = {}
        self._all_initialized = not actnorm

    # -- folded ActNorm + 1x1 convolution ---------------------------------------------------------
    def _mix_params(self):
        ps = (self.lower, self.upper, self.log_s, self.perm, self.sign_s)
        return ps + ((self.an_log_scale, self.an_bias) if self.an_log_scale is not None else ())

    def _assemble(self, inverse: bool):
        """Folded (weights (K, C, C), biases (K, C) or None, log|det| per pixel (K,))."""
        lu = (self.perm, self.lower, self.upper, self.sign_s, self.log_s)
        ld = self.log_s.sum(-1)
        an_s, an_b = self.an_log_scale, self.an_bias
        if not inverse:
            w = lu_weight(*lu)
            bias = None
            if an_s is not None:  # W (e^s x + b) = (W diag e^s) x + W b
                bias = (w @ an_b[..., None])[..., 0]
                w = w * torch.exp(an_s)[:, None, :]
        else:
            w = lu_weight_inverse(*lu)
            bias = None
            if an_s is not None:  # x = e^{-s} (W^{-1} y - b)
                inv = torch.exp(-an_s)
                w = w * inv[:, :, None]
                bias = -an_b * inv
        if an_s is not None:
            ld = ld + an_s.sum(-1)
        return w, bias, ld

    def folded(self, inverse: bool = False):
        """Per-step folded convolutions: (list of K weights, list of K biases or Nones, ld (K,))."""
        ps = self._mix_params()
        if torch.is_grad_enabled() and any(p.requires_grad for p in ps):
            w, b, ld = self._assemble(inverse)
            return w.unbind(0), (b.unbind(0) if b is not None else [None] * self.steps), ld
        key = _cache_key(ps)
        hit = self._cache.get(inverse)
        if hit is None or hit[0] != key:
            # built outside inference mode so that cached tensors may later enter autograd graphs
            with torch.inference_mode(False), torch.no_grad():
                w, b, ld = self._assemble(inverse)
                hit = (key, (w.unbind(0), b.unbind(0) if b is not None else [None] * self.steps, ld))
            self._cache[inverse] = hit
        return hit[1]

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._all_initialized = self.an_log_scale is None or bool(self.initialized.all())
        self._cache.clear()

    def _initialize_step(self, k: int, x: torch.Tensor) -> None:
        """ActNorm data-dependent init of step k on its input batch x."""
        log_scale, bias = actnorm_statistics(x)
        with torch.no_grad():
            self.an_log_scale[k] = log_scale
            self.an_bias[k] = bias
            self.initialized[k] = True

    # -- passes ---------------------------------------------------------------------------------------
    def _coupling_kw(self):
        return {"periodic": self.periodic, "min_scale": self.min_scale, "activation": self.activation}

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, injections=None,
                inplace: bool = False):
        """Data -> latent through the K steps.

        Arguments:
            x: (B, C, H, W).
            context: (B, d) scaled context for the couplings, or None.
            injections: K pairs of per-sample (log-scale, shift) (B, C), or None.
            inplace: let the couplings overwrite their (internal) inputs when no graph is recorded.

        Returns:
            (y, log|det dy/dx| (B,)).
        """
        if self.training and not self._all_initialized:
            self._initialize(x, context, injections)
        ws, bs, ld_mix = self.folded(False)
        coupling = [w.unbind(0) for w in self.coupling]
        ld = x.new_zeros(x.shape[0])
        for k in range(self.steps):
            x = conv1x1(x, ws[k], bs[k])
            if injections is not None:
                x, l = inject(x, *injections[k])
                ld = ld + l
            x, l = affine_coupling(x, context, [w[k] for w in coupling], inplace=inplace,
                                   **self._coupling_kw())
            ld = ld + l
        return x, ld + ld_mix.sum() * (x.shape[2] * x.shape[3])

    # runs once, on data: torch.compile (TrainConfig(compile=True)) leaves it eager instead of
    # breaking its graph, with a warning, on the value-dependent checks inside
    @torch.compiler.disable
    @torch.no_grad()
    def _initialize(self, x, context, injections) -> None:
        """ActNorm's data-dependent init (first training batch): a graph-free pass through the
        steps, initialising each step on its own input before applying it."""
        if bool(self.initialized.all()):
            self._all_initialized = True
            return
        coupling = [w.unbind(0) for w in self.coupling]
        for k in range(self.steps):
            if not bool(self.initialized[k]):
                self._initialize_step(k, x)
            w, b, _ = self._assemble(False)
            x = conv1x1(x, w[k], b[k])
            if injections is not None:
                x, _ = inject(x, injections[k][0].detach(), injections[k][1].detach())
            x, _ = affine_coupling(x, None if context is None else context.detach(),
                                   [w[k] for w in coupling], **self._coupling_kw())
        self._all_initialized = True

    def inverse(self, y: torch.Tensor, context: torch.Tensor | None = None, injections=None,
                inplace: bool = False):
        """Latent -> data through the K steps in reverse; returns (x, log|det dx/dy| (B,))."""
        ws, bs, ld_mix = self.folded(True)
        coupling = [w.unbind(0) for w in self.coupling]
        ld = y.new_zeros(y.shape[0])
        for k in reversed(range(self.steps)):
            y, l = affine_coupling(y, context, [w[k] for w in coupling], inverse=True,
                                   inplace=inplace or k < self.steps - 1, **self._coupling_kw())
            ld = ld + l
            if injections is not None:
                y, l = inject(y, *injections[k], inverse=True)
                ld = ld + l
            y = conv1x1(y, ws[k], bs[k])
        return y, ld - ld_mix.sum() * (y.shape[2] * y.shape[3])


class SplitPrior(nn.Module):
    """N(mu, sigma^2) for the factored-out channels given the kept channels (and the context).

    mu and log sigma come from a zero-initialised 3x3 convolution of the kept half (Glow's learned
    prior), plus, when ``context_width > 0``, a per-channel term from a small MLP of the context
    (HIGlow's conditional prior). Both start at zero: the prior starts as N(0, 1).

    Arguments:
        keep: channels kept for the next level.
        out: channels factored out here.
        periodic: circular padding of the convolution.
        context_dim: context length d.
        context_width: hidden width of the context MLP (0: no context term).
    """

    def __init__(self, keep: int, out: int, periodic: bool = True, context_dim: int = 0,
                 context_width: int = 0, activation: str = "relu"):
        super().__init__()
        self.out = out
        self.periodic = periodic
        self.conv = nn.Conv2d(keep, 2 * out, 3, padding=0 if periodic else 1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.mlp = (ContextMLP(1, context_dim, context_width, 2 * out, activation)
                    if context_dim and context_width else None)

    def params(self, keep: torch.Tensor, context: torch.Tensor | None):
        h = self.conv(conv_input(keep, None, 1 if self.periodic else 0)).contiguous()
        if self.mlp is not None:
            h = h + self.mlp(context)[0][:, :, None, None]
        return h[:, : self.out], h[:, self.out:]

    def standardize(self, z, keep, context=None):
        """z -> eps = (z - mu) / sigma, with log|det| = -sum log sigma, shape (B,)."""
        mu, log_sigma = self.params(keep, context)
        return (z - mu) * torch.exp(-log_sigma), -log_sigma.sum(dim=(1, 2, 3))

    def unstandardize(self, eps, keep, context=None):
        """eps -> z = mu + sigma eps, with log|det| = sum log sigma."""
        mu, log_sigma = self.params(keep, context)
        return torch.addcmul(mu, eps, torch.exp(log_sigma)), log_sigma.sum(dim=(1, 2, 3))


class TopPrior(nn.Module):
    """Per-channel N(mu, sigma^2) for the last level (plus a context MLP term when conditional).

    Per channel rather than per pixel: the maps are statistically homogeneous.
    """

    def __init__(self, channels: int, context_dim: int = 0, context_width: int = 0,
                 activation: str = "relu"):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(channels))
        self.log_sigma = nn.Parameter(torch.zeros(channels))
        self.mlp = (ContextMLP(1, context_dim, context_width, 2 * channels, activation)
                    if context_dim and context_width else None)

    def params(self, batch: int, context: torch.Tensor | None):
        mu, ls = self.mean.expand(batch, -1), self.log_sigma.expand(batch, -1)
        if self.mlp is not None:
            h = self.mlp(context)[0]
            c = self.mean.shape[0]
            mu, ls = mu + h[:, :c], ls + h[:, c:]
        return mu[:, :, None, None], ls[:, :, None, None]

    def standardize(self, z, context=None):
        mu, ls = self.params(z.shape[0], context)
        hw = z.shape[2] * z.shape[3]
        return (z - mu) * torch.exp(-ls), -hw * ls.sum(dim=(1, 2, 3))

    def unstandardize(self, eps, context=None):
        mu, ls = self.params(eps.shape[0], context)
        hw = eps.shape[2] * eps.shape[3]
        return torch.addcmul(mu, eps, torch.exp(ls)), hw * ls.sum(dim=(1, 2, 3))


class _Level(nn.Module):
    def __init__(self, channels, steps, hidden, last, periodic, context_dim, actnorm, min_scale,
                 activation, injector_width, prior_width):
        super().__init__()
        self.channels = channels
        self.split = not last
        self.steps = FlowSteps(steps, channels, hidden, context_dim, periodic, actnorm, min_scale,
                               activation)
        # one batched MLP gives every step's injector (log-scale, shift) for this level
        self.injector = (ContextMLP(steps, context_dim, injector_width, 2 * channels, activation)
                         if context_dim and injector_width and steps else None)
        if self.split:
            self.keep = channels // 2
            self.prior = SplitPrior(self.keep, channels - self.keep, periodic, context_dim,
                                    prior_width, activation)
        else:
            self.keep = channels
            self.prior = TopPrior(channels, context_dim, prior_width, activation)

    def injections(self, context):
        if self.injector is None:
            return None
        out = self.injector(context)
        c = self.channels
        log_s = out[..., :c].clamp(*INJECTOR_LOG_SCALE_RANGE)
        return list(zip(log_s.unbind(0), out[..., c:].unbind(0)))


def _per_level(value, levels: int, name: str) -> list[int]:
    if isinstance(value, int):
        return [value] * levels
    value = [int(v) for v in value]
    if len(value) != levels:
        raise ValueError(f"{name}: expected an int or {levels} values (one per level), got {value}")
    return value


class _MultiscaleGlow(nn.Module):
    """Shared implementation of :class:`Glow` and :class:`ConditionalGlow`."""

    def __init__(self, shape, levels, steps, hidden, periodic, context_dim, context_low,
                 context_high, actnorm, min_scale, activation, injector_width, prior_width):
        super().__init__()
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"shape: expected (channels, height, width), got {shape}")
        levels = int(levels)
        if levels < 1:
            raise ValueError(f"levels: must be >= 1, got {levels}")
        c, h, w = shape
        if h % 2**levels or w % 2**levels:
            raise ValueError(f"shape: height and width must be divisible by 2**levels = {2**levels}, "
                             f"got {h}x{w}")
        self.shape = shape
        self.context_dim = int(context_dim)
        steps_l = _per_level(steps, levels, "steps")
        hidden_l = _per_level(hidden, levels, "hidden")
        self._arch = {"shape": list(shape), "levels": levels,
                      "steps": steps if isinstance(steps, int) else steps_l,
                      "hidden": hidden if isinstance(hidden, int) else hidden_l,
                      "periodic": bool(periodic), "actnorm": bool(actnorm),
                      "min_scale": float(min_scale), "activation": activation}
        self.levels = nn.ModuleList()
        latent_shapes = []
        for i in range(levels):
            c, h, w = 4 * c, h // 2, w // 2
            last = i == levels - 1
            lvl = _Level(c, steps_l[i], hidden_l[i], last, periodic, self.context_dim, actnorm,
                         min_scale, activation, injector_width, prior_width)
            self.levels.append(lvl)
            latent_shapes.append((c - lvl.keep if lvl.split else c, h, w))
            c = lvl.keep
        self.latent_shapes = latent_shapes
        # elements per sample of the largest coupling activation: hidden x (H + 2) x (W + 2)
        self._act_numel = max(hid * (s[1] + 2) * (s[2] + 2) for hid, s in zip(hidden_l, latent_shapes))
        if self.context_dim:
            _context.register_bounds(self, self.context_dim, context_low, context_high)

    # ------------------------------------------------------------------------------------------
    @property
    def architecture(self) -> dict:
        """Constructor keyword arguments (JSON-able): ``type(self)(**self.architecture)`` rebuilds it."""
        return dict(self._arch)

    @property
    def dim(self) -> int:
        """Number of scalars in a map (= in the flattened latents)."""
        return math.prod(self.shape)

    def _ref(self) -> torch.Tensor:
        """A parameter: the dtype and device the network runs in."""
        return next(self.parameters())

    def _context(self, context) -> torch.Tensor | None:
        return _context.as_context(context, self.context_dim, self._ref())

    def _batch(self, x, context):
        """Broadcast maps (..., C, H, W) against contexts (..., d); flatten the batch."""
        ref = self._ref()
        x = check_map(x, "x", min_ndim=3, shape=self.shape, finite=False, dtype=ref.dtype,
                      device=ref.device)
        c = self._context(context)
        if c is None:
            lead = x.shape[:-3]
            return x.reshape(-1, *self.shape), None, lead
        lead = torch.broadcast_shapes(x.shape[:-3], c.shape[:-1])
        x = x.expand(lead + self.shape).reshape(-1, *self.shape)
        c = c.expand(lead + (self.context_dim,)).reshape(-1, self.context_dim)
        return x, _context.scale(self, c), lead

    # ------------------------------------------------------------------------------------------
    def _chunks(self, batch: int) -> int:
        """Number of chunks for a graph-free pass over ``batch`` samples (1: no chunking)."""
        # not with a graph (it would keep every chunk's activations anyway) nor in training mode,
        # where ActNorm initialises on the whole first batch
        if torch.is_grad_enabled() or self.training:
            return 1
        per_sample = self._act_numel * self._ref().element_size()
        return max(1, min(batch, math.ceil(batch * per_sample / _CHUNK_BYTES)))

    def _forward(self, x: torch.Tensor, c: torch.Tensor | None):
        n = self._chunks(x.shape[0])
        if n == 1:
            return self._forward_batch(x, c)
        parts = [self._forward_batch(xs, cs) for xs, cs in zip(x.chunk(n), _chunk(c, x.shape[0], n))]
        return [torch.cat(z) for z in zip(*(p[0] for p in parts))], torch.cat([p[1] for p in parts])

    def _forward_batch(self, x: torch.Tensor, c: torch.Tensor | None):
        latents = []
        ld = x.new_zeros(x.shape[0])
        for lvl in self.levels:
            x, l = lvl.steps(squeeze(x), c, lvl.injections(c), inplace=True)
            ld = ld + l
            if lvl.split:
                keep, z = x[:, : lvl.keep], x[:, lvl.keep:]
                eps, l = lvl.prior.standardize(z, keep, c)
                x = keep
            else:
                eps, l = lvl.prior.standardize(x, c)
            latents.append(eps)
            ld = ld + l
        return latents, ld

    def _inverse(self, latents, c: torch.Tensor | None):
        if len(latents) != len(self.levels):
            raise ValueError(f"latents: expected a list of {len(self.levels)} tensors, got {len(latents)}")
        b = latents[0].shape[0]
        n = self._chunks(b)
        if n == 1:
            return self._inverse_batch(latents, c)
        parts = [self._inverse_batch(zs, cs)
                 for zs, cs in zip(zip(*(z.chunk(n) for z in latents)), _chunk(c, b, n))]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _inverse_batch(self, latents, c: torch.Tensor | None):
        ld = latents[0].new_zeros(latents[0].shape[0])
        x = None
        for lvl, eps in zip(reversed(self.levels), reversed(latents)):
            if lvl.split:
                z, l = lvl.prior.unstandardize(eps, x, c)
                x = torch.cat([x, z], 1)
            else:
                x, l = lvl.prior.unstandardize(eps, c)
            x, l2 = lvl.steps.inverse(x, c, lvl.injections(c), inplace=True)
            ld = ld + l + l2
            x = unsqueeze(x)
        return x, ld

    # ------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None):
        """Map -> whitened latents.

        Arguments:
            x: maps (..., C, H, W) in the network's (already transformed) space.
            context: conditions (..., d) in physical units, broadcast against the maps' batch.

        Returns:
            (latents, logdet): a list with one (B, C_l, H_l, W_l) tensor per level (B = the
            flattened broadcast batch) and log|det d eps / d x| of shape (B,), in nats.
        """
        x, c, _ = self._batch(x, context)
        return self._forward(x, c)

    def inverse(self, latents: Sequence[torch.Tensor], context: torch.Tensor | None = None) -> torch.Tensor:
        """Whitened latents (list, as from :meth:`forward`) -> maps (B, C, H, W).

        ``context`` is (d,) (shared) or (B, d).
        """
        ref = self._ref()
        latents = [as_tensor(z, "latents", dtype=ref.dtype, device=ref.device) for z in latents]
        return self._inverse(latents, self._sample_context(context, latents[0].shape[0]))[0]

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x | context) in nats, shape = broadcast of x's and the context's batch shapes.

        One map against many conditions (x of shape (1, C, H, W), context (P, d)) gives (P,).
        """
        x, c, lead = self._batch(x, context)
        latents, ld = self._forward(x, c)
        return (ld + _std_normal_log_prob(latents)).reshape(lead)

    def _sample_context(self, context, n: int):
        c = _context.per_sample(self._context(context), n)
        return None if c is None else _context.scale(self, c)

    def _draw(self, n: int, temperature: float, generator):
        ref = self._ref()
        return [torch.randn((n, *s), generator=generator, dtype=ref.dtype, device=ref.device)
                .mul_(temperature) for s in self.latent_shapes]

    def sample(self, n: int, context: torch.Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` maps (n, C, H, W); differentiable in the context (reparametrised).

        Arguments:
            n: number of maps.
            context: (d,) shared by all maps or (n, d), one per map (conditional flows only).
            temperature: standard deviation T of the latent draws (1 = the model).
            generator: optional torch.Generator for reproducible draws.
        """
        c = self._sample_context(context, int(n))
        return self._inverse(self._draw(int(n), temperature, generator), c)[0]

    def sample_and_log_prob(self, n: int, context: torch.Tensor | None = None, temperature: float = 1.0,
                            generator: torch.Generator | None = None):
        """(maps (n, C, H, W), log p(maps | context) (n,)) in one inverse pass."""
        c = self._sample_context(context, int(n))
        eps = self._draw(int(n), temperature, generator)
        x, ld = self._inverse(eps, c)
        return x, _std_normal_log_prob(eps) - ld

    def flatten_latents(self, latents: Sequence[torch.Tensor]) -> torch.Tensor:
        """List of per-level latents (B, C_l, H_l, W_l) -> (B, D), concatenated level by level."""
        return torch.cat([z.reshape(z.shape[0], -1) for z in latents], dim=1)

    def unflatten_latents(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """(..., D) -> list of (..., C_l, H_l, W_l); inverse of :meth:`flatten_latents`."""
        if flat.shape[-1] != self.dim:
            raise ValueError(f"flat: expected last dimension {self.dim}, got {tuple(flat.shape)}")
        out, start = [], 0
        for s in self.latent_shapes:
            size = math.prod(s)  # HIGlow advanced this offset by a sum, not the product
            out.append(flat[..., start:start + size].reshape(*flat.shape[:-1], *s))
            start += size
        return out


def _chunk(c: torch.Tensor | None, batch: int, n: int) -> list:
    """The context split like ``tensor.chunk(n)`` of a batch of ``batch`` samples."""
    if c is None:
        return [None] * len(range(0, batch, math.ceil(batch / n)))
    return list(c.chunk(n))


def _std_normal_log_prob(latents) -> torch.Tensor:
    total = 0.0
    n = 0
    for z in latents:
        total = total + z.square().sum(dim=(1, 2, 3))
        n += z[0].numel()
    return -0.5 * total - n * _HALF_LOG_2PI


class Glow(_MultiscaleGlow):
    r"""Multi-scale Glow for (C, H, W) maps, with periodic convolutions by default.

    References:
        Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018),
        https://arxiv.org/abs/1807.03039

    Arguments:
        shape: (channels, height, width); height and width divisible by 2**levels.
        levels: number of squeeze levels L (>= 1).
        steps: flow steps K per level (an int or one per level).
        hidden: hidden channels of the coupling CNNs (an int or one per level).
        periodic: circular padding in every convolution (for periodic maps such as CAMELS).
        actnorm: ActNorm in every step (data-dependent init on the first training batch).
        min_scale: lower bound c of the coupling scale s in (c, 1].
        activation: activation of the coupling CNNs ("relu", "silu", "elu", "tanh").

    Example:
        >>> flow = Glow((1, 8, 8), levels=2, steps=2, hidden=8)
        >>> x = torch.randn(4, 1, 8, 8)
        >>> flow.log_prob(x).shape
        torch.Size([4])
        >>> latents, logdet = flow(x)
        >>> [tuple(z.shape) for z in latents]
        [(4, 2, 4, 4), (4, 8, 2, 2)]
        >>> torch.allclose(flow.inverse(latents), x, atol=1e-4)
        True
    """

    def __init__(self, shape: Sequence[int], levels: int, steps: int | Sequence[int],
                 hidden: int | Sequence[int], periodic: bool = True, *, actnorm: bool = True,
                 min_scale: float = 0.01, activation: str = "relu"):
        super().__init__(shape, levels, steps, hidden, periodic, 0, None, None, actnorm, min_scale,
                         activation, 0, 0)


class ConditionalGlow(_MultiscaleGlow):
    r"""Conditional multi-scale Glow p(x | c) as in HIGlow: affine injectors and conditional couplings.

    The context (e.g. Omega_m, sigma_8 in physical units) is mapped to [-1, 1] with the stored
    bounds ``context_low, context_high`` (buffers, saved with the weights); it enters every step
    through an affine injector (per-channel log-scale clamped to [log 1e-3, 5] and shift from a
    one-hidden-layer MLP) and as constant input channels of every coupling CNN, and optionally
    the split priors through a small MLP (``prior_width > 0``).

    References:
        HIGlow (Friedman & Hassan, 2022), https://github.com/friedmanroy/HI-generation;
        SRFlow (Lugmayr et al., 2020), https://arxiv.org/abs/2006.14200;
        Glow (Kingma & Dhariwal, 2018), https://arxiv.org/abs/1807.03039

    Arguments:
        shape: (channels, height, width); height and width divisible by 2**levels.
        context_dim: number d of conditioning values.
        levels, steps, hidden, periodic, actnorm, min_scale, activation: as in :class:`Glow`.
        context_low, context_high: (d,) physical range of the context (mapped to [-1, 1]);
            default [-1, 1] (no scaling).
        injector_width: hidden width of the injector MLPs (0: no injectors).
        prior_width: hidden width of the prior MLPs (0: priors ignore the context).

    Example:
        >>> flow = ConditionalGlow((1, 8, 8), context_dim=2, levels=2, steps=2, hidden=8,
        ...                        context_low=[0.1, 0.6], context_high=[0.5, 1.0])
        >>> x = torch.randn(1, 1, 8, 8)
        >>> grid = torch.tensor([[0.3, 0.8], [0.2, 0.7], [0.4, 0.9]])
        >>> flow.log_prob(x, grid).shape      # one map, three conditions
        torch.Size([3])
        >>> flow.sample(5, torch.tensor([0.3, 0.8])).shape
        torch.Size([5, 1, 8, 8])
    """

    def __init__(self, shape: Sequence[int], context_dim: int, levels: int, steps: int | Sequence[int],
                 hidden: int | Sequence[int], context_low: Sequence[float] | None = None,
                 context_high: Sequence[float] | None = None, periodic: bool = True, *,
                 actnorm: bool = True, min_scale: float = 0.01, activation: str = "relu",
                 injector_width: int = 16, prior_width: int = 8):
        if int(context_dim) < 1:
            raise ValueError(f"context_dim: must be >= 1, got {context_dim}")
        super().__init__(shape, levels, steps, hidden, periodic, context_dim, context_low, context_high,
                         actnorm, min_scale, activation, injector_width, prior_width)
        self._arch.update({"context_dim": int(context_dim), "injector_width": int(injector_width),
                           "prior_width": int(prior_width)})

    @property
    def architecture(self) -> dict:
        """Constructor keyword arguments (JSON-able), with the current context bounds."""
        arch = dict(self._arch)
        arch["context_low"] = [float(v) for v in self.context_low]
        arch["context_high"] = [float(v) for v in self.context_high]
        return arch
