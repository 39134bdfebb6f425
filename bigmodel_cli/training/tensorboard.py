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
whole record (events of the last 2 s may be lost then: history.csv is the
record). A writer thread does the file work, so the loop only queues small
protobufs (``train.tensorboard: false`` turns it off).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

TB_DIR = "tensorboard"
POINTS_PER_EPOCH = 20
FLUSH_SECONDS = 2


class TensorBoardLog:
    def __init__(self, run_dir: Path, steps_per_epoch: int):
        # TensorBoard's own pure-Python writer (the one PyTorch's SummaryWriter
        # uses): plain protobufs queued to a writer thread, no TensorFlow op per
        # scalar. tf.summary cost ~4 ms an epoch here, 10% of a short epoch.
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.Event, self.Summary = Event, Summary
        root = Path(run_dir) / TB_DIR
        self.train = EventFileWriter(
            str(root / "train"), max_queue_size=10_000, flush_secs=FLUSH_SECONDS
        )
        self.val = EventFileWriter(
            str(root / "validation"), max_queue_size=10_000, flush_secs=FLUSH_SECONDS
        )
        self.every = max(1, steps_per_epoch // POINTS_PER_EPOCH)
        self.next = 0

    def _write(self, writer, step: int, values: dict[str, float]) -> None:
        if values:
            summary = self.Summary(
                value=[self.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()]
            )
            writer.add_event(self.Event(wall_time=time.time(), step=int(step), summary=summary))

    def steps(self, global_step: int, logs: dict[str, float]) -> None:
        if global_step < self.next:
            return
        self.next = (global_step // self.every + 1) * self.every
        self._write(self.train, global_step, {f"step_{k}": v for k, v in logs.items()})

    def epoch(self, epoch: int, row: dict[str, Any], learning_rate: float | None = None) -> None:
        numbers = {
            k: v
            for k, v in row.items()
            if k not in ("epoch", "seconds") and isinstance(v, (int, float))
        }
        train = {f"epoch_{k}": v for k, v in numbers.items() if not k.startswith("val_")}
        if learning_rate is not None:
            train["epoch_learning_rate"] = learning_rate
        self._write(self.train, epoch, train)
        self._write(
            self.val,
            epoch,
            {f"epoch_{k[4:]}": v for k, v in numbers.items() if k.startswith("val_")},
        )

    def close(self) -> None:
        self.train.close()
        self.val.close()
