"""Metrics per task, computed in numpy from the model's outputs.

classification: loss, accuracy, per-class precision/recall/F1, confusion matrix
binary:         loss, accuracy, precision, recall, F1, ROC AUC, confusion matrix
regression:     loss, MSE, MAE, RMSE, R²

Example::

    m = metrics_for("binary", y_true=np.array([0, 1]), probs=np.array([[0.2], [0.9]]),
    classes=["no", "yes"])
    m["roc_auc"]  # 1.0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

EPS = 1e-7


def metrics_for(
    task: str,
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: list[Any] | None,
    loss_name: str | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    if task == "regression":
        return regression_metrics(
            y_true.astype(np.float64), probs[:, 0].astype(np.float64), loss_name
        )
    if task == "binary":
        return binary_metrics(
            y_true.astype(np.int64), probs[:, 0].astype(np.float64), classes or [0, 1], threshold
        )
    return classification_metrics(
        y_true.astype(np.int64), probs.astype(np.float64), classes or list(range(probs.shape[1]))
    )


def single_class_warning(m: dict[str, Any]) -> str | None:
    """One line when a classifier predicted the same class for every row."""
    cm = np.asarray(m.get("confusion_matrix") or [[0]])
    predicted = cm.sum(axis=0)
    if m.get("rows", 0) > 1 and (predicted > 0).sum() == 1 and len(predicted) > 1:
        c = (m.get("classes") or list(range(len(predicted))))[int(predicted.argmax())]
        return (
            f"the model predicted '{c}' for every one of the {int(predicted.sum()):,} rows: "
            "its accuracy is that class's share; see balanced_accuracy "
            "(train.threshold_metric: f1 or balanced_accuracy moves the threshold towards the "
            "rarer class on a validation split: set data.validation)"
        )
    return None


def regression_metrics(y: np.ndarray, p: np.ndarray, loss_name: str | None) -> dict[str, Any]:
    err = p - y
    mse = float(np.mean(err**2))
    mae = float(np.mean(np.abs(err)))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else float("nan")
    loss = {"mae": mae}.get(loss_name or "mse", mse)
    if loss_name == "huber":
        a = np.abs(err)
        loss = float(np.mean(np.where(a <= 1.0, 0.5 * err**2, a - 0.5)))
    return {
        "loss": loss,
        "mse": mse,
        "mae": mae,
        "rmse": float(np.sqrt(mse)),
        "r2": r2,
        "rows": int(len(y)),
    }


def confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def _prf(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    actual = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    f1 = np.divide(
        2 * precision * recall,
        precision + recall,
        out=np.zeros_like(tp),
        where=(precision + recall) > 0,
    )
    return precision, recall, f1, actual


def classification_metrics(y: np.ndarray, probs: np.ndarray, classes: list[Any]) -> dict[str, Any]:
    k = probs.shape[1]
    pred = probs.argmax(axis=1)
    cm = confusion(y, pred, k)
    precision, recall, f1, support = _prf(cm)
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], EPS, 1.0))))
    per_class = [
        {
            "class": c,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, c in enumerate(classes)
    ]
    return {
        "loss": loss,
        "accuracy": float(np.mean(pred == y)),
        "macro_f1": float(np.mean(f1)),
        "balanced_accuracy": float(np.mean(recall[support > 0])) if (support > 0).any() else 0.0,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
        "rows": int(len(y)),
    }


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney U with tie correction (average ranks)."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Average ranks, ties sharing the mean of their positions (vectorised).
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average = ends - (counts - 1) / 2.0  # 1-based mean rank of each distinct score
    ranks = average[inverse]
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def pr_auc(y: np.ndarray, score: np.ndarray) -> float:
    """The area under the precision-recall curve, as average precision (the mean of
    the precision at each positive's rank; ties broken against the positives)."""
    pos = int((y == 1).sum())
    if pos == 0:
        return float("nan")
    order = np.lexsort((y, -score))  # by score, descending; at equal scores negatives first
    hits = (y[order] == 1).astype(np.float64)
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision_at * hits).sum() / pos)


def _binary_counts(y: np.ndarray, pred: np.ndarray) -> tuple[float, float, float, float]:
    cm = confusion(y, pred, 2)
    tp, fp, fn, tn = cm[1, 1], cm[0, 1], cm[1, 0], cm[0, 0]
    precision = float(tp / (tp + fp)) if tp + fp else 0.0
    recall = float(tp / (tp + fn)) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    specificity = float(tn / (tn + fp)) if tn + fp else 0.0
    return precision, recall, f1, (recall + specificity) / 2


