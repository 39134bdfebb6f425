"""Error types that map to exit codes.

Every mistake a user can make is raised as a :class:`BigmodelError` subclass
with one line saying what is wrong and, where we know it, how to fix it. The
CLI prints ``error: <message>`` (plus ``hint: <hint>``) and exits with
``exit_code`` (2). Anything else that escapes is an internal bug: exit 1 with
the traceback written to a log file.

Example::

    raise DataError("column 'price' not found in data/train.csv",
                    hint="the file has columns: id, size, rooms")
"""

from __future__ import annotations

EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class BigmodelError(Exception):
    """A user-facing error: bad usage or bad input. Exit code 2."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # one line, always
        return self.message


class ConfigError(BigmodelError):
    """experiment.yaml or a --set override is wrong."""


class DataError(BigmodelError):
    """A data file is missing, unreadable or does not fit the config."""


class ModelFileError(BigmodelError):
    """A run folder or model file is missing, corrupt or refused."""


class PathError(BigmodelError):
    """A path argument is wrong (exists already, missing folder, ...)."""


class EnvironmentProblem(BigmodelError):
    """The machine cannot do what was asked (no GPU, bad TF_CONFIG, ...)."""


class WorkerFailed(BigmodelError):
    """Another worker of a multi-worker run failed."""

    exit_code = EXIT_INTERNAL


class Pruned(BigmodelError):
    """A ``tune`` trial stopped by the pruner (its run folder says "pruned")."""


class DiskFull(BigmodelError):
    """A write ran out of space (ENOSPC) or quota (EDQUOT); nothing was
    torn and the temporary file is gone."""

    def __init__(
        self,
        path: str,
        free: int | None,
        needed: int | None,
        message: str | None = None,
        hint: str | None = None,
    ):
        self.path, self.free, self.needed = path, free, needed
        super().__init__(
            message
            or f"no space left writing {path}: {human_size(free)} free, about "
            f"{human_size(needed)} needed",
            hint=hint or "free some space, or write elsewhere; nothing was left half-written",
        )


def human_size(n: int | float | None) -> str:
    """1536 -> '1.5 KB' (None: '? bytes'): every size bigmodel prints."""
    if n is None:
        return "? bytes"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def is_disk_full(e: BaseException) -> bool:
    """ENOSPC or EDQUOT, from Python or from a library that only kept the text (pyarrow, h5py)."""
    import errno

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(e, BigmodelError) or not isinstance(e, Exception):
        return False
    text = str(
        e
    )  # TensorFlow's ResourceExhaustedError, pyarrow's OSError text, h5py's RuntimeError
    if "No space left on device" in text or "Disk quota exceeded" in text:
        return True
    import re

    return (
        isinstance(e, OSError) and re.search(r"\d+ requested and \d+ written", text) is not None
    )  # numpy's short write


def disk_full(e: BaseException, path, needed: int | None = None) -> DiskFull:
    """The DiskFull for an error ``e`` raised writing ``path`` (its folder's free space now)."""
    import os
    import shutil
    from pathlib import Path

    p = Path(path)
    folder = p if p.is_dir() else p.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if needed is None and p.exists() and p.is_file():
        needed = os.path.getsize(p)
    return DiskFull(str(path), free, needed)


class Interrupted(BigmodelError):
    """Training was interrupted (SIGINT/SIGTERM) after saving resume state."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str, resume_command: str | None = None, run_dir: str | None = None):
        super().__init__(message, hint=f"resume with: {resume_command}" if resume_command else None)
        self.resume_command = resume_command
        self.run_dir = run_dir
