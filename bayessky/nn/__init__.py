"""Trainable networks: Glow and conditional Glow (HIGlow), MAF, convolutional VAE, DCGAN / WGAN-GP.

One explicit import line per module; add yours below.
"""

from .glow import ConditionalGlow, Glow  # noqa: F401
from .maf import MAF, MapMAF  # noqa: F401
