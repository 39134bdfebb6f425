"""Run folders: create, find the latest, resolve a RUN argument, atomic writes.

A run folder is ``<experiment>/runs/<name>-<N>/``; N counts up and a folder
is claimed with an atomic ``mkdir`` so two runs never share one. Every file
that matters is written to a temporary name in the same folder and renamed,
so a crash leaves the old file or the new one, never a torn one.

Example::

    run = create_run(Path("exp"), "mnist-cnn")   # exp/runs/mnist-cnn-1
    atomic_write_text(run / "meta.json", "{}")
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

# human_size: re-exported for ui
from bigmodel_cli.errors import ModelFileError, human_size  # noqa: F401

RUNS_DIR = "runs"
MODEL_FILE = "model.keras"
CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
# train.calibrate: the temperature and the validation ECE before and after
CALIBRATION_FILE = "calibration.json"
CHECKPOINTS = "checkpoints"
PLOTS = "plots"


def umask() -> int:
    """The process's umask, read without changing it (/proc on Linux; else set and restore)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def plain_mode(path: Path) -> None:
    """Give ``path`` the mode a plain ``open()`` (or ``mkdir``) would have: mkstemp
    makes 0600, which another user or a serving container's uid cannot read."""
    mode = (0o777 if Path(path).is_dir() else 0o666) & ~umask()
    with contextlib.suppress(OSError):
        os.chmod(path, mode)


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename onto it on success.

    The temporary name keeps the final suffix (Keras insists on ``.keras``); the
    file ends with the mode the umask gives a new file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.",
        suffix=suffix if suffix is not None else (path.suffix or ".tmp"),
        dir=path.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync(tmp_path)
        plain_mode(tmp_path)
        os.replace(tmp_path, path)
    except BaseException as e:
        written = _written(tmp_path)
        with contextlib.suppress(OSError):
            if tmp_path.is_dir():
                import shutil

                shutil.rmtree(tmp_path)
            else:
                tmp_path.unlink()
        from bigmodel_cli.errors import DiskFull, disk_full, is_disk_full

        if is_disk_full(e) and not isinstance(e, DiskFull):
            old = path.stat().st_size if path.is_file() else 0
            raise disk_full(e, path, max(old, written) or None) from None
        raise


def _written(p: Path) -> int:
    """Bytes a temporary file or folder holds (what a failed write got to)."""
    try:
        if p.is_dir():
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        return p.stat().st_size
    except OSError:
        return 0


def _fsync(p: Path) -> None:
    if p.is_file():
        with open(p, "rb") as f:
            os.fsync(f.fileno())


# atomic_path's temporary names: ".<final name>.<8 random chars><suffix>"
_TEMP_RE = re.compile(r"^\.(?P<final>.+)\.[a-z0-9_]{8}(?:\.[A-Za-z0-9]+|\.partial)?$")


def sweep_temp(folder: Path) -> list[Path]:
    """Remove what killed atomic writes left behind (temporary names only;
    a final name is never touched). Returns what was removed."""
    import shutil

    removed = []
    for d in (folder, folder / CHECKPOINTS, folder / PLOTS):
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if _TEMP_RE.match(p.name):
                try:
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(
                        missing_ok=True
                    )
                except OSError:  # a read-only folder: what follows will say so in one line
                    continue
                removed.append(p)
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


_RUN_RE = re.compile(r"^(?P<name>.+)-(?P<n>\d+)$")


def create_run(experiment_dir: Path, name: str) -> Path:
    """Claim the next free ``runs/<name>-<N>`` folder atomically."""
    root = Path(experiment_dir) / RUNS_DIR
    root.mkdir(parents=True, exist_ok=True)
    n = 1 + max(
        (int(m["n"]) for p in root.iterdir() if (m := _RUN_RE.match(p.name)) and m["name"] == name),
        default=0,
    )
    while True:
        run = root / f"{name}-{n}"
        try:
            run.mkdir()
        except FileExistsError:
            n += 1
            continue
        (run / CHECKPOINTS).mkdir()
        (run / PLOTS).mkdir()
        return run


