"""bayessky.atomic.atomic_path: the target changes only when the writer finished; no temporary
file survives a failure (checked on the file system, not through the helper)."""

import numpy as np
import pytest

from bayessky.atomic import atomic_path


def test_success_replaces_the_target_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "maps.npz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".npz" and tmp != target
        np.savez(tmp, x=np.arange(3))
    assert sorted(p.name for p in target.parent.iterdir()) == ["maps.npz"]
    with np.load(target) as f:
        np.testing.assert_array_equal(f["x"], [0, 1, 2])


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "posterior.nc"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="writer died"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["posterior.nc"]
