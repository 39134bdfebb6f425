"""``data.stream``: whether the training data is read as training goes, and the splits when it is.

- ``true``: tables go through the block cache (:mod:`.blocks`), image folders
  are decoded as they are read (:class:`.images.StreamedImages`);
- ``auto`` (the default): image folders always stream; tables stream when
  they would take more than a quarter of RAM in memory
  (:func:`.block_reader.estimated_bytes` against :func:`.block_reader.memory_budget`);
- ``false``: everything is read into memory, as before.

A streamed :class:`~.data.Datasets` holds row sources instead of in-memory
splits for train and validation; the test split is always in memory.

Example::

    if stream_mode(cfg, base_dir):
        datasets = load(cfg, base_dir)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.features import registry
from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.errors import ConfigError, DataError


def stream_mode(cfg: ExperimentConfig, base_dir: Path) -> str | None:
    """ "table", "images" or None (in memory) for this experiment's training data."""
    from bigmodel_cli.data import block_cache, block_reader
    from bigmodel_cli.data.images import folder_of

    want = cfg.data.stream
    spec = cfg.data.train
    if want is False:
        return None
    if folder_of(spec, base_dir) is not None:
        return "images"
    if isinstance(spec, str) and spec.startswith("keras:"):
        if want is True:
            raise ConfigError(
                f"data.train {spec} cannot be streamed: it is downloaded into memory",
                hint="set data.stream: auto or false",
            )
        return None
    files = block_cache.source_files(cfg, base_dir, "train")
    npz = [p for p in files if p.name.lower().endswith(".npz")]
    if npz:
        if want is True:
            raise ConfigError(
                f"data.train {npz[0]} cannot be streamed (.npz)",
                hint="convert it to csv or parquet shards, or set data.stream: false",
            )
        return None
    if want is True:
        return "table"
    missing = [p for p in files if not p.exists()]
    if missing:
        return None  # the in-memory reader names the missing file
    return "table" if block_reader.estimated_bytes(files) > block_reader.memory_budget() else None


def load(
    cfg: ExperimentConfig,
    base_dir: Path,
    mode: str,
    with_test: bool = False,
    classes: list[Any] | None = None,
    tokenizers: dict[str, Any] | None = None,
    progress: Any = None,
):
    return (_images if mode == "images" else _table)(
        cfg, base_dir, with_test, classes, tokenizers, progress
    )


def _test_split(
    cfg: ExperimentConfig,
    base_dir: Path,
    features: list[str],
    classes: list[Any] | None,
    columns: dict[str, str],
    tokenizers: dict[str, Any],
):
    from bigmodel_cli.data.tables import make_split, read_table

    if not cfg.data.test:
        return None
    return make_split(
        read_table(cfg.data.test, base_dir, "test", cfg=cfg),
        cfg,
        features,
        classes,
        columns=columns,
        tokenizers=tokenizers,
    )


def _table(
    cfg: ExperimentConfig,
    base_dir: Path,
    with_test: bool,
    classes: list[Any] | None,
    tokenizers: dict[str, Any] | None,
    progress: Any,
):
    from bigmodel_cli.data import block_cache, block_reader
    from bigmodel_cli.data.sources import Datasets
    from bigmodel_cli.data.labels import infer_classes

    prepared = block_cache.prepare(cfg, base_dir, progress)
    schema = prepared.schema
    if cfg.task != "regression" and classes is None:
        classes = infer_classes(
            np.asarray(prepared.label_values(), dtype=object), cfg, prepared.label_counts()
        )
    encoders = tokenizers if tokenizers is not None else prepared.encoders(cfg.data.max_categories)
    remaps = prepared.remaps(classes, encoders)
    source = str(cfg.data.train)
    train = prepared.split("train", remaps, source, cfg.data.shuffle_blocks)
    validation = prepared.split(
        "validation",
        remaps,
        f"{source} (held out {cfg.data.validation:.0%})"
        if isinstance(cfg.data.validation, float)
        else str(cfg.data.validation),
        cfg.data.shuffle_blocks,
    )
    test = (
        _test_split(cfg, base_dir, schema.features, classes, schema.columns, encoders)
        if with_test
        else None
    )
    ds = Datasets(
        train,
        validation,
        test,
        schema.features,
        classes,
        schema.columns,
        encoders,
        [tuple(d) for d in prepared.m["dropped"]],
    )
    if classes is not None:
        ds.label_counts = dict(zip(map(str, prepared.label_values()), prepared.label_counts()))
    ds.stream = block_reader.describe(prepared)
    return ds