def best_threshold(y: np.ndarray, p: np.ndarray, metric: str = "f1") -> tuple[float, float]:
    """(threshold, value): the decision threshold that maximises ``metric`` (f1,
    balanced_accuracy or accuracy) on (y, p), among the midpoints of up to 256
    quantiles of p; at a tie, the one nearest 0.5."""
    y = np.asarray(y, np.int64)
    qs = np.unique(np.quantile(p, np.linspace(0, 1, 257)))
    candidates = np.unique(np.concatenate([(qs[:-1] + qs[1:]) / 2, [0.5]]))
    best, value = 0.5, -1.0
    for t in candidates:
        pred = (p > t).astype(np.int64)
        _, _, f1, bal = _binary_counts(y, pred)
        v = {"f1": f1, "balanced_accuracy": bal}.get(metric, float(np.mean(pred == y)))
        if v > value + 1e-12 or (abs(v - value) <= 1e-12 and abs(t - 0.5) < abs(best - 0.5)):
            best, value = float(t), v
    return best, value


def binary_metrics(
    y: np.ndarray, p: np.ndarray, classes: list[Any], threshold: float = 0.5
) -> dict[str, Any]:
    from bigmodel_cli.model.decide import labels

    pred = labels("binary", np.asarray(p).reshape(-1, 1), threshold)  # as predict decides
    cm = confusion(y, pred, 2)
    precision, recall, f1, balanced = _binary_counts(y, pred)
    pc = np.clip(p, EPS, 1 - EPS)
    loss = float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc)))
    # a run that decides at another cut also shows the argmax's figures beside its own
    at_half = {}
    if float(threshold) != 0.5:
        half = (np.asarray(p) > 0.5).astype(np.int64)
        hp, hr, hf, hb = _binary_counts(y, half)
        at_half = {
            "at_0.5": {
                "accuracy": float(np.mean(half == y)),
                "precision": hp,
                "recall": hr,
                "f1": hf,
                "balanced_accuracy": hb,
            }
        }
    return {
        "loss": loss,
        "accuracy": float(np.mean(pred == y)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "balanced_accuracy": balanced,
        "roc_auc": roc_auc(y, p),
        "pr_auc": pr_auc(y, p),
        "threshold": float(threshold),
        "positive_class": classes[1],
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
        "rows": int(len(y)),
        **at_half,
    }


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _short(c: Any, width: int = 24) -> str:
    t = str(c)
    return t if len(t) <= width else t[: width - 1] + "…"


def plot_confusion(cm: list[list[int]], classes: list[Any], path: Path) -> Path:
    return _save_figure(confusion_figure(cm, classes), path)


def confusion_figure(cm: list[list[int]], classes: list[Any]):
    plt = _plt()
    m = np.asarray(cm)
    k = len(classes)
    labels = [_short(c) for c in classes]
    longest = max((len(t) for t in labels), default=1)
    # Long names would overlap on the x-axis: rotate them once any is wider than a
    # cell, and give the figure room for them on both axes.
    rotate = 45 if (longest > 4 or k > 10) else 0
    extra = 0.09 * longest
    cell = max(0.55, min(0.9, 0.12 * longest)) if rotate == 0 else 0.55
    fig, ax = plt.subplots(
        figsize=(1.6 + cell * k + extra, 1.2 + 0.5 * k + (extra * 0.75 if rotate else 0)), dpi=110
    )
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(
        range(k),
        labels,
        rotation=rotate,
        ha="right" if rotate else "center",
        rotation_mode="anchor" if rotate else "default",
        fontsize=9,
    )
    ax.set_yticks(range(k), labels, fontsize=9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = m.max() or 1
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(m[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if m[i, j] > top / 2 else "black",
            )
    ax.set_title("confusion matrix")
    fig.tight_layout()
    return fig


def plot_history(
    rows: list[dict[str, Any]], path: Path, best_epoch: int | None = None
) -> Path | None:
    """The training curves, one panel a metric; epochs on whole-number ticks, and
    the kept epoch (the one model.keras holds) marked."""
    from matplotlib.ticker import MaxNLocator

    if not rows:
        return None
    plt = _plt()
    keys = [
        k
        for k in rows[0]
        if k not in ("epoch", "seconds", "samples_per_s") and not k.startswith("val_")
    ]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), dpi=110, squeeze=False)
    epochs = [r["epoch"] for r in rows]
    for ax, k in zip(axes[0], keys):
        ax.plot(
            epochs,
            [r[k] for r in rows],
            marker="o",
            markersize=3 if len(rows) > 30 else 5,
            label="train",
        )
        if f"val_{k}" in rows[0]:
            ax.plot(
                epochs,
                [r[f"val_{k}"] for r in rows],
                marker="o",
                markersize=3 if len(rows) > 30 else 5,
                label="validation",
            )
        if best_epoch is not None and best_epoch in epochs:
            ax.axvline(
                best_epoch,
                color="0.45",
                linestyle="--",
                linewidth=1,
                label=f"kept: epoch {best_epoch}",
            )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(k)
        ax.grid(alpha=0.3)
        ax.legend()
    return _save_figure(fig, path)


def plot_regression(y: np.ndarray, pred: np.ndarray, path: Path, target: str = "target") -> Path:
    """A regression eval: predicted against actual (the diagonal is perfect), and
    the residuals against the prediction (a pattern there is something the model missed)."""
    plt = _plt()
    ok = np.isfinite(y) & np.isfinite(pred)
    y, pred = y[ok], pred[ok]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9.0, 3.8), dpi=110)
    alpha = 0.6 if len(y) <= 2000 else 0.25
    size = 12 if len(y) <= 2000 else 4
    a.scatter(y, pred, s=size, alpha=alpha, edgecolors="none")
    lo, hi = (
        (float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))) if len(y) else (0.0, 1.0)
    )
    a.plot([lo, hi], [lo, hi], color="0.4", linestyle="--", linewidth=1, label="predicted = actual")
    a.set_xlabel(f"actual {target}")
    a.set_ylabel(f"predicted {target}")
    a.set_title(f"predicted vs actual ({len(y):,} rows)")
    a.legend(loc="upper left", fontsize=8)
    a.grid(alpha=0.3)
    resid = y - pred
    b.scatter(pred, resid, s=size, alpha=alpha, edgecolors="none")
    b.axhline(0.0, color="0.4", linestyle="--", linewidth=1)
    b.set_xlabel(f"predicted {target}")
    b.set_ylabel("actual - predicted")
    b.set_title("residuals")
    b.grid(alpha=0.3)
    return _save_figure(fig, path)


