"""A run's ``meta.json``: who trained it, with what, and each session's start, end and status."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from bigmodel_cli import __version__
from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.model.saved import run_base_dir
from bigmodel_cli.runs import CHECKPOINTS, META_FILE, atomic_write_json, read_json


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    import keras
    import numpy
    import tensorflow as tf

    return {
        "bigmodel": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
    }


def _git_commit(folder: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _command_line() -> str:
    import shlex

    return (
        " ".join(shlex.quote(a) for a in ["bigmodel", *sys.argv[1:]])
        if sys.argv and "bigmodel" in Path(sys.argv[0]).name
        else " ".join(map(shlex.quote, sys.argv))
    )


def _start_session(
    run_dir: Path,
    cfg: ExperimentConfig,
    plan: Any,
    resume: bool,
    datasets: Any,
    tags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    meta_path = run_dir / META_FILE
    meta = (
        read_json(meta_path)
        if (resume and meta_path.is_file())
        else {
            "name": cfg.name,
            "task": cfg.task,
            "seed": cfg.seed,
            "created": _now(),
            "versions": _versions(),
            "git_commit": _git_commit(run_base_dir(run_dir)),
            "features": len(datasets.features),
            "classes": datasets.classes,
            "train_rows": len(datasets.train),
            "validation_rows": len(datasets.validation) if datasets.validation else 0,
            "sessions": [],
        }
    )
    meta.update(tags or {})
    meta["strategy"] = {
        "kind": plan.kind,
        "devices": plan.devices,
        "reason": plan.reason,
        "workers": plan.workers,
    }
    meta["precision"] = {"policy": plan.precision, "reason": plan.precision_reason}
    session = {
        "start": _now(),
        "end": None,
        "status": "running",
        "command": _command_line(),
        "resumed": resume,
        "host": platform.node(),
        "pid": os.getpid(),
    }
    if os.environ.get("SLURM_JOB_ID"):
        session["slurm_job"] = os.environ["SLURM_JOB_ID"]  # bigmodel runs asks squeue for its state
    meta["sessions"].append(session)
    if plan.is_chief:
        atomic_write_json(meta_path, meta)
    return meta


def _end_session(run_dir: Path, meta: dict[str, Any], status: str, is_chief: bool) -> None:
    if not is_chief:
        return
    from bigmodel_cli.training.checkpoints import LAST, read_state

    s = meta["sessions"][-1]
    s["end"] = _now()
    s["status"] = status
    try:
        s["epochs_done"] = read_state(run_dir / CHECKPOINTS / LAST).epoch
    except Exception:
        s["epochs_done"] = 0
    atomic_write_json(run_dir / META_FILE, meta)
