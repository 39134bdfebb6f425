"""Decisions and sets come from one place: the label a run gives, its conformal set
or interval, and the figures ``eval`` prints are all computed here, so predict,
serve, explain, eval and the exports' checks cannot disagree.

- :func:`labels`: a regression's value; a binary run's positive class where its
  probability passes the run's threshold (``train.threshold``), else the negative;
  otherwise the likeliest class.
- :func:`decision_probabilities`: each class's probability as the decision sees it.
  A binary run's threshold ``t`` is mapped to 0.5 by a monotone piecewise-linear
  map (``p -> p / 2t`` below ``t``, ``0.5 + (p - t) / 2(1 - t)`` above it), so the
  likeliest class is always the label. Conformal scores are computed on these
  numbers at fit time and at predict time alike, so the coverage guarantee holds
  for them as for any score (split conformal holds for any fixed score function).
- :func:`sets`: the conformal set of each row, with its own label always inside.
  With decision probabilities a non-empty LAC set already holds the label; the
  union matters only where the set would be empty (a coverage below the model's
  accuracy) or for a run saved before the threshold was part of the scores.

Nothing here imports TensorFlow.

Example::

    idx = labels("binary", probs, threshold=0.2)
    keep = sets(conformal, "binary", probs, 0.2, coverage=0.9)
    assert keep[np.arange(len(idx)), idx].all()
"""

from __future__ import annotations

from typing import Any

import numpy as np


def class_probabilities(task: str, probs: np.ndarray) -> np.ndarray:
    """The model's outputs as one probability per class (binary: [1 - p, p])."""
    p = np.asarray(probs, np.float64)
    return np.column_stack([1.0 - p[:, 0], p[:, 0]]) if task == "binary" else p


def decision_probabilities(task: str, probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per-class numbers whose argmax is the run's label (binary: the threshold sits at 0.5)."""
    if task != "binary" or float(threshold) == 0.5:
        return class_probabilities(task, probs)
    t = min(max(float(threshold), 1e-9), 1.0 - 1e-9)
    p = np.asarray(probs, np.float64)[:, 0]
    moved = np.where(p <= t, 0.5 * p / t, 0.5 + 0.5 * (p - t) / (1.0 - t))
    return np.column_stack([1.0 - moved, moved])


def labels(task: str, probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Class indices (a regression: its float32 values). Binary: ``p > threshold``."""
    probs = np.asarray(probs)
    if task == "regression":
        return probs[:, 0].astype(np.float32, copy=False)
    if task == "binary":
        return (probs[:, 0] > threshold).astype(np.int64)
    return probs.argmax(axis=1)


def sets(
    conformal: Any,
    task: str,
    probs: np.ndarray,
    threshold: float,
    coverage: float,
    method: str = "lac",
) -> np.ndarray:
    """A boolean (rows, classes) mask: each row's conformal set at
    ``coverage``, its label included."""
    keep = np.array(conformal.sets(probs, coverage, method), dtype=bool, copy=True)
    idx = labels(task, probs, threshold)
    keep[np.arange(len(idx)), idx] = True
    return keep


def intervals(conformal: Any, values: np.ndarray, coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """A regression's (lower, upper) at ``coverage``: they always hold the value itself."""
    return conformal.intervals(values, coverage)


def coverage_report(
    conformal: Any,
    outputs: np.ndarray,
    y: np.ndarray,
    coverage: float,
    method: str = "lac",
    threshold: float = 0.5,
) -> dict[str, float]:
    """The empirical coverage and size on labelled rows of what predict answers: the
    mean set size, or the median interval width (eval and the benchmarks)."""
    if conformal.task == "regression":
        lo, hi = intervals(conformal, np.asarray(outputs)[:, 0], coverage)
        y = np.asarray(y, np.float64).reshape(-1)
        return {
            "coverage": float(np.mean((y >= lo) & (y <= hi))),
            "median_width": float(np.median(hi - lo)),
        }
    keep = sets(conformal, conformal.task, outputs, threshold, coverage, method)
    y = np.asarray(y, np.int64)
    return {
        "coverage": float(np.mean(keep[np.arange(len(y)), y])),
        "mean_set_size": float(keep.sum(axis=1).mean()),
    }
