"""The shipped priors: one folder per prior (card.json + weights.safetensors).

This folder is the package data of ``bayessky.priors.shipped``: the build copies it into the wheel
(see pyproject.toml), and ``bayessky.load_prior(name)`` finds a prior here by its folder name.
"""
