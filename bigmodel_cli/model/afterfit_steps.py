"""What is fitted on the validation outputs after training, as pure functions: the
outputs and labels in, the fitted value and what the run records about it out.
``training/afterfit.py`` runs them on the kept model's outputs and writes the records
(calibration.json, preprocessing/conformal.json); nothing here reads a run or a
trainer, so each step is tested on plain arrays.

Example::

    t, record = temperature_step("classification", probs, y, "auto", "validation")
    cut, record = threshold_step(p1, y, "auto", "f1", imbalanced=True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

# class_weight / threshold auto: the commonest class's share past which they act
IMBALANCED_SHARE = 0.8


def temperature_step(
    task: str, p: np.ndarray, y: np.ndarray, setting: str, where: str
) -> tuple[float, dict[str, Any]]:
    """Temperature scaling (Guo et al., 2017) of the kept model's probabilities:
    (the temperature kept, 1.0 when none is; its record)."""
    from bigmodel_cli.model import metrics as M

    t = M.fit_temperature(task, p, y)
    before = M.expected_calibration_error(*M.top_label(task, p, y))
    after = M.expected_calibration_error(*M.top_label(task, M.with_temperature(task, p, t), y))
    # auto keeps the temperature only where it helps on the rows it was fitted on: the
    # NLL-optimal one can still raise the ECE (text-classifier: 0.0448 -> 0.0546)
    kept = setting == "temperature" or after <= before
    record: dict[str, Any] = {
        "method": "temperature" if kept else "none",
        "temperature": round(t, 6) if kept else 1.0,
        "fitted_temperature": round(t, 6),
        "fitted_on": where,
        "rows": int(len(y)),
        "val_ece_before": round(before, 6),
        "val_ece_after": round(after if kept else before, 6),
    }
    if not kept:
        record["why"] = (
            f"train.calibrate: auto left it out: the fitted temperature {t:.3f} raised the "
            f"validation ECE from {before:.4f} to {after:.4f}"
        )
    return (round(t, 6) if kept else 1.0), record


def threshold_step(
    p1: np.ndarray, y: np.ndarray, setting: Any, metric: str, imbalanced: bool
) -> tuple[float | None, dict[str, Any]]:
    """train.threshold: a number as set (None for 0.5); auto: the one that maximises
    ``metric`` on the validation split when the classes are imbalanced (else None)."""
    from bigmodel_cli.model import metrics as M

    if setting != "auto":
        return (float(setting) if float(setting) != 0.5 else None), {}
    if not imbalanced:
        why = f"0.5: the classes are balanced enough (none holds over {IMBALANCED_SHARE:.0%})"
        return None, {"threshold_why": why}
    t, value = M.best_threshold(y, p1, metric)
    at_half = M.binary_metrics(y, p1, [0, 1], 0.5)[metric]
    why = f"{t:.4f} maximises the validation {metric} ({value:.4f}; {at_half:.4f} at 0.5)"
    return round(t, 6), {"threshold_why": why, "threshold_metric": metric}
