"""``bigmodel eval``: a run's metrics on its test data (or ``--data FILE``), and its confusion
matrix.
"""

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
    from bigmodel_cli.model.inputs import core_of
    from bigmodel_cli.features.text import trim_ids

    core = core_of(model)
    n = len(next(iter(x.values())))
    outs = [
        np.asarray(
            core({k: trim_ids(k, v[s : s + batch_size]) for k, v in x.items()}, training=False)
        )
        for s in range(0, n, batch_size)
    ]
    return (
        np.concatenate(outs) if outs else np.zeros((0, int(model.outputs[0].shape[-1])), np.float32)
    )


def onnx_arrays(infer: Any, x: Any, batch_size: int = 8192) -> np.ndarray:
    """:func:`predict_arrays` through the run's inference.onnx (onnxruntime): the
    same inputs, the same numbers within float rounding, no TensorFlow."""
    from bigmodel_cli.features.text import trim_ids

    n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    outs = []
    for s in range(0, n, batch_size):
        part = (
            {k: trim_ids(k, v[s : s + batch_size]) for k, v in x.items()}
            if isinstance(x, dict)
            else np.asarray(x[s : s + batch_size], np.float32)
        )
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


READABLE = (
    "csv",
    "tsv",
    "parquet",
    "jsonl",
)  # what predict's reader reads: eval reads them the same way


def evaluate(
    run: str | Path,
    data: str | None = None,
    unsafe: bool = False,
    engine: str = "auto",
    on_bad_value: str = "error",
    drawer: Any = None,
) -> EvalOutcome:
    """``predict`` plus metrics: a table file (``--data``, else ``data.test``) goes through
    predict's reader, engine and checks, so what predict refuses eval refuses too; else
    the run's validation split. ``--data`` writes ``metrics-<name>.json`` beside the run's
    own ``metrics.json``, never over it. ``drawer``: a
    :class:`~bigmodel_cli.model.drawing.Drawer` already started (the CLI starts it first
    thing, and it is stopped here however eval ends), else one is started here."""
    from bigmodel_cli.errors import ConfigError, DataError
    from bigmodel_cli.model.drawing import Drawer

    try:
        if on_bad_value not in ("error", "missing"):
            raise ConfigError(
                f"unknown --on-bad-value '{on_bad_value}'", hint="use error or missing"
            )
        if data is not None and not data.startswith("keras:"):
            from bigmodel_cli.data.remote import is_url

            if not is_url(data) and not any(ch in data for ch in "*?[") and not Path(data).exists():
                # before any model or library is loaded
                raise DataError(f"--data {data} does not exist", hint="check the path")
        drawer = drawer if drawer is not None else Drawer.start()  # matplotlib, in a child
        return _evaluate(run, data, unsafe, engine, on_bad_value, drawer)
    finally:
        if drawer is not None:
            drawer.close()


def _evaluate(
    run: str | Path, data: str | None, unsafe: bool, engine: str, on_bad_value: str, drawer: Any
) -> EvalOutcome:
    ref, cfg, model, infer, used, spec_ = _open(run, unsafe, engine)
    if cfg is None:
        raise ModelFileError(
            f"{ref.model_path} is a bare model file; eval needs its run folder (for the "
            "task, columns and classes)",
            hint="pass the run folder that holds it",
        )
    assert ref.run_dir is not None
    files = _table_files(
        data if data is not None else cfg.data.test, data is None, run_base_dir(ref.run_dir), cfg
    )
    if files is not None:
        probs, y, label, notes = _score_files(
            files,
            spec_,
            infer or _keras_infer(model, spec_),
            cfg,
            on_bad_value,
            data or cfg.data.test,
        )
    else:
        probs, y, label = _score_split(ref, cfg, model, infer, data)
        notes = []
    metrics = _metrics(cfg, probs, y, spec_, label, used)
    if notes:
        metrics["notes"] = notes
    name = None if data is None else _data_name(data)
    path = ref.run_dir / (METRICS_FILE if name is None else f"metrics-{name}.json")
    plots = ref.run_dir / PLOTS if name is None else ref.run_dir / PLOTS / f"eval-{name}"
    reliability = (
        _calibration(cfg.task, probs, y, metrics, ref.run_dir, plots, drawer)
        if cfg.task != "regression"
        else None
    )
    atomic_write_json(path, metrics)
    plot = _result_plot(cfg, metrics, probs, y, plots, drawer)
    drawer.finish()
    return EvalOutcome(ref.run_dir, label, metrics, path, plot, cfg.task, reliability)


