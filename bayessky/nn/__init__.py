"""Trainable networks: Glow and conditional Glow (HIGlow), MAF, convolutional VAE, DCGAN / WGAN-GP.

One explicit import line per module; add yours below.
"""

from .gan import GAN, Critic, Generator, gradient_penalty  # noqa: F401
from .glow import ConditionalGlow, Glow  # noqa: F401
from .maf import MAF, MapMAF  # noqa: F401
from .vae import VAE, fit_latent_flow  # noqa: F401
