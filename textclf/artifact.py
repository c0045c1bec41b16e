"""The run directory: what training leaves behind, and how it is read back.

Layout (``FORMAT_VERSION`` 1)::

    RUN_DIR/
      run.json          format version, textclf version, model type, sizes, date
      config.yaml       the fully resolved config the run was trained with
      labels.json       label names, in the order of the model's outputs
      vocabulary.txt    token of id i on line i (0 = padding '', 1 = '[UNK]')
      model.keras       end-to-end model: raw strings (B,) -> probabilities (B, C)
      weights.npz       the classifier's weights for the NumPy engine (no TensorFlow)
      split.json        how valid/test were carved from the training source, if they were
      metrics.json      evaluation reports on valid and test
      history.csv       per-epoch loss and metrics

A run is built in ``.NAME.partial`` beside the target and renamed onto it only
when complete, so a directory named like a run is always a whole run. The
partial directory survives an interruption: ``train --resume`` continues it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import RunDirError, UsageError

FORMAT_VERSION = 1
MODEL_FILE = "model.keras"
CHECKPOINT_DIR = "checkpoint"


def partial_dir_for(target: Path) -> Path:
    """Where a run bound for ``target`` is built (fixed, so --resume finds it)."""
    return target.parent / f".{target.name}.partial"


def prepare_partial_dir(target: Path, force: bool) -> Path:
    """A fresh, empty build directory for ``target``; refuses to clobber a run."""
    if target.exists() and not force:
        raise UsageError(f"{target} exists; pass --force to overwrite it")
    partial = partial_dir_for(target)
    if partial.exists():
        if not force and not (partial / CHECKPOINT_DIR / "progress.json").exists():
            raise UsageError(f"{partial} holds a run stopped before its first epoch finished "
                             f"(or one still training); pass --force to start over")
        if not force:
            raise UsageError(f"{partial} holds an interrupted run; continue it with "
                             f"`textclf train --resume {target}` or pass --force to start over")
        shutil.rmtree(partial)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial.mkdir()
    return partial


def finalize(partial: Path, target: Path, force: bool) -> None:
    """Rename the finished build onto ``target``; an old run is removed only after."""
    shutil.rmtree(partial / CHECKPOINT_DIR, ignore_errors=True)
    if not target.exists():
        os.replace(partial, target)
        return
    if not force:
        raise UsageError(f"{target} appeared during training; the new run is kept in {partial}")
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, aside / "run")
    try:
        os.replace(partial, target)
    except OSError:
        os.replace(aside / "run", target)  # put the old run back
        raise
    shutil.rmtree(aside, ignore_errors=True)


def write_json(path: Path, value) -> None:
    """JSON written to a temporary file then renamed: never half a file."""
    write_text(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def write_text(path: Path, text: str) -> None:
    from .atomic import atomic_output

    with atomic_output(path, force=True) as handle:
        handle.write(text)


@dataclass
class Run:
    """A loaded run directory. ``model`` maps raw strings (B,) to probabilities (B, C)."""

    path: Path
    info: dict
    labels: list[str]
    config: object  # textclf.config.Config
    _model: object = None

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(self.path / MODEL_FILE)
        return self._model

    def split(self) -> dict | None:
        path = self.path / "split.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def open_run(path: str | os.PathLike) -> Run:
    """Read a run directory's metadata (the model loads lazily on first use)."""
    from .config import config_from_dict, parse_yaml

    path = Path(path)
    info_path = path / "run.json"
    if not path.is_dir():
        raise RunDirError(f"{path}: not a directory (expected a run directory made by "
                          f"`textclf train`)")
    if not info_path.exists():
        hint = ""
        if partial_dir_for(path).exists():
            hint = f"; training did not finish: `textclf train --resume {path}`"
        raise RunDirError(f"{path}: not a run directory (no run.json){hint}")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        version = int(info["format_version"])
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):  # inf, [[[...
        raise RunDirError(f"{info_path}: corrupt (expected JSON with format_version)") from None
    if version > FORMAT_VERSION:
        raise RunDirError(f"{path}: made by textclf {info.get('textclf_version', '?')} "
                          f"(run format {version}); this textclf reads format "
                          f"{FORMAT_VERSION} and older: upgrade textclf")
    try:
        labels = json.loads((path / "labels.json").read_text(encoding="utf-8"))["labels"]
        raw = parse_yaml((path / "config.yaml").read_text(encoding="utf-8"),
                         str(path / "config.yaml"))
    except (OSError, ValueError, KeyError) as exc:
        raise RunDirError(f"{path}: incomplete run directory ({exc})") from None
    config = config_from_dict(raw, source=str(path / "config.yaml"))
    return Run(path=path, info=info, labels=labels, config=config)


def load_model(path: Path):
    """Load a ``.keras`` model with ``safe_mode`` on: no code from the file runs."""
    import keras

    from .models import fused_gru, fused_lstm, layers  # noqa: F401  registers textclf's layers

    if not path.exists():
        raise RunDirError(f"{path}: missing (the run directory is incomplete)")
    import zipfile

    if not zipfile.is_zipfile(path):  # else Keras says "File not found" of a file that is there
        raise RunDirError(f"{path}: corrupt or truncated model file (not a .keras zip archive)")
    refuse_code(path)
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
            raise RunDirError(f"{path}: refused: the model contains code (a Lambda layer); "
                              f"textclf loads models with Keras safe_mode on") from None
        raise RunDirError(f"{path}: cannot load the model ({_first_line(exc)})") from None
    except Exception as exc:  # zip, h5 and JSON errors surface as many types
        raise RunDirError(f"{path}: corrupt or truncated model file "
                          f"({type(exc).__name__}: {_first_line(exc)})") from None


def refuse_code(path: Path) -> None:
    """RunDirError if the ``.keras`` archive's config holds a Lambda layer (Python code).

    safe_mode already stops such code from loading; this check only gives the
    clear message, which Keras 3 buries in a TypeError about deserialization.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            stack = [json.loads(archive.read("config.json"))]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return  # unreadable: load_model reports it
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class_name") in ("Lambda", "__lambda__"):
                raise RunDirError(f"{path}: refused: the model contains code (a Lambda layer); "
                                  f"textclf loads models with Keras safe_mode on")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
