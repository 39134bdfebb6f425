"""Plots drawn beside the work, not after it: a child process imports matplotlib (about
0.4 s, most of a small ``eval``'s own time) while the parent reads and scores the rows,
then draws the plots it is handed at the end. The parent waits for them, so every plot
exists when the command returns, as before; a child that cannot start or fails leaves
the drawing to the parent, in process.

Example::

    drawer = Drawer.start()
    ...  # predict, score
    path = drawer.draw("plot_confusion", cm, classes, plots / "confusion_matrix.png")
    drawer.finish()  # the files are written
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

# The child: matplotlib first (the slow part, while the parent works), then the jobs
# from stdin, each a function of bigmodel_cli.model.metrics by name.
CHILD = """
import pickle, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot
from bigmodel_cli.model import metrics
try:
    jobs = pickle.load(sys.stdin.buffer)
except EOFError:  # the parent ended before it had plots to hand over
    sys.exit(0)
for name, args in jobs:
    getattr(metrics, name)(*args)
"""


class Drawer:
    def __init__(self, proc: subprocess.Popen | None):
        self.proc = proc
        self.jobs: list[tuple[str, tuple[Any, ...]]] = []

    @classmethod
    def start(cls) -> "Drawer":
        package_root = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", CHILD],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        except OSError:
            proc = None
        return cls(proc)

    def draw(self, name: str, *args: Any) -> Path:
        """Queue ``metrics.<name>(*args)``; the one Path among them is the file it writes."""
        self.jobs.append((name, args))
        return next(a for a in args if isinstance(a, Path))

    def finish(self) -> None:
        """Every queued plot written (by the child, else here)."""
        jobs, self.jobs = self.jobs, []
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                assert proc.stdin is not None
                pickle.dump(jobs, proc.stdin)
                proc.stdin.close()
                if proc.wait() == 0:
                    return
            except (OSError, pickle.PicklingError):
                proc.kill()
                proc.wait()
        from bigmodel_cli.model import metrics

        for name, args in jobs:
            getattr(metrics, name)(*args)

    def close(self) -> None:
        """Stop the child without drawing (the command failed)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