def top_label(task: str, probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) of each row's predicted label: max probability for a
    classifier, max(p, 1 - p) for a binary run."""
    if task == "binary":
        p = probs[:, 0] if probs.ndim == 2 else probs
        pred = (p > 0.5).astype(np.int64)
        return np.where(pred == 1, p, 1.0 - p), (pred == y).astype(np.float64)
    return probs.max(axis=1), (probs.argmax(axis=1) == y).astype(np.float64)


def calibration_bins(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 15
) -> list[dict[str, float]]:
    """Equal-mass bins of the rows sorted by confidence: each bin's mean confidence,
    accuracy and row count (fewer bins when there are fewer rows)."""
    order = np.argsort(confidence, kind="stable")
    out = []
    for part in np.array_split(order, min(bins, len(order))):
        if len(part):
            out.append(
                {
                    "confidence": float(confidence[part].mean()),
                    "accuracy": float(correct[part].mean()),
                    "rows": int(len(part)),
                }
            )
    return out


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 15
) -> float:
    """ECE over equal-mass bins: sum over bins of (rows / n) * |accuracy - confidence|."""
    n = max(len(confidence), 1)
    return float(
        sum(
            b["rows"] / n * abs(b["accuracy"] - b["confidence"])
            for b in calibration_bins(confidence, correct, bins)
        )
    )


def with_temperature(
    task: str,
    probs: np.ndarray,
    temperature: float,
    prior: "np.ndarray | list[float] | None" = None,
) -> np.ndarray:
    """The probabilities a temperature gives: softmax((log p - prior) / T), or
    sigmoid((logit p - prior) / T) for a binary run (T = 1 and no prior leave them
    as they are); builders' Temperature layer computes the same."""
    p = np.clip(np.asarray(probs, np.float64), EPS, 1.0)
    if task == "binary":
        p = np.clip(p, EPS, 1 - EPS)
        z = np.log(p) - np.log1p(-p)
        if prior is not None:
            z = z - (prior[1] - prior[0])
        return 1.0 / (1.0 + np.exp(-z / temperature))
    z = np.log(p)
    if prior is not None:
        z = z - np.asarray(prior, np.float64)
    z = z / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(task: str, probs: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of ``y`` (Guo et al.,
    "On Calibration of Modern Neural Networks", 2017): a golden-section search over
    log T in [-3, 3], which is convex enough in one dimension."""
    y = np.asarray(y, np.int64)

    def nll(log_t: float) -> float:
        p = with_temperature(task, probs, float(np.exp(log_t)))
        if task == "binary":
            q = np.clip(p[:, 0] if p.ndim == 2 else p, EPS, 1 - EPS)
            return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))
        return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], EPS, 1.0))))

    lo, hi = -3.0, 3.0
    g = (np.sqrt(5.0) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    best = (lo + hi) / 2
    return float(np.exp(best)) if nll(best) < nll(0.0) else 1.0


def plot_reliability(
    bins_before: list[dict[str, float]],
    bins_after: list[dict[str, float]] | None,
    ece: tuple[float, float | None],
    path: Path,
) -> Path:
    """The reliability diagram: accuracy against confidence per equal-mass bin, with the
    diagonal of perfect calibration, before and (when calibrated) after the temperature."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=110)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfectly calibrated")
    label = (
        f"model (ECE {ece[0]:.3f})"
        if bins_after is None
        else f"before calibration (ECE {ece[0]:.3f})"
    )
    ax.plot(
        [b["confidence"] for b in bins_before],
        [b["accuracy"] for b in bins_before],
        marker="o",
        label=label,
    )
    if bins_after is not None:
        ax.plot(
            [b["confidence"] for b in bins_after],
            [b["accuracy"] for b in bins_after],
            marker="s",
            label=f"calibrated (ECE {ece[1]:.3f})",
        )
    lo = min([b["confidence"] for b in bins_before + (bins_after or [])] + [0.5])
    ax.set_xlim(max(0.0, lo - 0.05), 1.01)  # a little past 1: the top bins' markers stay whole
    ax.set_ylim(max(0.0, lo - 0.05), 1.01)
    ax.set_xlabel("confidence of the predicted label")
    ax.set_ylabel("share correct")
    ax.set_title(
        f"reliability ({sum(b['rows'] for b in bins_before):,} rows, {len(bins_before)} "
        "equal-mass bins)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return _save_figure(fig, path)


def _save_figure(fig: Any, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` (a PNG, atomically, its folder made) and close it."""
    from bigmodel_cli.runs import atomic_path

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    _plt().close(fig)
    return path


def higher_is_better(name: str) -> bool:
    """Whether a larger value of this metric (or logged name) is better."""
    return any(k in name for k in ("acc", "auc", "r2", "precision", "recall", "f1"))


def plot_importance(
    importance: dict[str, float],
    std: dict[str, float],
    metric: str,
    higher: bool,
    path: Path,
    top: int = 30,
) -> Path:
    """plots/importance.png: each column's permutation importance
    with its spread, most important on top."""
    plt = _plt()
    names = list(importance)[:top][::-1]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.32 * len(names) + 1.2)), dpi=110)
    values = [importance[c] for c in names]
    ax.barh(
        [_short(c) for c in names],
        values,
        xerr=[std[c] for c in names],
        color=["#4c72b0" if v > 0 else "0.7" for v in values],
        ecolor="0.3",
        capsize=2,
    )
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set_xlabel(f"{metric} {'lost' if higher else 'gained'} when the column is shuffled")
    shown = f" (top {top} of {len(importance)})" if len(importance) > top else ""
    ax.set_title(f"permutation importance{shown}")
    return _save_figure(fig, path)


def plot_saliency(
    image: np.ndarray,
    heat: np.ndarray,
    path: Path,
    title: str,
    panels: tuple[str, str] = ("input", "saliency"),
) -> Path:
    """An image (H, W, C of 0..255) beside its saliency map drawn over it (red: the
    model's output drops when that part is hidden; blue: it rises)."""
    plt = _plt()
    img = np.asarray(image, np.float64)
    grey = img[:, :, 0] if img.shape[-1] == 1 else None
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.4), dpi=110)
    for ax in axes:
        if grey is not None:
            ax.imshow(grey, cmap="gray", vmin=0, vmax=max(255.0, float(grey.max())))
        else:
            ax.imshow(np.clip(img / 255.0, 0, 1))
        ax.set_xticks([])
        ax.set_yticks([])
    lim = float(np.abs(heat).max()) or 1.0
    shown = axes[1].imshow(heat, cmap="bwr", vmin=-lim, vmax=lim, alpha=0.6)
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    axes[0].set_title(panels[0], fontsize=9)
    axes[1].set_title(panels[1], fontsize=9)
    fig.suptitle(title, fontsize=8)
    return _save_figure(fig, path)
