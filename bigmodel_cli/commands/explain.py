"""``bigmodel explain``: permutation importance of each raw input column on labelled
rows, per-row attributions, and ``plots/importance.png``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bigmodel_cli.errors import ConfigError, ModelFileError


def explain(run: str | Path, data: str, rows: int = 0, repeats: int = 5, max_rows: int = 5000, engine: str = "auto", unsafe: bool = False, metric: str | None = None):
    """Importance of every raw column of ``data`` (labelled rows, as for eval) for the
    run's monitored metric (or ``metric``); ``rows``: also the first N rows' attributions."""
    from bigmodel_cli.data.remote import fetch, is_url
    from bigmodel_cli.features import registry
    from bigmodel_cli.inference import explain as X
    from bigmodel_cli.inference.engine import open_engine
    from bigmodel_cli.inference.predict import model_inputs
    from bigmodel_cli.model import metrics as M
    from bigmodel_cli.runs import PLOTS, atomic_write_json

    if repeats < 1 or max_rows < 10 or rows < 0:
        raise ConfigError("--repeats needs at least 1, --max-rows at least 10, and --rows 0 or more")
    if not is_url(data) and not Path(data).exists():
        from bigmodel_cli.errors import DataError

        raise DataError(f"--data {data} does not exist", hint="pass labelled rows: a file with the run's feature columns and its target")
    t0 = time.perf_counter()
    e = open_engine(run, engine, unsafe=unsafe, need_run="explain")
    cfg, spec = e.cfg, e.spec
    if cfg.data.image_shape:
        raise ConfigError("explain measures columns of a table, and this run reads images (data.image_shape)", hint="per-pixel saliency for image runs is not built yet")
    path = str(fetch(data)) if is_url(data) else data
    table, y_raw, notes = X.read_rows(path, spec, cfg.data.target, max_rows, cfg.seed)
    y = _labels(y_raw, cfg)
    name, higher = _metric(cfg, metric)
    batch = e.batch_size or 4096

    def score(out: np.ndarray) -> float:
        return float(M.metrics_for(cfg.task, y, out, cfg.data.classes, cfg.train.loss, spec.threshold)[name])

    x = model_inputs(table.combine_chunks().to_batches()[0], spec, 0, path)
    base, importance, std = X.permutation_importance(e.infer, spec, x, score, higher, repeats, cfg.seed, batch)
    per_row = []
    if rows:
        texts = set(registry.columns_of(cfg.data.columns, spec.features, registry.TEXT))
        per_row = X.row_attributions(e.infer, spec, table, rows, batch, lambda b: model_inputs(b, spec, 0, path), texts)
    out = X.Explanation(name, higher, base, importance, std, repeats, table.num_rows, time.perf_counter() - t0, e.name, per_row, notes)
    run_dir = e.ref.run_dir
    if run_dir is None:
        raise ModelFileError("explain needs the run folder")
    atomic_write_json(run_dir / "explanation.json", out.to_json())
    out.plot = M.plot_importance(importance, std, name, higher, run_dir / PLOTS / "importance.png")
    return out


def _labels(y_raw: list, cfg) -> np.ndarray:
    import pandas as pd

    from bigmodel_cli.data.tables import encode_labels

    if cfg.task == "regression":
        try:
            return np.asarray([float(v) for v in y_raw], np.float64)
        except (TypeError, ValueError):
            from bigmodel_cli.errors import DataError

            raise DataError(f"the target '{cfg.data.target}' holds values that are not numbers") from None
    df = pd.DataFrame({cfg.data.target: y_raw})
    df.attrs["source"] = "--data"
    return encode_labels(df, np.asarray(y_raw, dtype=object), cfg.data.classes or []).astype(np.int64)


def _metric(cfg, metric: str | None) -> tuple[str, bool]:
    """The metric to measure (the run's monitored one, without val_) and whether higher is better."""
    from bigmodel_cli.model.metrics import higher_is_better

    valid = {"regression": ("loss", "mse", "mae", "rmse", "r2"), "binary": ("loss", "accuracy", "f1", "balanced_accuracy", "roc_auc", "pr_auc", "precision", "recall"), "classification": ("loss", "accuracy", "macro_f1", "balanced_accuracy")}[cfg.task]
    if metric is None:
        es = cfg.train.early_stopping
        metric = (es.monitor if es else "val_loss").removeprefix("val_")
        if metric not in valid:
            metric = "loss"
    if metric not in valid:
        raise ConfigError(f"--metric {metric} is not a {cfg.task} metric", hint="use one of: " + ", ".join(valid))
    return metric, higher_is_better(metric)
