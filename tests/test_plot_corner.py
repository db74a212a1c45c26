"""bayessky.plot.corner: truths, the reference overlay's shared ranges, and point estimates."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bayessky.plot import corner  # noqa: E402


def _idata(a, b):
    return az.from_dict(posterior={"a": np.asarray(a)[None], "b": np.asarray(b)[None]})


def test_truth_lines_and_shared_ranges_with_a_reference():
    rng = np.random.default_rng(0)
    post = _idata(rng.normal(0.0, 1.0, 2000), rng.normal(5.0, 0.1, 2000))
    ref = _idata(rng.normal(3.0, 1.0, 2000), rng.normal(5.5, 0.1, 2000))
    fig = corner(post, truths={"a": 0.5, "b": 5.2}, reference=ref)
    ax_a, ax_b = fig.axes[0], fig.axes[3]  # the diagonal of the 2 x 2 grid
    # both sample sets fit on the shared axes: a spans about -4..7, b about 4.6..5.9
    lo, hi = ax_a.get_xlim()
    assert lo < -3.0 and hi > 6.0
    lo, hi = ax_b.get_xlim()
    assert lo < 4.7 and hi > 5.8
    # the truth is drawn as a vertical line at its value on each diagonal panel
    for ax, value in ((ax_a, 0.5), (ax_b, 5.2)):
        xs = [line.get_xdata()[0] for line in ax.get_lines() if len(set(line.get_xdata())) == 1]
        assert any(abs(x - value) < 1e-12 for x in xs)


@pytest.mark.parametrize("value", [0.0, 3.25])
def test_a_single_draw_map_estimate_is_drawn(value):
    # a MAP estimate is one draw of one chain: no spread, which corner itself refuses
    fig = corner(_idata([value], [-1.0]))
    for ax, v in ((fig.axes[0], value), (fig.axes[3], -1.0)):
        lo, hi = ax.get_xlim()
        assert lo < v < hi and hi - lo >= 0.1 * max(abs(v), 1.0) - 1e-12


def test_unknown_variable_is_named():
    with pytest.raises(ValueError, match="var_names: not in the posterior"):
        corner(_idata([0.0, 1.0], [1.0, 2.0]), var_names=["c"])
