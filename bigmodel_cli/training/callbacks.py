"""What the training loop does besides training, as callbacks on the Observer protocol.

The loop (:class:`~bigmodel_cli.training.trainer.Trainer`) calls one
:class:`CallbackList`, as Keras' ``TensorFlowTrainer.fit`` calls its
``CallbackList``. Each callback has the Observer's methods (``on_train_begin``,
``on_epoch_begin``, ``on_steps``, ``on_epoch_end``, ``on_saved``,
``on_train_end``) and reads the trainer it was made for: its ``state``
(:class:`~bigmodel_cli.training.checkpoints.TrainState`), the running sums of the
epoch, ``stop`` (the signal flag). Their order is the order of the work at an
epoch's end: the monitor decides *improved*, the checkpoints save (best.keras
too when improved), the history is written, TensorBoard logs, the user's
observer draws, and last an interrupt that came during the epoch saves and stops.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any, Protocol

from bigmodel_cli.errors import Interrupted


class Observer(Protocol):
    def on_train_begin(self, info: dict[str, Any]) -> None: ...
    def on_epoch_begin(self, epoch: int, steps: int) -> None: ...
    def on_steps(
        self, epoch: int, done: int, steps: int, logs: dict[str, float], samples_per_s: float
    ) -> None: ...
    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None: ...
    def on_saved(self, path: Path) -> None: ...
    def on_train_end(self, info: dict[str, Any]) -> None: ...


class Loop(Protocol):
    """What a callback may use of the loop that runs it (the Trainer), and nothing else:
    the state a checkpoint saves, the stop flag, and the loop's own saves."""

    state: Any  # checkpoints.TrainState
    stop: Any  # trainer.StopFlag: .signal is set by SIGINT/SIGTERM
    run_dir: Path
    steps_per_epoch: int

    def save_state(self, best_too: bool = False) -> None: ...
    def hold_partial(self, done: int) -> None: ...
    def write_history(self) -> None: ...
    def learning_rate(self) -> float: ...


class Callback(Observer):
    """An Observer that works for the loop: every hook is optional (a no-op here);
    the loop (:class:`Loop`) is the callback's first argument at construction. What one
    callback tells another is handed to it explicitly (Checkpoints reads EarlyStopping's
    ``improved``), never left on the loop."""

    def __init__(self, loop: Loop) -> None:
        self.t = loop


HOOKS = ("on_train_begin", "on_epoch_begin", "on_steps", "on_epoch_end", "on_saved", "on_train_end")
OUTSIDE_THE_LOOP = (
    "on_prepare",
)  # an observer's hook that train calls before the loop (the block cache)


class CallbackList:
    """Calls each callback's hook in order; a callback or observer may leave a hook out.
    A method named like a hook that is none of :data:`HOOKS` (a typo: ``on_epoch_ned``)
    is an error when the list is made, and so is calling a hook the list does not have."""

    def __init__(self, callbacks: list[Any]) -> None:
        for c in callbacks:
            unknown = [
                n for n in dir(c) if n.startswith("on_") and n not in HOOKS + OUTSIDE_THE_LOOP
            ]
            if unknown:
                raise TypeError(
                    f"{type(c).__name__}.{unknown[0]} is not a training hook (the hooks: "
                    f"{', '.join(HOOKS)})"
                )
        self.callbacks = callbacks

    def _call(self, hook: str, *args: Any) -> None:
        for c in self.callbacks:
            fn = getattr(c, hook, None)
            if fn is not None:
                fn(*args)

    def on_train_begin(self, info: dict[str, Any]) -> None:
        self._call("on_train_begin", info)

    def on_epoch_begin(self, epoch: int, steps: int) -> None:
        self._call("on_epoch_begin", epoch, steps)

    def on_steps(
        self, epoch: int, done: int, steps: int, logs: dict[str, float], samples_per_s: float
    ) -> None:
        self._call("on_steps", epoch, done, steps, logs, samples_per_s)

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        self._call("on_epoch_end", epoch, row)

    def on_saved(self, path: Path) -> None:
        self._call("on_saved", path)

    def on_train_end(self, info: dict[str, Any]) -> None:
        self._call("on_train_end", info)


