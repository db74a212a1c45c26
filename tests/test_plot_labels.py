"""Figures a reader can use as they are: typeset parameter labels, a legend for every line, colour
bars with units, and no std panel for a MAP point."""

from __future__ import annotations

import arviz as az
import matplotlib.pyplot as plt
import numpy as np

from bayessky.plot import corner, posterior_maps, trace


def _idata(seed=0):
    rng = np.random.default_rng(seed)
    return az.from_dict(posterior={"Omega_m": 0.3 + 0.02 * rng.standard_normal((2, 200)),
                                   "sigma_8": 0.8 + 0.03 * rng.standard_normal((2, 200))})


def test_corner_labels_are_typeset_and_the_legend_names_every_line():
    fig = corner(_idata(), truths={"Omega_m": 0.3, "sigma_8": 0.8}, reference=_idata(1),
                 label="NUTS", reference_label="grid")
    xlabels = {ax.get_xlabel() for ax in fig.axes} - {""}
    assert xlabels == {r"$\Omega_{\rm m}$", r"$\sigma_8$"}, xlabels
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert texts == ["NUTS", "grid", "truth"], texts
    plt.close(fig)


def test_trace_titles_are_typeset():
    fig = trace(_idata())
    titles = {ax.get_title() for ax in fig.axes}
    assert r"$\sigma_8$" in titles and r"$\Omega_{\rm m}$" in titles, titles
    plt.close(fig)


def test_posterior_maps_without_std_and_with_units():
    mean = np.random.default_rng(0).random((8, 8))
    fig = posterior_maps(mean, None, data=mean, units="MJy/sr")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["data", "MAP estimate"], titles
    bars = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert bars == ["MJy/sr", "MJy/sr"], bars
    plt.close(fig)


def test_corner_with_two_references_has_a_colour_and_a_legend_entry_each():
    fig = corner(_idata(), reference=[_idata(1), _idata(2)], label="grid",
                 reference_label=["exact", "NUTS"], truths={"Omega_m": 0.3})
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert texts == ["grid", "exact", "NUTS", "truth"], texts
    plt.close(fig)