def list_runs(experiment_dir: Path) -> list[Path]:
    root = Path(experiment_dir) / RUNS_DIR
    if not root.is_dir():
        return []
    runs = [
        p
        for p in root.iterdir()
        if p.is_dir() and _RUN_RE.match(p.name) and (p / CONFIG_FILE).is_file()
    ]
    # type: ignore[index]
    return sorted(runs, key=lambda p: (p.stat().st_mtime, int(_RUN_RE.match(p.name)["n"])))


@dataclass
class RunRef:
    """What a RUN argument points at."""

    run_dir: Path | None  # None for a bare .keras file
    model_path: Path


def tag_run(exc: BaseException, run_dir: Path | None) -> BaseException:
    """Say on an error which run folder its command was working on, so that an internal
    error is logged there (cli.py); the innermost tag wins. The folder travels with the
    error: nothing is kept between commands or shared between threads."""
    if run_dir is not None and getattr(exc, "bigmodel_run_dir", None) is None:
        try:
            exc.bigmodel_run_dir = Path(run_dir)  # type: ignore[attr-defined]
        except AttributeError:  # an exception type without a __dict__
            pass
    return exc


def run_of(exc: BaseException) -> Path | None:
    """The run folder :func:`tag_run` put on ``exc``, if any."""
    return getattr(exc, "bigmodel_run_dir", None)


def resolve_run(arg: str | Path, need_model: bool = True) -> RunRef:
    """RUN = a run folder, an experiment folder (its latest run) or a .keras file."""
    p = Path(arg)
    if not p.exists():
        raise ModelFileError(
            f"{p} does not exist",
            hint="pass a run folder (runs/<name>-<N>), an experiment folder or a .keras file",
        )
    if p.is_file():
        if p.suffix != ".keras":
            raise ModelFileError(
                f"{p} is not a .keras model file",
                hint="pass a run folder, an experiment folder or a .keras file",
            )
        run_dir = p.parent if (p.parent / CONFIG_FILE).is_file() else None
        return RunRef(run_dir, p)
    if (p / CONFIG_FILE).is_file() and (p / CHECKPOINTS).is_dir():
        run = p
    else:
        runs = list_runs(p)
        if not runs:
            what = (
                "an experiment folder with no runs yet"
                if (p / "experiment.yaml").is_file()
                else "not a run or experiment folder"
            )
            raise ModelFileError(
                f"{p} is {what}",
                hint=f"train first: bigmodel train {p}"
                if "experiment" in what
                else "pass runs/<name>-<N> or an experiment folder",
            )
        run = runs[-1]
    model = run / MODEL_FILE
    if need_model and not model.is_file():
        raise ModelFileError(
            f"{run} has no {MODEL_FILE}: the run did not finish",
            hint=f"resume it: bigmodel train {run} --resume",
        )
    return RunRef(run, model)


def path_size(p: Path) -> int:
    p = Path(p)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


INFERENCE_LOCK = ".inference.lock"  # held by the background finish while it writes inference.onnx


def inference_copy_busy(run_dir: Path) -> bool:
    """Whether a background finish (training/finish.py) still holds the run's lock."""
    import fcntl

    path = Path(run_dir) / INFERENCE_LOCK
    if not path.is_file():
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def wait_for_inference_copy(run_dir: Path, timeout: float = 600.0) -> bool:
    """Wait until no background finish holds the run's lock; False on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while inference_copy_busy(run_dir):
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(0.2, delay * 1.5)
    return True


def read_conformal(run_dir: Path) -> dict[str, Any] | None:
    """What the run's conformal scores are
    (preprocessing/conformal.json, its scores left out), or None."""
    try:
        doc = json.loads((Path(run_dir) / "preprocessing" / "conformal.json").read_text())
    except (OSError, ValueError):
        return None
    return {k: v for k, v in doc.items() if k not in ("scores", "scale")}


def read_calibration(run_dir: Path) -> dict[str, Any] | None:
    """The run's calibration.json (train.calibrate: its temperature and validation ECE), or None."""
    try:
        return json.loads((Path(run_dir) / CALIBRATION_FILE).read_text())
    except (OSError, ValueError):
        return None
