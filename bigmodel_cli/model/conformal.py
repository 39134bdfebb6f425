"""Split conformal prediction: the scores of a held-out calibration split, kept in
the run, turn any model output into prediction sets (classifiers) or intervals
(regressions) at a coverage chosen at predict time.

- **Classification** (and binary, as two classes): the score of a row is
  ``1 - p(true class)`` (LAC, Sadinle, Lei & Wasserman 2019: of all set-valued
  rules with the requested marginal coverage it gives the smallest mean set),
  or, with ``method="aps"``, the probability mass down to and including the true
  class (adaptive prediction sets, Romano, Sesia & Candès 2020: larger sets, but
  closer to the coverage on every kind of row). Every set holds the row's own
  label (the likeliest class of the decision probabilities, so a binary run's
  threshold decides it: :mod:`bigmodel_cli.model.decide`), and the label scores
  0, so the sets stay calibrated with it inside. A set is never empty; where the
  coverage asked is below the model's accuracy, the sets are the labels alone and
  cover as often as the model is right.
- **Regression**: normalised residuals (Lei et al. 2018). The scale of a row's
  error is learnt from the predicted value on one half of the calibration rows
  (the mean absolute residual of equal-count bins of predictions, interpolated),
  and the other half's residuals divided by it are the scores, so an interval is
  wider where the model's errors were larger. With under :data:`MIN_SCALE_ROWS`
  rows there is no scale to learn: the width is constant.

Coverage holds marginally, for rows exchangeable with the calibration split: the
interval or set at ``coverage`` uses the ``ceil((n + 1) * coverage) / n``
empirical quantile of the n scores. Nothing here imports TensorFlow: predict and
serve use it on onnxruntime's outputs as on Keras's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.model.decide import class_probabilities, decision_probabilities

__all__ = ["Conformal", "class_probabilities", "check_coverage", "load"]

CONFORMAL_FILE = "conformal.json"  # in the run's preprocessing/ folder
METHODS = ("lac", "aps")
MIN_SCALE_ROWS = 100  # calibration rows below which a regression's width is constant
MIN_ROWS = 20  # calibration rows below which no scores are kept


def check_coverage(coverage: float, where: str = "--coverage") -> None:
    from bigmodel_cli.errors import ConfigError

    if not (isinstance(coverage, (int, float)) and 0.0 < float(coverage) < 1.0):
        raise ConfigError(
            f"{where} must be a share between 0 and 1, got {coverage}",
            hint=f"e.g. {where} 0.9 (90% of the sets or intervals hold the true value)",
        )


def _quantile(scores: np.ndarray, coverage: float) -> float:
    """The split-conformal quantile: the ceil((n+1) c)-th smallest score (inf past n)."""
    n = len(scores)
    k = math.ceil((n + 1) * coverage)
    return float("inf") if k > n else float(np.sort(scores)[k - 1])


def class_scores(full: np.ndarray, y: np.ndarray, method: str) -> np.ndarray:
    """Each row's score for its true class ``y``. The label (the likeliest class of
    ``full``, the decision probabilities) scores 0: every set holds its own label
    (model.decide.sets), so the quantile is of the scores that can still miss."""
    y = np.asarray(y, np.int64)
    p_true = full[np.arange(len(y)), y]
    top = full.argmax(axis=1) == y
    if method == "lac":
        return np.where(top, 0.0, 1.0 - p_true)
    # APS: the mass of the classes at least as likely as the true one, itself included
    return np.where(top, 0.0, np.where(full >= p_true[:, None], full, 0.0).sum(axis=1))


@dataclass
class Scale:
    """A regression row's expected absolute error, from its predicted value."""

    centres: list[float] = field(default_factory=list)  # median prediction of each bin
    values: list[float] = field(default_factory=list)  # mean absolute residual of each bin

    @classmethod
    def fit(cls, pred: np.ndarray, residual: np.ndarray) -> "Scale":
        order = np.argsort(pred, kind="stable")
        bins = int(np.clip(len(pred) // 50, 2, 10))
        parts = np.array_split(order, bins)
        centres = [float(np.median(pred[i])) for i in parts]
        values = [float(np.mean(np.abs(residual[i]))) for i in parts]
        floor = max(
            1e-12, 0.05 * float(np.mean(np.abs(residual)))
        )  # an exact bin must not make zero widths
        return cls(centres, [max(v, floor) for v in values])

    def __call__(self, pred: np.ndarray) -> np.ndarray:
        if not self.centres:
            return np.ones(len(pred))
        return np.interp(np.asarray(pred, np.float64), self.centres, self.values)


@dataclass
class Conformal:
    task: str
    rows: int  # calibration rows the scores come from
    fitted_on: str  # what those rows are, in words
    scores: dict[str, list[float]] = field(default_factory=dict)  # method -> sorted scores
    scale: Scale | None = None  # regression, normalised: the error scale
    scale_rows: int = 0
    # binary: the run's decision threshold, mapped to 0.5 before scoring (model.decide)
    threshold: float = 0.5

    # ------------------------------------------------------------- fitting
    @classmethod
    def fit(
        cls,
        task: str,
        outputs: np.ndarray,
        y: np.ndarray,
        fitted_on: str,
        seed: int = 0,
        threshold: float = 0.5,
    ) -> "Conformal":
        """Scores of ``outputs`` (the final model's, calibrated) against ``y``; a binary
        run's scores are of its decision probabilities at ``threshold``."""
        if task == "regression":
            pred, y = np.asarray(outputs, np.float64)[:, 0], np.asarray(y, np.float64).reshape(-1)
            residual = y - pred
            if len(y) >= MIN_SCALE_ROWS:
                rng = np.random.default_rng(seed)
                order = rng.permutation(len(y))
                a, b = order[: len(y) // 2], order[len(y) // 2 :]
                scale = Scale.fit(pred[a], residual[a])
                scores = np.abs(residual[b]) / scale(pred[b])
                return cls(
                    task,
                    len(b),
                    fitted_on
                    + f", half of them ({len(b):,}); the other half learnt the error scale",
                    {"normalised": sorted(map(float, scores))},
                    scale,
                    len(a),
                )
            return cls(task, len(y), fitted_on, {"absolute": sorted(map(float, np.abs(residual)))})
        full = decision_probabilities(task, outputs, threshold)
        scores = {m: sorted(map(float, class_scores(full, y, m))) for m in METHODS}
        return cls(task, len(y), fitted_on, scores, threshold=float(threshold))

    # ------------------------------------------------------------- use
    @property
    def method(self) -> str:
        return next(iter(self.scores)) if self.task == "regression" else "lac"

    def quantile(self, coverage: float, method: str | None = None) -> float:
        return _quantile(np.asarray(self.scores[method or self.method]), coverage)

    def sets(self, probs: np.ndarray, coverage: float, method: str = "lac") -> np.ndarray:
        """A boolean (rows, classes) mask: which classes each row's set holds; the
        label (the likeliest decision probability) always. At a coverage below the
        model's accuracy the sets are the labels alone, and cover as the accuracy does."""
        full = decision_probabilities(self.task, probs, self.threshold)
        q = self.quantile(coverage, method)
        if method == "lac":
            keep = full >= 1.0 - q
        else:  # APS: the likeliest classes whose mass, down to and including each, stays within q
            # (the set of the score's own definition: including the class that crosses q as
            # well, as the conservative variant does, covered 0.97 at a request of 0.8)
            order = np.argsort(-full, axis=1, kind="stable")
            ranked = np.take_along_axis(full, order, axis=1)
            keep = np.zeros_like(full, dtype=bool)
            np.put_along_axis(keep, order, np.cumsum(ranked, axis=1) <= q + 1e-12, axis=1)
        keep[np.arange(len(full)), full.argmax(axis=1)] = True  # the label scores 0 (class_scores)
        return keep

    def intervals(self, pred: np.ndarray, coverage: float) -> tuple[np.ndarray, np.ndarray]:
        pred = np.asarray(pred, np.float64).reshape(-1)
        half = self.quantile(coverage) * (self.scale(pred) if self.scale is not None else 1.0)
        return pred - half, pred + half

    # ------------------------------------------------------------- saving
    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "task": self.task,
            "rows": self.rows,
            "fitted_on": self.fitted_on,
            "method": self.method,
            "scores": self.scores,
        }
        if self.scale is not None:
            doc["scale"] = {
                "centres": self.scale.centres,
                "values": self.scale.values,
                "rows": self.scale_rows,
            }
        if self.task == "binary":
            doc["threshold"] = self.threshold
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Conformal":
        s = doc.get("scale")
        scale = Scale(list(s["centres"]), list(s["values"])) if s else None
        scores = {k: list(v) for k, v in doc["scores"].items()}
        # a run saved before the threshold was part of the scores scored plain probabilities
        threshold = float(doc.get("threshold", 0.5))
        return cls(
            doc["task"],
            int(doc["rows"]),
            doc.get("fitted_on", ""),
            scores,
            scale,
            int(s["rows"]) if s else 0,
            threshold,
        )

    def save(self, preprocessing_dir: Path) -> Path:
        from bigmodel_cli.runs import atomic_write_json

        preprocessing_dir.mkdir(parents=True, exist_ok=True)
        path = preprocessing_dir / CONFORMAL_FILE
        atomic_write_json(path, self.to_json())
        return path

    def summary(self) -> dict[str, Any]:
        """What the run says about its scores (train --json, the summary)."""
        out = {
            "method": self.method if self.task == "regression" else "lac (aps on request)",
            "rows": self.rows,
            "fitted_on": self.fitted_on,
        }
        return out


def load(run_dir: Path | None) -> Conformal | None:
    from bigmodel_cli.features.text import PREPROCESSING_DIR

    if run_dir is None:
        return None
    path = Path(run_dir) / PREPROCESSING_DIR / CONFORMAL_FILE
    if not path.is_file():
        return None
    try:
        return Conformal.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
