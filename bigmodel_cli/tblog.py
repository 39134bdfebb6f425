"""TensorBoard event files for a run: ``tensorboard --logdir EXP/runs``.

Written by the chief under ``RUN/tensorboard/``, in the layout Keras's own
callback uses, so TensorBoard overlays training and validation on one chart:

- ``train/``: ``epoch_<metric>`` each epoch (loss, metrics, learning rate,
  samples/s) and ``step_<metric>`` (the epoch's running mean so far) at about
  20 points per epoch, on whole compiled chunks of steps;
- ``validation/``: ``epoch_<metric>`` of the validation split.

The x axis is the global step for step scalars and the epoch for epoch
scalars. A resumed run appends a new event file to the same folders and
continues the numbering; a file cut short by kill -9 is read up to its last
whole record. Events are buffered and flushed once an epoch, so writing costs
the loop almost nothing (``train.tensorboard: false`` turns it off).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TB_DIR = "tensorboard"
POINTS_PER_EPOCH = 20


class TensorBoardLog:
    def __init__(self, run_dir: Path, steps_per_epoch: int):
        import tensorflow as tf

        self.tf = tf
        root = Path(run_dir) / TB_DIR
        self.train = tf.summary.create_file_writer(str(root / "train"), flush_millis=10**9, max_queue=10**6)
        self.val = tf.summary.create_file_writer(str(root / "validation"), flush_millis=10**9, max_queue=10**6)
        self.every = max(1, steps_per_epoch // POINTS_PER_EPOCH)
        self.next = 0

    def steps(self, global_step: int, logs: dict[str, float]) -> None:
        if global_step < self.next:
            return
        self.next = (global_step // self.every + 1) * self.every
        with self.train.as_default(step=global_step):
            for k, v in logs.items():
                self.tf.summary.scalar(f"step_{k}", v)

    def epoch(self, epoch: int, row: dict[str, Any], learning_rate: float | None = None) -> None:
        skip = ("epoch", "seconds")
        with self.train.as_default(step=epoch):
            for k, v in row.items():
                if k not in skip and not k.startswith("val_") and isinstance(v, (int, float)):
                    self.tf.summary.scalar(f"epoch_{k}", v)
            if learning_rate is not None:
                self.tf.summary.scalar("epoch_learning_rate", learning_rate)
        with self.val.as_default(step=epoch):
            for k, v in row.items():
                if k.startswith("val_") and isinstance(v, (int, float)):
                    self.tf.summary.scalar(f"epoch_{k[4:]}", v)
        self.flush()

    def flush(self) -> None:
        self.train.flush()
        self.val.flush()

    def close(self) -> None:
        self.train.close()
        self.val.close()
