"""``bigmodel eval``: a run's metrics on its test data (or ``--data FILE``), and its confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.errors import ModelFileError
from bigmodel_cli.model.saved import run_base_dir, run_tokenizers
from bigmodel_cli.runs import METRICS_FILE, PLOTS, atomic_write_json


@dataclass
class EvalOutcome:
    run_dir: Path | None
    data: str
    metrics: dict[str, Any]
    metrics_path: Path | None
    plot: Path | None
    task: str
    reliability: Path | None = None


def predict_arrays(model: Any, x: Any, batch_size: int = 1024) -> np.ndarray:
    """Model outputs for a split's inputs; a text model's core takes its ids."""
    if not isinstance(x, dict):
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    from bigmodel_cli.model.builders import core_of
    from bigmodel_cli.features.text import trim_ids

    core = core_of(model)
    n = len(next(iter(x.values())))
    outs = [np.asarray(core({k: trim_ids(k, v[s : s + batch_size]) for k, v in x.items()}, training=False)) for s in range(0, n, batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, int(model.outputs[0].shape[-1])), np.float32)


def onnx_arrays(infer: Any, x: Any, batch_size: int = 8192) -> np.ndarray:
    """:func:`predict_arrays` through the run's inference.onnx (onnxruntime): the
    same inputs, the same numbers within float rounding, no TensorFlow."""
    from bigmodel_cli.features.text import trim_ids

    n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    outs = []
    for s in range(0, n, batch_size):
        part = {k: trim_ids(k, v[s : s + batch_size]) for k, v in x.items()} if isinstance(x, dict) else np.asarray(x[s : s + batch_size], np.float32)
        outs.append(np.asarray(infer(part)))
    return np.concatenate(outs) if outs else np.zeros((0, 1), np.float32)


def _open(run: str | Path, unsafe: bool, engine: str):
    """(ref, cfg, model or None, infer or None, engine used): predict's choice
    (inference.onnx while it matches model.keras, so no TensorFlow import; else
    the Keras model)."""
    from bigmodel_cli.inference.engine import open_engine

    e = open_engine(run, engine, unsafe=unsafe)
    if e.name == "onnxruntime":
        return e.ref, e.cfg, None, e.infer, e.name, e.spec
    return e.ref, e.cfg, e.model, None, e.name, e.spec


def evaluate(run: str | Path, data: str | None = None, unsafe: bool = False, engine: str = "auto") -> EvalOutcome:
    from bigmodel_cli.data import tables as data_mod
    from bigmodel_cli.data.load import load_datasets
    from bigmodel_cli.model.metrics import metrics_for, plot_confusion

    if data is not None and not data.startswith("keras:"):
        from bigmodel_cli.data.remote import is_url

        if not is_url(data) and not Path(data).exists():  # before any model or library is loaded
            from bigmodel_cli.errors import DataError

            raise DataError(f"--data {data} does not exist", hint="check the path")
    ref, cfg, model, infer, used, spec_ = _open(run, unsafe, engine)
    if cfg is None:
        raise ModelFileError(f"{ref.model_path} is a bare model file; eval needs its run folder (for the task, columns and classes)", hint="pass the run folder that holds it")
    base = run_base_dir(ref.run_dir)
    feats, classes = cfg.data.features or [], cfg.data.classes
    tokenizers = run_tokenizers(ref.run_dir, cfg)
    if data is not None:
        from bigmodel_cli.data.remote import is_url

        spec = data if is_url(data) else str(Path(data).resolve())
        split = data_mod.make_split(data_mod.read_table(spec, base, "test", cfg=cfg), cfg, feats, classes, tokenizers=tokenizers)
        label = data
    elif cfg.data.test:
        split = data_mod.make_split(data_mod.read_table(cfg.data.test, base, "test", cfg=cfg), cfg, feats, classes, tokenizers=tokenizers)
        label = cfg.data.test
    else:
        ds = load_datasets(cfg, base, features=feats, classes=classes, tokenizers=tokenizers)
        if ds.validation is not None:
            split, label = ds.validation, ds.validation.source
        else:  # no test set, no hold-out: say plainly that this is the training data
            split, label = ds.train, f"{cfg.data.train} (the training data: no data.test or validation split)"
        from bigmodel_cli.data.streaming import in_memory

        split = in_memory(split)
    probs = onnx_arrays(infer, split.x) if infer is not None else predict_arrays(model, split.x)
    metrics = metrics_for(cfg.task, split.y, probs, classes, cfg.train.loss, spec_.threshold)
    metrics = {"data": label, "task": cfg.task, **metrics, "engine": used}
    if spec_.conformal is not None:  # the empirical coverage of the run's sets or intervals on these rows
        from bigmodel_cli.model.conformal import coverage_report

        metrics["conformal"] = {str(c): coverage_report(spec_.conformal, probs, split.y, c) for c in (0.8, 0.9, 0.95)}
    if cfg.task != "regression":
        from bigmodel_cli.model.metrics import single_class_warning

        warning = single_class_warning(metrics)
        if warning:
            metrics["warning"] = warning
    assert ref.run_dir is not None
    path = ref.run_dir / METRICS_FILE
    plot = reliability = None
    if cfg.task != "regression":
        reliability = _calibration(cfg.task, probs, split.y, metrics, ref.run_dir)
    atomic_write_json(path, metrics)
    if cfg.task != "regression":
        plot = plot_confusion(metrics["confusion_matrix"], metrics["classes"], ref.run_dir / PLOTS / "confusion_matrix.png")
    else:
        from bigmodel_cli.model.metrics import plot_regression

        plot = plot_regression(np.asarray(split.y, np.float64).reshape(-1), np.asarray(probs, np.float64)[:, 0], ref.run_dir / PLOTS / "regression.png", cfg.data.target)
    return EvalOutcome(ref.run_dir, label, metrics, path, plot, cfg.task, reliability)


def _calibration(task: str, probs: np.ndarray, y: np.ndarray, metrics: dict[str, Any], run_dir: Path) -> Path:
    """``ece`` (15 equal-mass bins of the predicted label's confidence) into ``metrics``;
    for a calibrated run also the ECE its probabilities had before the temperature
    (undone exactly: softmax(T log p)), and plots/reliability.png of both."""
    from bigmodel_cli.model import metrics as M
    from bigmodel_cli.runs import read_calibration

    y = np.asarray(y, np.int64)
    conf, hit = M.top_label(task, probs, y)
    metrics["ece"] = M.expected_calibration_error(conf, hit)
    after = None
    cal = read_calibration(run_dir)
    if cal and cal.get("method") != "temperature":
        cal = None
    if cal:
        t = float(cal["temperature"])
        raw = M.with_temperature(task, probs, 1.0 / t)
        metrics["ece_uncalibrated"] = M.expected_calibration_error(*M.top_label(task, raw, y))
        metrics["temperature"] = t
        after = M.calibration_bins(conf, hit)
        conf, hit = M.top_label(task, raw, y)
    before = M.calibration_bins(conf, hit)
    ece = (metrics["ece_uncalibrated"], metrics["ece"]) if cal else (metrics["ece"], None)
    return M.plot_reliability(before, after, ece, run_dir / PLOTS / "reliability.png")
