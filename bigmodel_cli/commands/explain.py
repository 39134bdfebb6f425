"""``bigmodel explain``: permutation importance of each raw input column on labelled
rows, per-row attributions (saliency maps for images), and ``plots/importance.png``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.errors import ConfigError, DataError, ModelFileError


def explain(
    run: str | Path,
    data: str,
    rows: int = 0,
    repeats: int = 5,
    max_rows: int = 5000,
    engine: str = "auto",
    unsafe: bool = False,
    metric: str | None = None,
):
    """Importance of every raw column of ``data`` (labelled rows, as for eval; for an
    image run, a pixel table or a folder of class subfolders) for the run's monitored
    metric (or ``metric``); ``rows``: also the first N rows' attributions."""
    from bigmodel_cli.data.remote import fetch, is_url
    from bigmodel_cli.inference import explain as X
    from bigmodel_cli.inference.engine import open_engine
    from bigmodel_cli.model import metrics as M
    from bigmodel_cli.runs import PLOTS, atomic_write_json

    if repeats < 1 or max_rows < 10 or rows < 0:
        raise ConfigError(
            "--repeats needs at least 1, --max-rows at least 10, and --rows 0 or more"
        )
    if not is_url(data) and not Path(data).exists():
        raise DataError(
            f"--data {data} does not exist",
            hint="pass labelled rows: a file with the run's feature columns and its target",
        )
    t0 = time.perf_counter()
    e = open_engine(run, engine, unsafe=unsafe, need_run="explain")
    cfg, spec = e.cfg, e.spec
    run_dir = e.ref.run_dir
    if run_dir is None:
        raise ModelFileError("explain needs the run folder")
    path = str(fetch(data)) if is_url(data) else data
    name, higher = _metric(cfg, metric)
    shape = cfg.data.image_shape
    if shape:
        x, y, table, notes = _image_rows(path, spec, cfg, max_rows)
    else:
        table, y_raw, notes, x = X.read_rows(path, spec, cfg.data.target, max_rows, cfg.seed)
        y = _labels(y_raw, cfg)
    batch = e.batch_size or 4096

    def score(out: np.ndarray) -> float:
        return float(
            M.metrics_for(cfg.task, y, out, cfg.data.classes, cfg.train.loss, spec.threshold)[name]
        )

    base, importance, std = X.permutation_importance(
        e.infer, spec, x, score, higher, repeats, cfg.seed, batch, shape
    )
    per_row = (
        (
            _image_rows_explained(e, x, rows, run_dir)
            if shape
            else _rows_explained(e, table, rows, path, run_dir, notes)
        )
        if rows
        else []
    )
    out = X.Explanation(
        name,
        higher,
        base,
        importance,
        std,
        repeats,
        len(y),
        time.perf_counter() - t0,
        e.name,
        per_row,
        notes,
    )
    atomic_write_json(run_dir / "explanation.json", out.to_json())
    if shape:
        heat = _region_heat(importance, shape)
        out.plot = M.plot_saliency(
            x.mean(axis=0).reshape(_hwc(shape)),
            heat,
            run_dir / PLOTS / "importance.png",
            f"permutation importance of 4x4 regions: {name} "
            f"{'lost' if higher else 'gained'} when shuffled",
            ("the mean image", "importance"),
        )
    else:
        out.plot = M.plot_importance(
            importance, std, name, higher, run_dir / PLOTS / "importance.png"
        )
    return out


def _rows_explained(
    e: Any, table: Any, rows: int, path: str, run_dir: Path, notes: list[str]
) -> list[dict[str, Any]]:
    from bigmodel_cli.features import registry
    from bigmodel_cli.inference import explain as X
    from bigmodel_cli.inference.predict import model_inputs

    spec = e.spec
    texts = set(registry.columns_of(e.cfg.data.columns, spec.features, registry.TEXT))
    base, source = X.baselines(spec, e.cfg, run_dir, table)
    notes.append(f"per-row attributions: each column set to its baseline from {source}")
    return X.row_attributions(
        e.infer,
        spec,
        table,
        rows,
        e.batch_size or 4096,
        lambda b: model_inputs(b, spec, 0, path),
        texts,
        base,
    )


