"""The input pipeline: global batches for (epoch, start step), whatever the strategy.

The step loop in ``trainer.py`` asks an input source for an iterator over the
batches of one epoch from a given step on, and never sees where rows come from.
:class:`InMemory` gathers them from tensors; :class:`Streamed` reads them as
the epoch goes from a *row source*: the block cache of a table
(``blocks.StreamedTable``) or the files of an image folder
(``images.StreamedImages``). Both answer the same two calls
(``steps_per_epoch`` and ``iterator``).

Data order is a pure function of (seed, epoch): :func:`epoch_order`. Input
pipeline i of W takes positions j % W == i of every global batch (see
``strategy.pipeline_batches``), so every global batch holds the same rows
whether one process or W workers train, and a resumed run starts at
``start_step * global_batch`` of the same order: nothing is checkpointed but
(epoch, step).

Example::

    src = InMemory(split.x, split.y, global_batch=32, seed=42, shuffle=True)
    steps = src.steps_per_epoch(replicas=1)
    it = src.iterator(strategy, batches=[32], epoch=0, start_step=0)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bigmodel_cli.errors import ConfigError


def epoch_order(
    seed: int, epoch: int, n: int, shuffle: bool, rows: int | None = None
) -> np.ndarray:
    """Row order of one epoch: a pure function of (seed, epoch).

    ``rows`` > n (train.steps_per_epoch) chains fresh permutations."""
    rows = n if rows is None else rows
    passes = max(1, -(-rows // n))
    parts = [
        np.random.default_rng([seed, epoch, p]).permutation(n) if shuffle else np.arange(n)
        for p in range(passes)
    ]
    return np.concatenate(parts)[:rows]


class Source:
    """Steps and rows of an epoch, the same for every kind of source."""

    def __init__(
        self, n: int, global_batch: int, seed: int, shuffle: bool, steps: int | None = None
    ):
        self.n = n
        self.G, self.seed, self.shuffle, self.fixed_steps = global_batch, seed, shuffle, steps
        if global_batch > self.n:
            raise ConfigError(
                f"train.batch_size {global_batch} is larger than the {self.n} training rows",
                hint=f"use train.batch_size <= {self.n}",
            )

    def epochs_per_iterator(self, replicas: int, budget: int = 16_000_000) -> int:
        """How many epochs one iterator covers: deleting a tf.data iterator can cost
        seconds (InMemory.iterator), so epochs share one, within a budget of row
        indices held (and at most 32 epochs of concatenated datasets)."""
        return max(1, min(32, budget // max(self.epoch_rows(replicas), 1)))

    def steps_per_epoch(self, replicas: int) -> int:
        """Steps of one epoch: one pass (or ``train.steps_per_epoch``). With several
        replicas the last partial batch is dropped, so every replica runs the same steps."""
        drop = replicas > 1
        steps = self.fixed_steps or (self.n // self.G if drop else math.ceil(self.n / self.G))
        if steps == 0:
            raise ConfigError(
                f"train.batch_size {self.G} leaves no full batch of {self.n} rows over "
                f"{replicas} replicas"
            )
        return steps

    def epoch_rows(self, replicas: int) -> int:
        steps = self.steps_per_epoch(replicas)
        return min(steps * self.G, self.n) if not self.fixed_steps else steps * self.G


class InMemory(Source):
    """The training split as tensors; batches gathered by index.

    ``x`` is a matrix or a dict of named inputs; id matrices (``ids_*``) are cut
    to each batch's longest row."""

    def __init__(
        self,
        x: Any,
        y: np.ndarray,
        global_batch: int,
        seed: int,
        shuffle: bool,
        steps: int | None = None,
    ):
        super().__init__(len(y), global_batch, seed, shuffle, steps)
        self.x, self.y = x, y
        self._tensors = None

    def _gather(self):
        import tensorflow as tf

        if self._tensors is None:
            self._tensors = (tf.nest.map_structure(tf.constant, self.x), tf.constant(self.y))
        X, Y = self._tensors

        def one(name: str, v):
            def rows(i):
                r = tf.gather(v, i)
                if (
                    name.startswith("ids_") and v.dtype.is_integer
                ):  # token ids; a date's float parts have a fixed width
                    width = tf.maximum(
                        tf.reduce_max(tf.reduce_sum(tf.cast(r != 0, tf.int32), axis=1)), 1
                    )
                    r = r[:, :width]
                return r

            return rows

        if isinstance(X, dict):
            getters = {k: one(k, v) for k, v in X.items()}
            return lambda i: ({k: g(i) for k, g in getters.items()}, tf.gather(Y, i))
        return lambda i: (tf.gather(X, i), tf.gather(Y, i))

    def iterator(
        self,
        strategy,
        batches: list[int],
        epoch: int,
        start_step: int,
        end_epoch: int | None = None,
    ):
        """An iterator over the distributed batches of ``epoch`` from ``start_step``
        on, then of every epoch up to ``end_epoch`` (exclusive; :meth:`epochs_per_iterator`)."""
        import tensorflow as tf

        replicas = strategy.num_replicas_in_sync
        drop = replicas > 1
        G = self.G
        orders = []
        for e in range(epoch, end_epoch or epoch + 1):
            order = epoch_order(self.seed, e, self.n, self.shuffle, self.epoch_rows(replicas))[
                (start_step * G if e == epoch else 0) :
            ]
            orders.append(
                tf.constant((order[: (len(order) // G) * G] if drop else order).astype(np.int64))
            )
        gather = self._gather()

        def fn(ctx: tf.distribute.InputContext):
            return self.dataset(
                orders,
                gather,
                batches[ctx.input_pipeline_id],
                drop,
                ctx.input_pipeline_id,
                ctx.num_input_pipelines,
            )

        if on_one_cpu(strategy):
            # The dataset's own iterator, gathering in the step's thread. Deleting an
            # iterator (every epochs_per_iterator epochs, and after the last) waits for
            # its pipeline's threads, and that wait stalled training at random: 7.7 s at
            # epoch 32 of a telco churn run, 15.8 s at epoch 32 of a CPS1988 run, 9.1 and
            # 6.6 s at epochs 64 and 96 of another churn run, distributed or not (the
            # main thread in ~RootDataset::Iterator, waiting on a tf.data thread). With
            # no map or prefetch thread, 4 runs (14 deletions) had no gap over 0.8 s,
            # and a step took 2.9-3.0 ms against 3.4-3.9 ms with them: a gather of a
            # batch from memory costs less than handing it between threads.
            return iter(self.dataset(orders, gather, batches[0], drop, 0, 1, inline=True))
        return iter(strategy.distribute_datasets_from_function(fn))

    def dataset(
        self,
        orders: list,
        gather: Any,
        batch: int,
        drop: bool,
        i: int,
        w: int,
        inline: bool = False,
    ):
        """Input pipeline i of w: its share of each epoch's order, batched epoch by epoch
        (an epoch's last partial batch stays its own), gathered from the tensors;
        ``inline``: gathered as the step asks, with no thread of its own."""
        import tensorflow as tf

        ds = None
        for idx_all in orders:  # each epoch batched alone: its last partial batch stays its own
            mine = (
                tf.boolean_mask(idx_all, tf.equal(tf.range(tf.size(idx_all)) % self.G % w, i))
                if w > 1
                else idx_all
            )
            part = tf.data.Dataset.from_tensor_slices(mine).batch(batch, drop_remainder=drop)
            ds = part if ds is None else ds.concatenate(part)
        assert ds is not None
        if inline:
            return _finished(ds.map(gather), threads=False)
        ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return _finished(ds)


class Streamed(Source):
    """Rows read as the epoch goes from a row source, which yields the rows at
    epoch positions p (start <= p < stop, p % W == i) in order for worker i of W,
    the rows of pass k of an epoch (``train.steps_per_epoch`` beyond one pass)
    keyed by (seed, epoch, k).

    Worker i's share of every global batch is the positions p % W == i, so the
    batch size must split evenly over the workers. A Python generator feeds
    ``tf.data`` chunks of ``chunk_batches`` batches; nothing of the iterator is
    checkpointed: a resumed epoch starts at position ``start_step * batch``."""

    def __init__(
        self,
        rows: Any,
        global_batch: int,
        seed: int,
        shuffle: bool,
        steps: int | None = None,
        chunk_batches: int = 32,
    ):
        super().__init__(len(rows), global_batch, seed, shuffle, steps)
        self.rows, self.chunk_batches = rows, chunk_batches

    def positions(self, epoch: int, start: int, stop: int, i: int, W: int, chunk: int):
        """Rows of epoch positions [start, stop) for worker i of W, chunk after chunk."""
        n = self.n
        for k in range(start // n, -(-stop // n)):
            a, b = max(start, k * n), min(stop, (k + 1) * n)
            if a >= b:
                continue
            # the pass's own positions: p = P - k*n, and P % W == i means p % W == (i - k*n) % W
            yield from self.rows.worker_rows(
                [self.seed, epoch, k], a - k * n, b - k * n, (i - k * n) % W, W, chunk, self.shuffle
            )

    def iterator(
        self,
        strategy,
        batches: list[int],
        epoch: int,
        start_step: int,
        end_epoch: int | None = None,
    ):
        import tensorflow as tf

        replicas = strategy.num_replicas_in_sync
        drop = replicas > 1
        G = self.G
        steps = self.steps_per_epoch(replicas)
        stop = steps * G if drop else self.epoch_rows(replicas)
        epochs = range(epoch, end_epoch or epoch + 1)
        probe_x, probe_y = self.rows.structure(
            next(self.rows.worker_rows([self.seed, 0, 0], 0, 1, 0, 1, 1, False))
        )

        def spec(a: np.ndarray):
            return tf.TensorSpec([None, None, *a.shape[1:]], tf.as_dtype(a.dtype))

        signature = (tf.nest.map_structure(spec, probe_x), spec(probe_y))

        def fn(ctx: tf.distribute.InputContext):
            i, W = ctx.input_pipeline_id, ctx.num_input_pipelines
            if G % W:
                raise ConfigError(
                    f"train.batch_size {G} does not split evenly over {W} workers when the "
                    "data is streamed",
                    hint=f"use a multiple of {W}, e.g. {G - G % W or W}",
                )
            per = batches[i]

            def chunks():
                for e in epochs:  # each epoch alone: its last partial batch stays its own
                    yield from epoch_chunks(e, min(start_step * G, stop) if e == epoch else 0)

            def epoch_chunks(e: int, start: int):
                held: list[np.ndarray] = []
                have = 0
                want = per * self.chunk_batches
                for rows in self.positions(e, start, stop, i, W, G * self.chunk_batches):
                    held.append(rows)
                    have += len(rows)
                    while have >= want:
                        block = np.concatenate(held) if len(held) > 1 else held[0]
                        out, rest = block[:want], block[want:]
                        held, have = ([rest] if len(rest) else []), len(rest)
                        yield shaped(out, per)
                if have:
                    block = np.concatenate(held)
                    full = (len(block) // per) * per
                    if full:
                        yield shaped(block[:full], per)
                    if len(block) > full and not drop:
                        yield shaped(block[full:], len(block) - full)

            def shaped(rows: np.ndarray, size: int):
                x, y = self.rows.structure(rows)
                return tf.nest.map_structure(
                    lambda a: a.reshape(-1, size, *a.shape[1:]), x
                ), y.reshape(-1, size)

            ds = tf.data.Dataset.from_generator(chunks, output_signature=signature).unbatch()
            return _finished(ds)

        return iter(strategy.distribute_datasets_from_function(fn))


def _finished(ds, threads: bool = True):
    """A pipeline's last steps: sharded already (no auto-sharding), deterministic, and
    prefetched by a thread of its own, or (``threads=False``) without autotuning or
    prefetch, so that it starts no thread."""
    import tensorflow as tf

    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    opts.deterministic = True
    if not threads:
        opts.autotune.enabled = False
        return ds.with_options(opts)
    return ds.with_options(opts).prefetch(tf.data.AUTOTUNE)


def on_one_cpu(strategy) -> bool:
    """A OneDeviceStrategy on a CPU: its steps need no distributed iterator."""
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.OneDeviceStrategy):
        return False
    devices = strategy.extended.worker_devices
    return len(devices) == 1 and "CPU" in devices[0].upper()


def source_for(
    split: Any, global_batch: int, seed: int, shuffle: bool, steps: int | None = None
) -> Source:
    """The input source of a training split: streamed, or in memory."""
    if getattr(split, "streamed", False):
        return Streamed(split, global_batch, seed, shuffle, steps)
    return InMemory(split.x, split.y, global_batch, seed, shuffle, steps)


def eval_batches(split: Any, size: int):
    """(x, y) numpy batches of every row of a split, in order (validation after each epoch)."""
    if getattr(split, "streamed", False):
        yield from split.batches(size)
        return
    from bigmodel_cli.features.text import trim_ids

    for s in range(0, len(split), size):
        rows = slice(s, s + size)
        x = (
            {k: trim_ids(k, v[rows]) for k, v in split.x.items()}
            if isinstance(split.x, dict)
            else split.x[rows]
        )
        yield x, split.y[rows]


def training_stats(split: Any, numeric: Any) -> tuple[Any, Any]:
    """What the model's preprocessing is built from: (numeric columns or their
    ColumnStats, targets or their ColumnStats)."""
    if getattr(split, "streamed", False):
        return split.numeric_stats(), split.target_stats()
    return numeric, split.y
