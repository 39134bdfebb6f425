"""What training optimises and reports: the loss per example (numpy, for the members' weights
and the epoch's figures), the metric names and the monitored one's direction, and the loss
with class weights taken back out.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from bigmodel_cli.config.experiment import ExperimentConfig


def metric_names(cfg: ExperimentConfig) -> list[str]:
    return list(cfg.train.metrics or [])


def per_example(cfg: ExperimentConfig):
    """(y, p) -> [loss, metric...] per example, as tensors."""
    import keras
    import tensorflow as tf

    task, names = cfg.task, metric_names(cfg)
    loss_fn = {
        "sparse_categorical_crossentropy": lambda y, p: (
            keras.losses.sparse_categorical_crossentropy(y, p)
        ),
        "binary_crossentropy": lambda y, p: keras.losses.binary_crossentropy(
            tf.expand_dims(tf.cast(y, p.dtype), -1), p
        ),
        "mse": lambda y, p: tf.square(p[:, 0] - y),
        "mae": lambda y, p: tf.abs(p[:, 0] - y),
        "huber": lambda y, p: keras.losses.huber(tf.expand_dims(y, -1), p),
    }[cfg.train.loss or ""]

    def metrics(y, p):
        out = []
        for m in names:
            if m == "accuracy":
                if task == "classification":
                    hit = tf.equal(tf.cast(tf.argmax(p, -1), y.dtype), y)
                else:
                    hit = tf.equal(tf.cast(p[:, 0] > 0.5, y.dtype), y)
                out.append(tf.cast(hit, tf.float32))
            elif m == "mae":
                out.append(tf.abs(p[:, 0] - y))
            elif m in ("mse", "rmse"):
                out.append(tf.square(p[:, 0] - y))
        return out

    return loss_fn, metrics


def numpy_loss(name: str, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The per-example loss of predictions [rows, outputs] against ``y``, in NumPy
    (the same formulas as :func:`per_example`'s, for scoring many weightings fast)."""
    eps = 1e-7
    if name == "sparse_categorical_crossentropy":
        idx = np.asarray(y, np.int64)
        return lambda p: -np.log(np.clip(p[np.arange(len(idx)), idx], eps, 1.0))
    if name == "binary_crossentropy":
        t = np.asarray(y, np.float64)
        return lambda p: (
            -(
                t * np.log(np.clip(p[:, 0], eps, 1 - eps))
                + (1 - t) * np.log(np.clip(1 - p[:, 0], eps, 1 - eps))
            )
        )
    t = np.asarray(y, np.float64)
    if name == "mae":
        return lambda p: np.abs(p[:, 0] - t)
    if name == "huber":
        return lambda p: np.where(
            np.abs(p[:, 0] - t) <= 1.0, 0.5 * (p[:, 0] - t) ** 2, np.abs(p[:, 0] - t) - 0.5
        )
    return lambda p: (p[:, 0] - t) ** 2


def finish_metrics(names: list[str], sums: np.ndarray, prefix: str = "") -> dict[str, float]:
    """sums = [loss_sum, count, metric sums...] -> averaged logs."""
    n = max(float(sums[1]), 1.0)
    logs = {prefix + "loss": float(sums[0]) / n}
    for i, m in enumerate(names):
        v = float(sums[2 + i]) / n
        logs[prefix + m] = math.sqrt(v) if m == "rmse" else v
    return logs


def monitor_mode(name: str, mode: str) -> str:
    if mode != "auto":
        return mode
    from bigmodel_cli.model.metrics import higher_is_better

    return "max" if higher_is_better(name) else "min"


def class_weighted(loss_fn: Any, weights: "np.ndarray | None"):
    """train.class_weight: each row's loss times its class's weight
    (the logged loss stays unweighted)."""
    if weights is None:
        return loss_fn
    import tensorflow as tf

    w = tf.constant(np.asarray(weights, np.float32))
    return lambda y, p: loss_fn(y, p) * tf.gather(w, tf.cast(tf.reshape(y, [-1]), tf.int32))


def optimised_loss(cfg: ExperimentConfig, loss_fn: Any, train_y: Any):
    """The per-example loss the optimizer sees: in standardised (and log) target units.

    data.normalize_target: optimise the loss of the standardised target (the
    model ends in Rescaling(std, mean)); the logged losses stay in the target's units."""
    import tensorflow as tf

    from bigmodel_cli.model import numeric

    t_mean, t_std = (
        numeric.target_stats(numeric.target_space(train_y, cfg))
        if cfg.data.normalize_target
        else (0.0, 1.0)
    )
    log_target = cfg.data.target_transform == "log"
    if not (cfg.data.normalize_target or log_target):
        return loss_fn

    def optimised(y, p):
        ty, tp = (
            (
                tf.math.log1p(tf.maximum(y, 0.0)),
                tf.math.log1p(tf.maximum(tf.cast(p, tf.float32), -1.0 + 1e-6)),
            )
            if log_target
            else (y, p)
        )
        return loss_fn((ty - t_mean) / t_std, (tp - t_mean) / t_std)

    return optimised
