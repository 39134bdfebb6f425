"""A run's last steps after training: its plot and its inference copy.

Neither is the product (``model.keras`` is, and it is complete before these
start), so neither need hold up the end of ``bigmodel train``:

- ``train.inference_copy: background`` (the default) hands both to a detached
  process (``python -m bigmodel_cli.training.finish RUN``) and ``train`` returns. The
  process holds an exclusive ``flock`` on ``RUN/.inference.lock``, taken by
  ``train`` before it starts the process and inherited by it, so there is no
  moment where a reader could miss it. ``predict``/``serve`` wait for that lock
  before they look for ``inference.onnx`` (:func:`wait`). A kill -9 of the
  process releases the lock; the copy is then simply absent (its files are
  written atomically, ``inference.json`` last) and predict uses TensorFlow.
- ``wait`` does the same work in this process (the plot in a thread beside the
  ONNX conversion) and reports a failed parity check in train's notes.
- ``none`` writes no inference copy (the plot is still drawn).

The parity sample (up to 256 training rows) travels to the process as a
pickle in the run folder, ``.inference-sample.pkl``, deleted once used.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bigmodel_cli.runs import INFERENCE_LOCK as LOCK
from bigmodel_cli.runs import MODEL_FILE, PLOTS, atomic_path

# finish.busy, finish.wait: the names tests and benchmarks use
from bigmodel_cli.runs import inference_copy_busy as busy  # noqa: F401
from bigmodel_cli.runs import wait_for_inference_copy as wait  # noqa: F401

SAMPLE = ".inference-sample.pkl"
NOTE = "inference.note"  # why a background copy was not written (one line)


def run_finish(
    run_dir: Path,
    history: list[dict],
    x: Any,
    core_x: Any,
    copy: bool = True,
    best_epoch: int | None = None,
) -> tuple[Path | None, list[str], dict[str, float]]:
    """Draw the plot (in a thread) beside the ONNX conversion; (plot, notes, times).
    ``times["export"]`` is the wall time of both: they overlap, so a breakdown that adds
    up counts it once."""
    from bigmodel_cli.model.metrics import plot_history

    times: dict[str, float] = {}
    plotted: dict[str, Any] = {}

    def draw() -> None:
        t = time.perf_counter()
        try:
            plotted["path"] = plot_history(history, run_dir / PLOTS / "training.png", best_epoch)
        except Exception as e:  # noqa: BLE001  (re-raised in the caller's thread below)
            plotted["error"] = e
        plotted["seconds"] = round(time.perf_counter() - t, 3)

    if (
        copy
    ):  # before the plot thread: TensorFlow's import hides matplotlib for a moment (runtime.py)
        from bigmodel_cli.runtime import import_tensorflow

        import_tensorflow()
    drawer = threading.Thread(target=draw, name="bigmodel-plots")
    drawer.start()
    t0 = time.perf_counter()
    notes: list[str] = []
    try:
        if copy:
            notes += inference_copy_notes(run_dir / MODEL_FILE, x, core_x)
    finally:
        drawer.join()
    times["export"] = round(time.perf_counter() - t0, 3)
    if "error" in plotted:
        raise plotted["error"]
    return plotted.get("path"), notes, times


def inference_copy_notes(model_path: Path, x: Any, core_x: Any) -> list[str]:
    """Write the run's inference.onnx (predict's fast path); say why if it cannot be."""
    from bigmodel_cli.model.export import write_inference_copy
    from bigmodel_cli.model.loading import load_trained
    from bigmodel_cli.model.builders import default_batch_size

    from bigmodel_cli.model.export import file_sha256

    try:
        # The hash of the bytes loaded, taken first: a resumed run may replace
        # model.keras while a background copy of the old one is being made.
        digest = file_sha256(model_path)
        model = load_trained(model_path, user_code_dir=model_path.parent)
        r = write_inference_copy(
            model, model_path, x, default_batch_size(model), core_x, model_sha256=digest
        )
    except Exception as e:  # the Keras model is the product; this copy is an optimisation
        return [
            f"no inference.onnx ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:160] if str(e) else ''}); predict will use "
            "TensorFlow"
        ]
    if not r.parity_ok:
        return [
            f"no inference.onnx: it differs from Keras by {r.max_abs_diff:.3g}; predict "
            "will use TensorFlow"
        ]
    return []


def start_background(
    run_dir: Path,
    history: list[dict],
    x: Any,
    core_x: Any,
    copy: bool = True,
    best_epoch: int | None = None,
) -> int:
    """Start the detached process that draws the plot and writes the inference
    copy; returns its pid. The lock is taken here and inherited by the process."""
    import fcntl

    run_dir = Path(run_dir)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        # First the lock: a finish of an earlier session (a resumed run) may
        # still hold it, and it deletes the sample file when it ends.
        fcntl.flock(fd, fcntl.LOCK_EX)
        (run_dir / NOTE).unlink(missing_ok=True)
        with atomic_path(run_dir / SAMPLE) as tmp:
            tmp.write_bytes(
                pickle.dumps(
                    {
                        "history": history,
                        "x": x,
                        "core_x": core_x,
                        "copy": copy,
                        "best_epoch": best_epoch,
                    },
                    protocol=5,
                )
            )
        # CPU only, lower priority: the user's next command (another training
        # on the GPU, a predict) comes first.
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
        p = subprocess.Popen(
            [sys.executable, "-m", "bigmodel_cli.training.finish", str(run_dir), str(fd)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(fd,),
            start_new_session=True,
            env=env,
            close_fds=True,
        )
    finally:
        os.close(fd)  # the process's copy of the descriptor keeps the lock
    return p.pid


def main(argv: list[str]) -> int:
    run_dir, fd = Path(argv[0]), int(argv[1])
    with contextlib.suppress(OSError):
        os.nice(10)
    note = ""
    try:
        payload = pickle.loads((run_dir / SAMPLE).read_bytes())
        _, notes, _ = run_finish(
            run_dir,
            payload["history"],
            payload["x"],
            payload["core_x"],
            payload["copy"],
            payload.get("best_epoch"),
        )
        note = "; ".join(notes)
    # recorded for predict, which falls back to TensorFlow
    except BaseException as e:  # noqa: BLE001
        note = (
            f"the background finish failed ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''})"
        )
    finally:
        (run_dir / SAMPLE).unlink(missing_ok=True)
        if note:
            with contextlib.suppress(OSError):
                (run_dir / NOTE).write_text(note + "\n")
        os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
