"""What is fitted after training, on the validation split, and kept with the model:

- the class weights' prior taken back out of the probabilities (``train.class_weight``);
- temperature scaling (``train.calibrate``);
- a binary model's decision threshold (``train.threshold``);
- the conformal scores behind ``predict --coverage`` (``train.conformal``).

The kept model is run once over the validation split; everything else is NumPy on
those outputs. When both temperature scaling and conformal scores need the split,
it is cut in two (by the run's seed): the temperature learns from one half and the
scores come from the other, so the coverage guarantee holds for the calibrated
model. All of it is written to ``calibration.json`` and ``preprocessing/conformal.json``
and said in the train summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.model.afterfit_steps import IMBALANCED_SHARE
from bigmodel_cli.runs import CALIBRATION_FILE, atomic_write_json

Trainer = Any  # training.trainer.Trainer (not imported: it imports this module)


def class_weights(
    cfg: ExperimentConfig, counts: "np.ndarray | None", classes: list[Any] | None
) -> tuple["np.ndarray | None", str]:
    """(weights in class order or None, why): train.class_weight resolved."""
    from bigmodel_cli.errors import ConfigError

    setting = cfg.train.class_weight
    if cfg.task == "regression" or not classes or setting == "none":
        return None, ""
    if isinstance(setting, dict):
        named = {str(k): float(v) for k, v in setting.items()}
        unknown = [k for k in named if k not in {str(c) for c in classes}]
        if unknown:
            raise ConfigError(
                f"train.class_weight names '{unknown[0]}', which is not a class of this run",
                hint="its classes: " + ", ".join(map(str, classes[:20])),
            )
        if any(v <= 0 for v in named.values()):
            raise ConfigError("train.class_weight: every weight must be above 0")
        return np.array(
            [named.get(str(c), 1.0) for c in classes], np.float64
        ), "as set in train.class_weight"
    if counts is None or counts.sum() == 0:
        return None, ""
    share = float(counts.max() / counts.sum())
    if share <= IMBALANCED_SHARE:
        return None, ""
    w = counts.sum() / (len(counts) * np.maximum(counts, 1))
    return w.astype(
        np.float64
    ), f"balanced: '{classes[int(counts.argmax())]}' holds {share:.0%} of the training rows"


def imbalanced(trainer: Trainer) -> bool:
    counts = trainer.data.class_counts()
    return (
        counts is not None and counts.sum() > 0 and counts.max() / counts.sum() > IMBALANCED_SHARE
    )


def _set_threshold(cfg: ExperimentConfig) -> float | None:
    """A binary run's train.threshold when it is a number other than 0.5."""
    t = cfg.train.threshold
    return float(t) if cfg.task == "binary" and t != "auto" and float(t) != 0.5 else None


def needed(trainer: Trainer) -> bool:
    return (
        trainer.has_val
        or trainer.class_weights is not None
        or _set_threshold(trainer.cfg) is not None
    )


def forget_conformal(run_dir: Path) -> None:
    from bigmodel_cli.features.text import PREPROCESSING_DIR
    from bigmodel_cli.model.conformal import CONFORMAL_FILE

    (run_dir / PREPROCESSING_DIR / CONFORMAL_FILE).unlink(missing_ok=True)


def validation_outputs(trainer: Trainer, core) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf

    from bigmodel_cli.training.pipeline import eval_batches

    outs, ys = [], []
    for xb, yb in eval_batches(trainer.data.validation, max(256, trainer.G)):
        outs.append(
            np.asarray(core(tf.nest.map_structure(tf.constant, xb), training=False), np.float64)
        )
        ys.append(np.asarray(yb))
    return np.concatenate(outs), np.concatenate(ys).reshape(-1)