def _images(
    cfg: ExperimentConfig,
    base_dir: Path,
    with_test: bool,
    classes: list[Any] | None,
    tokenizers: dict[str, Any] | None,
    progress: Any,
):
    from bigmodel_cli.data.sources import Datasets
    from bigmodel_cli.data.labels import infer_classes
    from bigmodel_cli.data.tables import check_shape, split_indices
    from bigmodel_cli.data.images import StreamedImages, folder_of, need_shape, pixel_names

    d = cfg.data
    shape = need_shape(Path(str(d.train)), d.image_shape, "train")
    features = pixel_names(shape)
    check_shape(features, cfg, str(d.train))

    def folder_split(spec: Any, role: str) -> StreamedImages:
        folder = folder_of(spec, base_dir)
        if folder is None:
            raise DataError(
                f"data.{role}: {spec} is not an image folder (one subfolder per class of "
                "PNG/JPEG files)",
                hint="with an image folder for data.train, the other splits are image folders too",
            )
        from bigmodel_cli.features.image import check_readable

        check_readable(folder.files)
        index = {str(c): i for i, c in enumerate(classes or [])}
        unknown = sorted({lab for lab in folder.labels if lab not in index})
        if unknown:
            raise DataError(
                f"data.{role}: the folder {folder.root / unknown[0]} is not one of the "
                "model's classes",
                hint=f"classes are {list(classes or [])[:20]}",
            )
        return StreamedImages(
            folder.files, np.asarray([index[lab] for lab in folder.labels]), shape, str(folder.root)
        )

    if classes is None:
        folder = folder_of(d.train, base_dir)
        assert folder is not None
        classes = infer_classes(np.asarray(folder.labels, dtype=object), cfg)
    train = folder_split(d.train, "train")
    validation = None
    if isinstance(d.validation, float) and d.validation:
        tr, va = split_indices(len(train), float(d.validation), cfg.seed)
        if len(va) == 0 or len(tr) == 0:
            raise DataError(
                f"data.validation {d.validation} of {len(train)} images leaves {len(tr)} "
                f"to train and {len(va)} to validate",
                hint="use more images or a different fraction",
            )
        train, validation = (
            train.subset(tr),
            train.subset(va, f"{train.source} (held out {d.validation:.0%})"),
        )
    elif isinstance(d.validation, (str, list)):
        validation = folder_split(d.validation, "validation")
    columns = {c: registry.NUMBER.name for c in features}
    test = _test_split(cfg, base_dir, features, classes, columns, {}) if with_test else None
    ds = Datasets(train, validation, test, features, classes, columns, {}, [])
    ds.stream = {
        "images": len(train) + (len(validation) if validation is not None else 0),
        "folder": str(d.train),
    }
    return ds


def in_memory(split: Any, limit_bytes: int | None = None) -> Any:
    """A streamed split read whole into an in-memory Split (``bigmodel eval``), if it fits."""
    from bigmodel_cli.data import block_reader
    from bigmodel_cli.data.sources import Split

    if not getattr(split, "streamed", False):
        return split
    limit = limit_bytes or block_reader.memory_budget()
    xs, ys = [], []
    held = 0
    for x, y in split.batches(4096):
        xs.append(x)
        ys.append(y)
        held += sum(a.nbytes for a in (x.values() if isinstance(x, dict) else [x]))
        if held > limit:
            raise ConfigError(
                f"{split.source} is too big to evaluate in memory",
                hint="set data.test to a test file, or pass --data FILE",
            )
    if isinstance(xs[0], dict):
        x = {k: np.concatenate([b[k] for b in xs]) for k in xs[0]}
    else:
        x = np.concatenate(xs)
    return Split(x, np.concatenate(ys), split.source)


def parity_sample(cfg: ExperimentConfig, base_dir: Path, datasets: Any, n: int = 256) -> Any:
    """Up to ``n`` training rows as an in-memory Split, raw category strings
    included (the inference copy's parity check feeds model.keras with them)."""
    from bigmodel_cli.data import block_cache, block_reader
    from bigmodel_cli.data.tables import make_split, read_table

    if not isinstance(datasets.train, block_reader.StreamedTable):
        return datasets.train.take(np.arange(min(n, len(datasets.train))))
    first = block_cache.source_files(cfg, base_dir, "train")[0]
    df = read_table(str(first), base_dir, "train", nrows=n)
    split = make_split(
        df,
        cfg,
        datasets.features,
        datasets.classes,
        columns=datasets.columns,
        tokenizers=datasets.tokenizers,
    )
    return split
