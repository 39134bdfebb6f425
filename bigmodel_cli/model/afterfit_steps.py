"""What is fitted on the validation outputs after training, as pure functions: the
outputs and labels in, the fitted value and what the run records about it out.
``training/afterfit.py`` runs them on the kept model's outputs and writes the records
(calibration.json, preprocessing/conformal.json); nothing here reads a run or a
trainer, so each step is tested on plain arrays.

Example::

    t, record = temperature_step("classification", probs, y, "auto", "validation")
    cut, record = threshold_step(p1, y, "auto", "accuracy", imbalanced=True)
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
    kept = setting == "temperature" or after < before
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
            f"train.calibrate: auto left it out: the fitted temperature {t:.3f} did not lower "
            f"the validation ECE ({before:.4f}, {after:.4f} with it)"
        )
    return (round(t, 6) if kept else 1.0), record


def threshold_step(
    p1: np.ndarray, y: np.ndarray, setting: Any, metric: str, imbalanced: bool
) -> tuple[float | None, dict[str, Any]]:
    """train.threshold: a number as set (None for 0.5); auto: the cut that is best on the
    validation split for ``metric`` (accuracy by default, kept only where it beats 0.5 on
    more rows than chance would; f1 and balanced_accuracy: the best cut). Where the
    classes are imbalanced the record also says the minority class's recall and what the
    other metric's cut would give (``minority``), so a rare class is never left unsaid."""
    from bigmodel_cli.model import metrics as M

    y = np.asarray(y, np.int64)
    if setting != "auto":
        t = float(setting) if float(setting) != 0.5 else None
        record: dict[str, Any] = {}
    elif metric == "accuracy":
        t, record = _accuracy_cut(p1, y)
    else:
        cut, value = M.best_threshold(y, p1, metric)
        at_half = M.binary_metrics(y, p1, [0, 1], 0.5)[metric]
        why = f"{cut:.4f} maximises the validation {metric} ({value:.4f}; {at_half:.4f} at 0.5)"
        t, record = round(cut, 6), {"threshold_why": why, "threshold_metric": metric}
    if t is not None and len(y):
        # binary_metrics at a cut other than 0.5 carries the figures at 0.5 beside its own
        m = M.binary_metrics(y, p1, [0, 1], t)
        keys = ("accuracy", "balanced_accuracy", "f1", "recall")
        record["validation"] = {
            "at_threshold": {k: round(m[k], 4) for k in keys},
            "at_0.5": {k: round(m.get("at_0.5", m)[k], 4) for k in keys},
        }
    if imbalanced and len(y) and 0 < y.sum() < len(y):
        record["minority"] = _minority(p1, y, 0.5 if t is None else t, metric)
    return t, record


def _accuracy_cut(p1: np.ndarray, y: np.ndarray) -> tuple[float | None, dict[str, Any]]:
    """The validation's most accurate cut, kept where it beats 0.5 by more than chance: of
    the rows it decides differently, the ones it puts right must outnumber the ones it puts
    wrong by over two standard deviations of a fair coin (a sign test). With calibrated
    probabilities the expected best cut is 0.5, and a cut tuned on a few hundred rows
    would otherwise move with their noise."""
    from bigmodel_cli.model import metrics as M

    cut, value = M.best_threshold(y, p1, "accuracy")
    at_half, at_cut = p1 > 0.5, p1 > cut
    changed = at_half != at_cut
    fixed = int((changed & (at_cut == (y == 1))).sum())
    broken = int(changed.sum()) - fixed
    base = {"threshold_metric": "accuracy"}
    if fixed - broken <= 2 * np.sqrt(fixed + broken):
        why = "0.5: the most accurate cut on the validation split" + (
            f" ({cut:.4f}: {fixed} rows right against {broken} wrong) is within chance of it"
            if fixed + broken
            else " is 0.5"
        )
        return None, {**base, "threshold_why": why}
    why = (
        f"{cut:.4f} maximises the validation accuracy ({value:.4f}; "
        f"{float(np.mean(at_half == (y == 1))):.4f} at 0.5; {fixed} rows right against {broken})"
    )
    return round(cut, 6), {**base, "threshold_why": why}


def _minority(p1: np.ndarray, y: np.ndarray, t: float, metric: str) -> dict[str, Any]:
    """The rarer class's share, recall and precision at the run's cut, and the cut of the
    other metric (f1 under accuracy, accuracy under f1 or balanced_accuracy) with its recall
    and accuracy: the one setting that trades one for the other."""
    from bigmodel_cli.model import metrics as M

    positive = bool(y.mean() <= 0.5)  # the minority is the positive class (index 1)

    def at(cut: float) -> dict[str, float]:
        pred = p1 > cut
        is_min = (y == 1) if positive else (y == 0)
        said_min = pred if positive else ~pred
        hits = int((said_min & is_min).sum())
        return {
            "recall": round(hits / max(int(is_min.sum()), 1), 4),
            "precision": round(hits / max(int(said_min.sum()), 1), 4),
            "accuracy": round(float(np.mean(pred == (y == 1))), 4),
        }

    other = "f1" if metric == "accuracy" else "accuracy"
    cut = M.best_threshold(y, p1, "f1")[0] if other == "f1" else _accuracy_cut(p1, y)[0] or 0.5
    return {
        "class_index": int(positive),
        "share": round(float(np.mean(y == int(positive))), 4),
        **at(t),
        "other": {"setting": f"train.threshold_metric: {other}", "threshold": round(cut, 6)}
        | at(cut),
    }