def _data_name(data: str) -> str:
    """A file name part for the data scored: its name without folders or suffixes."""
    import re

    base = data.rstrip("/").rsplit("/", 1)[-1] or "data"
    for suffix in (
        ".gz",
        ".bz2",
        ".zst",
        ".xz",
        ".csv",
        ".tsv",
        ".parquet",
        ".jsonl",
        ".json",
        ".npz",
        ".txt",
    ):
        if base.lower().endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "data"


def _table_files(spec: Any, from_config: bool, base: Path, cfg: Any) -> list[str] | None:
    """The local table files predict's reader would read for ``spec`` (URLs fetched into
    the cache, globs expanded), or None where eval scores another way: no file, a
    ``keras:`` set, an image run, NumPy files or a list of shards."""
    if not isinstance(spec, str) or spec.startswith("keras:") or cfg.data.image_shape:
        return None
    from bigmodel_cli.commands.predict import expand_inputs
    from bigmodel_cli.data import remote
    from bigmodel_cli.data.sources import table_format

    if from_config and not remote.is_url(spec) and not Path(spec).is_absolute():
        spec = str(base / spec)
    if not remote.is_url(spec) and Path(spec).is_dir():
        return None
    files = expand_inputs([spec])
    return files if files and all(table_format(f)[0] in READABLE for f in files) else None


def _keras_infer(model: Any, spec: Any) -> Any:
    from bigmodel_cli.inference.predict import make_infer

    return make_infer(model, len(spec.features))


def _score_files(
    files: list[str], spec: Any, infer: Any, cfg: Any, on_bad_value: str, label: str
) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
    """Outputs and targets of every row, read as predict reads them."""
    import dataclasses

    from bigmodel_cli.errors import DataError
    from bigmodel_cli.features.target import LabelError, Target
    from bigmodel_cli.inference.predict import iter_outputs, output_width
    from bigmodel_cli.inference.reader import open_blocks

    asked = dataclasses.replace(
        spec, target=cfg.data.target, on_bad_value=on_bad_value, id_columns=[], keep_columns=[]
    )
    target = Target(cfg.task, cfg.data.classes, cfg.data.target)
    outs, ys, rows, skipped, notes = [], [], 0, 0, []
    for f in files:
        spec, blocks = open_blocks(
            f, asked
        )  # predict's reader and checks: what predict refuses, eval refuses
        notes += spec.notes
        first = 0  # this file's rows before the block
        for batch, probs in iter_outputs(spec, infer, blocks, 8192, f):
            cells = batch.column(cfg.data.target).to_pylist()
            try:
                y, missing = (
                    target.values(cells) if cfg.task == "regression" else target.codes(cells)
                )
            except LabelError as e:
                at = (
                    f"line {spec.line_of(first + e.row)}"
                    if spec.line_of is not None
                    else f"row {first + e.row + 1}"
                )
                what = (
                    "not a number" if cfg.task == "regression" else "not one of the model's classes"
                )
                raise DataError(
                    f"{f}: {at}, target '{cfg.data.target}' is {what}: {e.text[:40]!r}",
                    hint=f"the classes are {(cfg.data.classes or [])[:20]}"
                    if cfg.task != "regression"
                    else "fix the value; an empty cell is a missing target (that row is not "
                    "scored)",
                ) from None
            outs.append(probs[~missing])
            ys.append(y[~missing])
            rows += len(cells)
            first += len(cells)
            skipped += int(missing.sum())
    y = np.concatenate(ys) if ys else np.zeros(0)
    if not len(y):
        raise DataError(
            f"{label}: no row to score"
            + (f" (all {rows:,} rows have no target)" if rows else " (the file has no rows)"),
            hint=f"eval needs rows with the target '{cfg.data.target}'",
        )
    notes += [f"{skipped:,} row(s) with no target were not scored"] if skipped else []
    return np.concatenate(outs) if outs else np.zeros((0, output_width(asked))), y, label, notes


