"""The durable state of a survey run in its output folder.

- ``run.json``: the manifest (:mod:`.manifest`) plus progress (maps done, failures).
- ``records/map_<i>.json``: written (atomically) right after map i's outputs; lists each output
  file with its sha256 and the map's summary rows. A map is finished when its record exists and
  every file it lists still has that sha256; a resumed run keeps those maps untouched.
- ``summary.csv`` (all finished maps' summary rows) and ``failures.csv`` (map, reason).

One small record per map (instead of the whole table in run.json) keeps the cost of finishing a
map constant: run.json and the tables are rewritten at most every ``flush_seconds`` and at the end.
Every file goes through :mod:`bayessky.atomic`.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

from ..atomic import atomic_path, write_json
from .errors import SurveyError
from .manifest import difference
from .model_spec import file_sha256

__all__ = ["JobState", "OUTPUT_PATTERNS"]

#: what a run writes into --out (what --restart clears; nothing else there is touched)
OUTPUT_PATTERNS = ("run.json", "summary.csv", "failures.csv", "posterior*.nc", "map_mean*.npy",
                   "map_std*.npy", "corner*.png", "maps*.png")
RECORDS = "records"


def _json_value(v):
    """Strict-JSON cell: NaN/inf (an r_hat of one chain) become null, numpy scalars Python ones."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class JobState:
    """Progress of one run in ``out`` (see the module docstring).

    Arguments:
        out: the output folder (locked by the caller).
        manifest: this command's manifest.
        restart: clear the previous run's outputs first instead of resuming it.
        flush_seconds: least time between rewrites of run.json / summary.csv / failures.csv.
    """

    def __init__(self, out: str | Path, manifest: dict, *, restart: bool = False, flush_seconds: float = 5.0):
        self.out = Path(out)
        self.manifest = manifest
        self.n = int(manifest["n_maps"])
        self.width = max(3, len(str(self.n - 1)))
        self.flush_seconds = flush_seconds
        self._last_flush = 0.0
        self.failures: dict[int, str] = {}
        self.records: dict[int, dict] = {}
        old = self.out / "run.json"
        if restart:
            self.clear()
        elif old.is_file():
            try:
                previous = json.loads(old.read_text())
            except (OSError, ValueError):
                previous = {}
            why = difference(previous, manifest)
            if why is not None:
                raise SurveyError(f"--out: {str(self.out)!r} holds another run ({why}); use --restart to "
                                  "replace it or choose another folder")
            self._load_records()

    # -- names -------------------------------------------------------------------------------------
    def suffix(self, i: int) -> str:
        """``""`` for a one-map run (posterior.nc, as before surveys), else ``_000``, ``_001``, ..."""
        return "" if self.n == 1 else f"_{i:0{self.width}d}"

    def _record_path(self, i: int) -> Path:
        return self.out / RECORDS / f"map_{i:0{self.width}d}.json"

    # -- resume ------------------------------------------------------------------------------------
    def clear(self) -> None:
        """Remove the previous run's outputs (only the files a run writes)."""
        for pattern in OUTPUT_PATTERNS:
            for p in self.out.glob(pattern):
                if p.is_file():
                    p.unlink()
        shutil.rmtree(self.out / RECORDS, ignore_errors=True)

    def _load_records(self) -> None:
        for i in range(self.n):
            path = self._record_path(i)
            if not path.is_file():
                continue
            try:
                rec = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # atomic writes make this unlikely; recompute the map
            if all((self.out / name).is_file() and file_sha256(self.out / name) == sha
                   for name, sha in rec.get("files", {}).items()):
                self.records[i] = rec

    def done(self, i: int) -> bool:
        """Map i finished (in this run or a previous one whose files are intact)."""
        return i in self.records

    def pending(self) -> list[int]:
        """Indices still to run (failed maps of a previous attempt are run again)."""
        return [i for i in range(self.n) if i not in self.records]

    # -- progress ----------------------------------------------------------------------------------
    def record_done(self, i: int, files: list[Path], summary_rows: list[dict] | None = None) -> None:
        """Map i's outputs are on disk: write its record (after them, so a record implies the files)."""
        rows = [{k: _json_value(v) for k, v in row.items()} for row in summary_rows or []]
        rec = {"map": i, "files": {Path(f).name: file_sha256(f) for f in files}, "summary": rows}
        self._record_path(i).parent.mkdir(parents=True, exist_ok=True)
        write_json(self._record_path(i), rec)
        self.records[i] = rec
        self.failures.pop(i, None)
        self.flush()

    def record_failure(self, i: int, reason: str) -> None:
        """Map i failed with a one-line ``reason``; the run goes on."""
        self.failures[i] = " ".join(str(reason).split())[:500]
        self.flush()

    def flush(self, force: bool = False) -> None:
        """Rewrite run.json, summary.csv and failures.csv (atomically) if due or ``force``."""
        now = time.monotonic()
        if not force and now - self._last_flush < self.flush_seconds:
            return
        self._last_flush = now
        meta = dict(self.manifest)
        meta["progress"] = {"done": len(self.records), "failed": len(self.failures),
                            "pending": self.n - len(self.records) - len(self.failures)}
        meta["failures"] = [{"map": i, "reason": r} for i, r in sorted(self.failures.items())]
        write_json(self.out / "run.json", meta)
        self._write_tables()

    def _write_tables(self) -> None:
        import pandas as pd

        rows = [row for i in sorted(self.records) for row in self.records[i]["summary"]]
        if rows:
            table = pd.DataFrame(rows).set_index("variable")
            table.index.name = None
            with atomic_path(self.out / "summary.csv") as tmp:
                table.to_csv(tmp)
        fail = self.out / "failures.csv"
        if self.failures:
            table = pd.DataFrame([{"map": i, "reason": r} for i, r in sorted(self.failures.items())])
            with atomic_path(fail) as tmp:
                table.to_csv(tmp, index=False)
        elif fail.is_file():
            fail.unlink()  # a resumed run that fixed every failure