def _image_rows(
    path: str, spec: Any, cfg: Any, max_rows: int
) -> tuple[np.ndarray, np.ndarray, Any, list[str]]:
    """(flat pixels, labels, None, notes) of an image run's --data: a pixel table with
    the target, or a folder with one subfolder of images per class."""
    from bigmodel_cli.data.images import ImageFolder
    from bigmodel_cli.features.image import decode_many

    folder = ImageFolder.find(Path(path)) if Path(path).is_dir() else None
    notes: list[str] = []
    if folder is not None:
        files, labels = folder.files, folder.labels
        if len(files) > max_rows:
            keep = sorted(
                np.random.default_rng(cfg.seed).choice(len(files), max_rows, replace=False).tolist()
            )
            files, labels = [files[i] for i in keep], [labels[i] for i in keep]
            notes.append(
                f"a sample of {max_rows:,} of the {len(folder.files):,} images was used "
                "(--max-rows)"
            )
        return decode_many(files, list(cfg.data.image_shape)), _labels(labels, cfg), None, notes
    from bigmodel_cli.inference import explain as X

    table, y_raw, notes, x = X.read_rows(path, spec, cfg.data.target, max_rows, cfg.seed)
    return x, _labels(y_raw, cfg), None, notes


def _image_rows_explained(e: Any, x: np.ndarray, rows: int, run_dir: Path) -> list[dict[str, Any]]:
    """Each of the first ``rows`` images' saliency map, drawn to plots/saliency/row-N.png."""
    from bigmodel_cli.inference import explain as X
    from bigmodel_cli.model import metrics as M
    from bigmodel_cli.runs import PLOTS

    shape = list(e.cfg.data.image_shape)
    out = []
    for doc in X.image_saliency(
        e.infer, x[:rows], shape, e.cfg.data.classes, e.cfg.task, e.spec.threshold
    ):
        image, heat = doc.pop("image"), np.asarray(doc.pop("saliency"))
        what = (
            f"class {doc['class']}, p={doc['output']:.3f}"
            if "class" in doc
            else f"value {doc['output']:.4g}"
        )
        png = M.plot_saliency(
            image,
            heat,
            run_dir / PLOTS / "saliency" / f"row-{doc['row']}.png",
            f"row {doc['row']}: {what}; drop when a {doc['patch']}px patch is blanked",
        )
        r, c = np.unravel_index(int(heat.argmax()), heat.shape)
        out.append({**doc, "saliency_png": str(png), "peak": [int(r), int(c)]})
    return out


def _hwc(shape: list[int]) -> tuple[int, int, int]:
    return int(shape[0]), int(shape[1]), int(shape[2]) if len(shape) == 3 else 1


def _region_heat(importance: dict[str, float], shape: list[int]) -> np.ndarray:
    """The regions' importance painted on the image's pixels."""
    from bigmodel_cli.inference.explain import regions

    h, w, ch = _hwc(shape)
    heat = np.zeros(h * w * ch)
    for name, cols in regions(shape).items():
        heat[cols] = importance.get(name, 0.0)
    return heat.reshape(h, w, ch)[:, :, 0]


def _labels(y_raw: list, cfg) -> np.ndarray:
    """The target's raw cells as eval reads them (features/target.py)."""
    from bigmodel_cli.features.target import LabelError, Target

    t = Target(cfg.task, cfg.data.classes, cfg.data.target)
    try:
        return (t.values(y_raw) if cfg.task == "regression" else t.codes(y_raw))[0]
    except LabelError as e:
        what = (
            "not a number"
            if cfg.task == "regression"
            else f"not one of the model's classes ({(cfg.data.classes or [])[:20]})"
        )
        raise DataError(
            f"--data: target '{cfg.data.target}' value {e.text[:40]!r} (row {e.row + 1} of "
            f"those explained) is {what}"
        ) from None


def _metric(cfg, metric: str | None) -> tuple[str, bool]:
    """The metric to measure (the run's monitored one, without
    val_) and whether higher is better."""
    from bigmodel_cli.model.metrics import higher_is_better

    valid = {
        "regression": ("loss", "mse", "mae", "rmse", "r2"),
        "binary": (
            "loss",
            "accuracy",
            "f1",
            "balanced_accuracy",
            "roc_auc",
            "pr_auc",
            "precision",
            "recall",
        ),
        "classification": ("loss", "accuracy", "macro_f1", "balanced_accuracy"),
    }[cfg.task]
    if metric is None:
        es = cfg.train.early_stopping
        metric = (es.monitor if es else "val_loss").removeprefix("val_")
        if metric not in valid:
            metric = "loss"
    if metric not in valid:
        raise ConfigError(
            f"--metric {metric} is not a {cfg.task} metric", hint="use one of: " + ", ".join(valid)
        )
    return metric, higher_is_better(metric)