def adjust(trainer: Trainer, core):
    """The kept model with what the validation split fitted; the records written."""
    from bigmodel_cli.model import builders as models
    from bigmodel_cli.model import metrics as M

    cfg, task = trainer.cfg, trainer.cfg.task
    p, y = validation_outputs(trainer, core) if trainer.has_val else (None, None)
    if task == "regression":
        if p is not None:
            _conformal(trainer, p, y, "the validation split")
        return core
    weights = trainer.class_weights
    prior = np.log(weights) if weights is not None else None
    record: dict[str, Any] = {"method": "none", "temperature": 1.0}
    if weights is not None:
        record["class_weight"] = {
            str(c): round(float(w), 6) for c, w in zip(trainer.data.classes or [], weights)
        }
        record["class_weight_why"] = (
            trainer.class_weight_why + "; the probabilities have the weights taken back out"
        )
    t, threshold = 1.0, _set_threshold(cfg)
    if p is not None:
        y = y.astype(np.int64)
        p = M.with_temperature(
            task, p, 1.0, prior
        )  # the prior undone: calibrated to the real class shares
        cal_rows, conf_rows, where = _halves(trainer, len(y))
        if cfg.train.calibrate != "none":
            t = _temperature(trainer, record, p[cal_rows], y[cal_rows], where[0])
        p = M.with_temperature(task, p, t)
        if task == "binary":
            threshold = _threshold(trainer, record, p[:, 0], y)
        _conformal(
            trainer,
            p[conf_rows],
            y[conf_rows],
            where[1],
            threshold if threshold is not None else 0.5,
        )
    record["threshold"] = threshold if threshold is not None else 0.5 if task == "binary" else None
    record["positive_class"] = (
        (trainer.data.classes or [None, None])[1] if task == "binary" else None
    )
    atomic_write_json(trainer.run_dir / CALIBRATION_FILE, record)
    trainer.calibration = record
    if t == 1.0 and prior is None and threshold is None:
        return core
    return models.with_temperature_layer(
        core, task, t, prior.tolist() if prior is not None else None, threshold
    )


def _halves(trainer: Trainer, n: int) -> tuple[np.ndarray, np.ndarray, tuple[str, str]]:
    """(rows for the temperature, rows for the conformal scores, what each is, in words)."""
    from bigmodel_cli.model.conformal import MIN_ROWS

    everything = np.arange(n)
    both = (
        trainer.cfg.train.calibrate != "none"
        and trainer.cfg.train.conformal != "none"
        and n >= 2 * MIN_ROWS
    )
    if not both:
        return everything, everything, ("validation", "the validation split")
    order = np.random.default_rng(trainer.cfg.seed).permutation(n)
    a, b = np.sort(order[: n // 2]), np.sort(order[n // 2 :])
    return (
        a,
        b,
        (
            f"validation, half of it ({len(a):,} rows)",
            f"the other half of the validation split ({len(b):,} rows; the temperature "
            "learnt from the first)",
        ),
    )


def _temperature(
    trainer: Trainer, record: dict[str, Any], p: np.ndarray, y: np.ndarray, where: str
) -> float:
    from bigmodel_cli.model.afterfit_steps import temperature_step

    t, entries = temperature_step(trainer.cfg.task, p, y, trainer.cfg.train.calibrate, where)
    record.update(entries)
    return t


def _threshold(
    trainer: Trainer, record: dict[str, Any], p1: np.ndarray, y: np.ndarray
) -> float | None:
    from bigmodel_cli.model.afterfit_steps import threshold_step

    train = trainer.cfg.train
    t, entries = threshold_step(p1, y, train.threshold, train.threshold_metric, imbalanced(trainer))
    if "minority" in entries:
        classes = trainer.data.classes or [0, 1]
        c = classes[entries["minority"]["class_index"]]
        entries["minority"]["class"] = c.item() if hasattr(c, "item") else c
    record.update(entries)
    return t


def _conformal(
    trainer: Trainer, outputs: np.ndarray, y: np.ndarray, where: str, threshold: float = 0.5
) -> None:
    from bigmodel_cli.features.text import PREPROCESSING_DIR
    from bigmodel_cli.model.conformal import MIN_ROWS, Conformal

    if trainer.cfg.train.conformal == "none" or len(y) < MIN_ROWS:
        return
    c = Conformal.fit(trainer.cfg.task, outputs, y, where, trainer.cfg.seed, threshold)
    c.save(trainer.run_dir / PREPROCESSING_DIR)
    trainer.conformal = c.summary()
