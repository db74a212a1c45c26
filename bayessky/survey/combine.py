"""``--combine``: one InferenceData ``posterior.nc`` holding every finished map along a ``map``
dimension (coordinate: the map's index), built from the per-map files."""

from __future__ import annotations

from pathlib import Path

__all__ = ["combine_posteriors"]


def combine_posteriors(paths: dict[int, Path], out: Path):
    """Concatenate the groups present in every file of ``{map index: posterior_i.nc}`` along a new
    ``map`` dimension and write ``out`` atomically; returns ``out``."""
    import arviz as az
    import xarray as xr

    from ..atomic import atomic_path

    order = sorted(paths)
    datas = [az.from_netcdf(paths[i]) for i in order]
    groups = [g for g in datas[0].groups() if all(g in d.groups() for d in datas)]
    combined = {}
    for g in groups:
        # a dimension without coordinates (e.g. the MAP engine's optimisation "step", as long as
        # each map's L-BFGS run) cannot be aligned across maps of different lengths: give it its
        # integer positions, so the outer join pads the shorter maps with NaN
        parts = [d_g.assign_coords({k: range(n) for k, n in d_g.sizes.items() if k not in d_g.coords})
                 for d_g in (getattr(d, g) for d in datas)]
        combined[g] = xr.concat(parts, dim="map", coords="minimal", compat="override", join="outer",
                                combine_attrs="drop_conflicts").assign_coords(map=order)
    idata = az.InferenceData(**combined)
    with atomic_path(out) as tmp:
        idata.to_netcdf(str(tmp))
    return out
