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

EXIT_OK = 0
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


class Interrupted(BigmodelError):
    """Training was interrupted (SIGINT/SIGTERM) after saving resume state."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str, resume_command: str | None = None, run_dir: str | None = None):
        super().__init__(message, hint=f"resume with: {resume_command}" if resume_command else None)
        self.resume_command = resume_command
        self.run_dir = run_dir
