"""Which model a run uses: a packaged model's name or a model script's path, loaded the same way in
the parent and in every Dask worker, and identified by the sha256 of its source (run.json)."""

from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from .errors import SurveyError

__all__ = ["load_script", "load_model_or_script", "model_identity", "noise_option", "file_sha256",
           "describe_error"]


def describe_error(err: BaseException, source: str | Path | None = None) -> str:
    """``"Type: message (file.py, line N)"`` in one line, where the line is the deepest frame of
    ``source`` (a user's script) in the traceback: a user finds their own mistake from their own
    line, not from bayessky's. Without ``source`` in the traceback, no location is added."""
    import traceback

    text = (str(err).strip().splitlines() or [""])[0]
    if isinstance(err, SystemExit):
        text = f"called sys.exit({err.code!r})"
    head = f"{type(err).__name__}: {text}" if text else type(err).__name__
    if source is None:
        return head
    want = Path(source).resolve()
    if isinstance(err, SyntaxError) and err.filename and Path(err.filename).resolve() == want:
        return f"{head} ({want.name}, line {err.lineno})"
    frames = traceback.extract_tb(err.__traceback__) if err.__traceback__ is not None else []
    mine = [f for f in frames if f.filename and Path(f.filename).resolve() == want]
    if mine:
        head += f" ({want.name}, line {mine[-1].lineno})"
    return head


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (data stacks can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_script(path: str | Path) -> ModuleType:
    """Import a model script as a module; it must define a callable ``model``."""
    path = Path(path)
    if not path.is_file():
        raise SurveyError(f"script: no such file {str(path)!r}")
    spec = importlib.util.spec_from_file_location(f"bayessky_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 -- a broken user script, sys.exit included: one line
        raise SurveyError(f"script: {path.name} failed to import: {describe_error(err, path)}") from None
    if not callable(getattr(module, "model", None)):
        raise SurveyError(f"script: {path.name} does not define a function 'model(data, **options)'")
    return module


def load_model_or_script(spec: str | Path) -> ModuleType:
    """A packaged model (``spec`` a key of :data:`bayessky.models.MODELS`) or a model script (a path).

    A packaged model's name wins over a file of that name in the working folder (write
    ``./NAME`` for the file); anything else is a one-line error naming the packaged models.
    """
    from ..models import MODELS, load_model

    text = str(spec)
    if text in MODELS:
        return load_model(text)
    if Path(text).is_file():
        return load_script(text)
    known = ", ".join(sorted(MODELS)) or "none"
    if text.endswith(".py") or "/" in text or "\\" in text:
        raise SurveyError(f"script: no such file {text!r} (or give a packaged model: {known})")
    raise SurveyError(f"model: {text!r} is neither a packaged model ({known}) nor a model script (.py)")


@lru_cache(maxsize=8)
def cached_model(spec: str, mtime_ns: int) -> ModuleType:
    """:func:`load_model_or_script` once per worker process and script version: a survey runs the
    same model thousands of times, and its learned prior is cached in the module."""
    return load_model_or_script(spec)


def model_identity(spec: str, module: ModuleType) -> dict:
    """``{"model": name or absolute script path, "sha256": of the module's source file}``."""
    from ..models import MODELS

    source = getattr(module, "__file__", None)
    name = spec if spec in MODELS else str(Path(spec).resolve())
    return {"model": name, "sha256": file_sha256(source) if source else None}


def noise_option(module: ModuleType) -> str | None:
    """The model's option for a per-pixel noise rms (``NOISE_OPTION``, e.g. ``"noise_sigma"``), if any."""
    name = getattr(module, "NOISE_OPTION", None)
    return name if isinstance(name, str) and name else None
