"""A run's training state on disk: the checkpoints (last, previous, best) written atomically,
the state and history beside them, where a resume starts (the newest whole checkpoint), and
the final model.keras.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bigmodel_cli.errors import ModelFileError
from bigmodel_cli.runs import (
    CHECKPOINTS,
    HISTORY_FILE,
    atomic_path,
    atomic_write_text,
)

STATE_NAME = "bigmodel_state.json"


LAST = "last.keras"


PREVIOUS = "previous.keras"  # the resume state before last.keras: what resume falls back to


BEST = "best.keras"


@dataclass
class TrainState:
    """Everything needed to continue a run exactly where it stopped."""

    epoch: int = 0  # epochs fully completed
    step: int = 0  # steps completed inside epoch `epoch` (mid-epoch checkpoints)
    partial: list[float] = field(default_factory=list)  # metric sums of the unfinished epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float | None = None
    best_epoch: int | None = None
    wait: int = 0
    stopped_early: bool = False
    global_step: int = 0

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> "TrainState":
        return cls(**json.loads(text))


def save_checkpoint(model, path: Path, state: TrainState, also: Path | None = None) -> None:
    """model + optimizer + resume state in one file, atomically; ``also`` (the
    best checkpoint) gets the same file first, as a hard link: one
    serialisation, and a kill between the two renames leaves ``also`` newer
    than ``path``, never older (resume redoes the epoch from ``path``)."""
    with atomic_path(path, suffix=".keras") as tmp:
        _cache_attr_skipsets()
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as z:
            z.writestr(STATE_NAME, state.to_json())
        if path.name == LAST and path.is_file():
            keep_previous(path, path.with_name(PREVIOUS))
        if also is not None:
            with atomic_path(also, suffix=".keras") as tmp_also:
                tmp_also.unlink()
                try:
                    os.link(tmp, tmp_also)
                except OSError:  # a file system without hard links
                    import shutil

                    shutil.copyfile(tmp, tmp_also)


def _cache_attr_skipsets() -> None:
    """Keras 3's saving_lib.get_attr_skipset caches each kind's set under
    ``saving_attr_skipset_<kind>`` but looks it up under ``saving_attr_skiplist_<kind>``,
    so every save builds a throwaway Layer() per layer of the model: an epoch-end
    checkpoint of the table default took 80 ms with it and 50 ms without
    (benchmarks/member_cost.py), and a table's run saves one every epoch. Fill the key
    it reads; the sets are the ones it would build. A no-op where Keras has fixed it or
    moved the function."""
    try:
        from keras.src.backend.common import global_state
        from keras.src.saving import saving_lib
    except ImportError:
        return
    for kind in ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss"):
        key = f"saving_attr_skiplist_{kind}"
        if global_state.get_global_attribute(key) is None:
            try:
                global_state.set_global_attribute(key, saving_lib.get_attr_skipset(kind))
            except (AttributeError, ValueError):
                return


def keep_previous(last: Path, previous: Path) -> None:
    """The current last.keras becomes previous.keras before a new one replaces it: a
    hard link renamed into place (no moment without either), or a rename where
    the file system has no hard links (a kill in between leaves previous.keras)."""
    tmp = previous.with_name(f".{previous.name}.linking_.keras")  # a temporary name resume sweeps
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(last, tmp)
        os.replace(tmp, previous)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.replace(last, previous)


def damage(path: Path) -> str | None:
    """Why a checkpoint cannot be resumed from (None: it is whole): not a zip (a
    truncated file), a member whose CRC fails, or no model or resume state inside."""
    try:
        if path.stat().st_size == 0:
            return "empty"
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if STATE_NAME not in names or "config.json" not in names:
                return "no resume state inside"
            bad = z.testzip()
            if bad is not None:
                return f"{bad} fails its checksum"
            TrainState.from_json(z.read(STATE_NAME).decode())
    except zipfile.BadZipFile:
        return "not a whole zip file: truncated?"
    except (OSError, ValueError, TypeError, KeyError, EOFError) as e:
        return f"{type(e).__name__}: {str(e)[:80]}"
    return None


def resume_point(run_dir: Path) -> tuple[Path | None, TrainState | None, list[str]]:
    """The newest whole resume state of a run: last.keras, else the newer of
    previous.keras and best.keras; notes name each damaged one. (None, None, notes)
    when the run has none: resume then starts it again from step 0."""
    ckpt = run_dir / CHECKPOINTS
    notes: list[str] = []
    whole: list[tuple[Path, TrainState]] = []
    for name in (LAST, PREVIOUS, BEST):
        p = ckpt / name
        if not p.is_file():
            continue
        why = damage(p)
        if why:
            notes.append(f"checkpoint {p} is damaged ({why})")
            continue
        whole.append((p, read_state(p)))
        if name == LAST:
            break
    if not whole:
        return None, None, notes
    path, state = (
        whole[0] if whole[0][0].name == LAST else max(whole, key=lambda ps: ps[1].global_step)
    )
    if notes:
        where = (
            f"epoch {state.epoch + 1}, step {state.step}"
            if state.step
            else f"the end of epoch {state.epoch}"
        )
        notes[-1] += f"; resuming from {path.name} ({where})"
    return path, state, notes


def read_state(path: Path) -> TrainState:
    try:
        with zipfile.ZipFile(path) as z:
            return TrainState.from_json(z.read(STATE_NAME).decode())
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as e:
        raise ModelFileError(
            f"checkpoint {path} is unreadable ({type(e).__name__})",
            hint="the run cannot be resumed from it; start a new run",
        ) from None


def write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    import csv
    import io

    if not rows:
        return
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(run_dir / HISTORY_FILE, buf.getvalue())


def finalize_model(
    src: Path,
    dst: Path,
    wrap: Callable[[Any], Any] | None = None,
    adjust: Callable[[Any], Any] | None = None,
) -> None:
    """The final model: the best checkpoint without optimizer or resume state;
    ``adjust`` changes the core first (calibration), then ``wrap`` turns a text
    model's integer-id core into the raw-text model."""
    import keras

    from bigmodel_cli.features.backbone import import_if_needed
    from bigmodel_cli.model.builders import float32_copy
    from bigmodel_cli.model.loading import register_layers

    register_layers()
    import_if_needed(src)
    model = float32_copy(keras.models.load_model(src, compile=False))
    if adjust is not None:
        model = adjust(model)
    if wrap is not None:
        model = wrap(model)
    with atomic_path(dst, suffix=".keras") as tmp:
        model.save(tmp)