def _score_split(
    ref: Any, cfg: Any, model: Any, infer: Any, data: str | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """The outputs on a split read as training reads it: the validation split (or a
    ``keras:`` set, NumPy files, image folders, shard lists)."""
    from bigmodel_cli.data import tables as data_mod
    from bigmodel_cli.data.load import load_datasets
    from bigmodel_cli.data.streaming import in_memory

    base = run_base_dir(ref.run_dir)
    feats, classes = cfg.data.features or [], cfg.data.classes
    tokenizers = run_tokenizers(ref.run_dir, cfg)
    source = data if data is not None else cfg.data.test
    if source is not None:
        from bigmodel_cli.data.remote import is_url

        spec = (
            source
            if (data is None or is_url(data) or data.startswith("keras:"))
            else str(Path(data).resolve())
        )
        split = data_mod.make_split(
            data_mod.read_table(spec, base, "test", cfg=cfg),
            cfg,
            feats,
            classes,
            tokenizers=tokenizers,
        )
        label = str(source)
    else:
        ds = load_datasets(cfg, base, features=feats, classes=classes, tokenizers=tokenizers)
        if ds.validation is not None:
            split, label = ds.validation, ds.validation.source
        else:  # no test set, no hold-out: say plainly that this is the training data
            split, label = (
                ds.train,
                f"{cfg.data.train} (the training data: no data.test or validation split)",
            )
        split = in_memory(split)
    probs = onnx_arrays(infer, split.x) if infer is not None else predict_arrays(model, split.x)
    return probs, split.y, label


def _metrics(
    cfg: Any, probs: np.ndarray, y: np.ndarray, spec: Any, label: str, used: str
) -> dict[str, Any]:
    from bigmodel_cli.model.metrics import metrics_for, single_class_warning

    metrics = {
        "data": label,
        "task": cfg.task,
        **metrics_for(cfg.task, y, probs, cfg.data.classes, cfg.train.loss, spec.threshold),
        "engine": used,
    }
    if (
        spec.conformal is not None
    ):  # the empirical coverage of the sets or intervals predict would answer
        from bigmodel_cli.model.decide import coverage_report

        metrics["conformal"] = {
            str(c): coverage_report(spec.conformal, probs, y, c, threshold=spec.threshold)
            for c in (0.8, 0.9, 0.95)
        }
    if cfg.task != "regression":
        warning = single_class_warning(metrics)
        if warning:
            metrics["warning"] = warning
    return metrics


def _result_plot(
    cfg: Any, metrics: dict[str, Any], probs: np.ndarray, y: np.ndarray, plots: Path, drawer: Any
) -> Path | None:
    if cfg.task != "regression":
        return drawer.draw(
            "plot_confusion",
            metrics["confusion_matrix"],
            metrics["classes"],
            plots / "confusion_matrix.png",
        )
    return drawer.draw(
        "plot_regression",
        np.asarray(y, np.float64).reshape(-1),
        np.asarray(probs, np.float64)[:, 0],
        plots / "regression.png",
        cfg.data.target,
    )


def _calibration(
    task: str,
    probs: np.ndarray,
    y: np.ndarray,
    metrics: dict[str, Any],
    run_dir: Path,
    plots: Path,
    drawer: Any,
) -> Path:
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
    return drawer.draw("plot_reliability", before, after, ece, plots / "reliability.png")
