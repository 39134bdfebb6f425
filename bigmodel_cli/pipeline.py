"""The input pipeline: global batches for (epoch, start step), whatever the strategy.

The step loop in ``train.py`` asks an input source for an iterator over the
batches of one epoch from a given step on, and never sees where rows come from.
Today's source holds the training split in memory; streamed blocks and image
folders are meant to sit behind the same two calls (``steps_per_epoch`` and
``iterator``).

Data order is a pure function of (seed, epoch): :func:`epoch_order`. Input
pipeline i of W takes positions j % W == i of every global batch (see
``distribute.pipeline_batches``), so every global batch holds the same rows
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

from .errors import ConfigError


def epoch_order(seed: int, epoch: int, n: int, shuffle: bool, rows: int | None = None) -> np.ndarray:
    """Row order of one epoch: a pure function of (seed, epoch).

    ``rows`` > n (train.steps_per_epoch) chains fresh permutations."""
    rows = n if rows is None else rows
    passes = max(1, -(-rows // n))
    parts = [np.random.default_rng([seed, epoch, p]).permutation(n) if shuffle else np.arange(n) for p in range(passes)]
    return np.concatenate(parts)[:rows]


class InMemory:
    """The training split as tensors; batches gathered by index.

    ``x`` is a matrix or a dict of named inputs; id matrices (``ids_*``) are cut
    to each batch's longest row."""

    def __init__(self, x: Any, y: np.ndarray, global_batch: int, seed: int, shuffle: bool, steps: int | None = None):
        self.x, self.y = x, y
        self.n = len(y)
        self.G, self.seed, self.shuffle, self.fixed_steps = global_batch, seed, shuffle, steps
        if global_batch > self.n:
            raise ConfigError(f"train.batch_size {global_batch} is larger than the {self.n} training rows", hint=f"use train.batch_size <= {self.n}")
        self._tensors = None

    def steps_per_epoch(self, replicas: int) -> int:
        """Steps of one epoch: one pass (or ``train.steps_per_epoch``). With several
        replicas the last partial batch is dropped, so every replica runs the same steps."""
        drop = replicas > 1
        steps = self.fixed_steps or (self.n // self.G if drop else math.ceil(self.n / self.G))
        if steps == 0:
            raise ConfigError(f"train.batch_size {self.G} leaves no full batch of {self.n} rows over {replicas} replicas")
        return steps

    def epoch_rows(self, replicas: int) -> int:
        steps = self.steps_per_epoch(replicas)
        return min(steps * self.G, self.n) if not self.fixed_steps else steps * self.G

    def _gather(self):
        import tensorflow as tf

        if self._tensors is None:
            self._tensors = (tf.nest.map_structure(tf.constant, self.x), tf.constant(self.y))
        X, Y = self._tensors

        def one(name: str, v):
            def rows(i):
                r = tf.gather(v, i)
                if name.startswith("ids_"):
                    width = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(r != 0, tf.int32), axis=1)), 1)
                    r = r[:, :width]
                return r

            return rows

        if isinstance(X, dict):
            getters = {k: one(k, v) for k, v in X.items()}
            return lambda i: ({k: g(i) for k, g in getters.items()}, tf.gather(Y, i))
        return lambda i: (tf.gather(X, i), tf.gather(Y, i))

    def iterator(self, strategy, batches: list[int], epoch: int, start_step: int):
        """An iterator over the distributed batches of ``epoch`` from ``start_step`` on."""
        import tensorflow as tf

        replicas = strategy.num_replicas_in_sync
        drop = replicas > 1
        G = self.G
        order = epoch_order(self.seed, epoch, self.n, self.shuffle, self.epoch_rows(replicas))[start_step * G :]
        order = order[: (len(order) // G) * G] if drop else order
        idx_all = tf.constant(order.astype(np.int64))
        gather = self._gather()

        def fn(ctx: tf.distribute.InputContext):
            i, w = ctx.input_pipeline_id, ctx.num_input_pipelines
            mine = tf.boolean_mask(idx_all, tf.equal(tf.range(tf.size(idx_all)) % G % w, i)) if w > 1 else idx_all
            ds = tf.data.Dataset.from_tensor_slices(mine).batch(batches[i], drop_remainder=drop)
            ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            opts = tf.data.Options()
            opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF  # sharded above
            opts.deterministic = True
            return ds.with_options(opts).prefetch(tf.data.AUTOTUNE)

        return iter(strategy.distribute_datasets_from_function(fn))