class EarlyStopping(Callback):
    """Tracks the monitored value's best epoch (what best.keras holds) and, with
    ``train.early_stopping``, stops after ``patience`` epochs without improvement."""

    def __init__(self, loop: Loop, monitor: str, mode: str, es: Any) -> None:
        super().__init__(loop)
        self.monitor, self.mode, self.es = monitor, mode, es
        self.improved = False  # at the last epoch's end: what best.keras should hold

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        st, delta = self.t.state, (self.es.min_delta if self.es else 0)
        value = row[self.monitor]
        improved = st.best is None or (
            value < st.best - delta if self.mode == "min" else value > st.best + delta
        )
        if improved:
            st.best, st.best_epoch, st.wait = float(value), epoch, 0
        else:
            st.wait += 1
        if self.es and st.wait > self.es.patience:
            st.stopped_early = True
        self.improved = improved


class Checkpoints(Callback):
    """last.keras (previous.keras kept) at every epoch's end and every
    ``train.checkpoint_every`` inside one; best.keras when the monitor improved."""

    def __init__(
        self, loop: Loop, every_s: float | None, every_steps: int | None, best: EarlyStopping
    ) -> None:
        super().__init__(loop)
        self.every_s, self.every_steps, self.best = every_s, every_steps, best
        self.mark()

    def mark(self) -> None:
        self.last_step, self.last_time = self.t.state.global_step, time.monotonic()

    def due(self) -> bool:
        st = self.t.state
        return bool(
            (self.every_steps and st.global_step - self.last_step >= self.every_steps)
            or (self.every_s and time.monotonic() - self.last_time >= self.every_s)
        )

    def on_steps(
        self, epoch: int, done: int, steps: int, logs: dict[str, float], samples_per_s: float
    ) -> None:
        if self.t.stop.signal is not None or done >= steps or not self.due():
            return  # an interrupt saves for itself; an epoch's end saves below
        self.t.hold_partial(done)
        self.t.save_state()
        self.mark()

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        self.t.save_state(best_too=self.best.improved)
        self.mark()


class HistoryLog(Callback):
    """history.csv after every epoch (the chief's)."""

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        self.t.write_history()


class TensorBoard(Callback):
    """Scalars per step and per epoch (``train.tensorboard``); closed however the loop ends."""

    def __init__(self, loop: Loop, run_dir: Path, steps_per_epoch: int) -> None:
        super().__init__(loop)
        from bigmodel_cli.training.tensorboard import TensorBoardLog

        self.log = TensorBoardLog(run_dir, steps_per_epoch)

    def on_steps(
        self, epoch: int, done: int, steps: int, logs: dict[str, float], samples_per_s: float
    ) -> None:
        self.log.steps(self.t.state.global_step, logs)

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        self.log.epoch(epoch, row, self.t.learning_rate())

    def close(self) -> None:
        self.log.close()


class InterruptSave(Callback):
    """SIGINT/SIGTERM (preemption): save the resume state where the
    loop is, then stop with exit 130."""

    def on_steps(
        self, epoch: int, done: int, steps: int, logs: dict[str, float], samples_per_s: float
    ) -> None:
        if self.t.stop.signal is not None:
            self.t.hold_partial(done)
            raise self.stopped(self.t.stop.signal)

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        if self.t.stop.signal is not None:
            raise self.stopped(self.t.stop.signal)

    def stopped(self, sig: int) -> Interrupted:
        t, st = self.t, self.t.state
        t.save_state()
        t.write_history()
        where = (
            f"epoch {st.epoch + 1}, step {st.step}/{t.steps_per_epoch}"
            if st.step
            else f"after epoch {st.epoch}"
        )
        return Interrupted(
            f"training interrupted by {signal_name(sig)} at {where}; resume state saved in "
            f"{t.run_dir}",
            f"bigmodel train {t.run_dir} --resume",
            str(t.run_dir),
        )


def signal_name(sig: int) -> str:
    return (
        "SIGINT (Ctrl-C)"
        if sig == signal.SIGINT
        else "SIGTERM"
        if sig == signal.SIGTERM
        else f"signal {sig}"
    )
