"""``load_datasets``: train (+ validation, + test) read and checked before training starts,
in memory (:mod:`.tables`) or streamed (:mod:`.streaming`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.errors import DataError
from bigmodel_cli.features import registry
from bigmodel_cli.data.labels import infer_classes
from bigmodel_cli.data.sources import Datasets
from bigmodel_cli.data.tables import (
    check_columns,
    check_shape,
    feature_columns,
    fit_tokenizers,
    infer_column_types,
    make_split,
    read_table,
    split_indices,
)


def load_datasets(
    cfg: ExperimentConfig,
    base_dir: Path,
    with_test: bool = False,
    classes: list[Any] | None = None,
    features: list[str] | None = None,
    tokenizers: dict[str, Any] | None = None,
    progress: Any = None,
) -> Datasets:
    """Read and check train (+ validation, + test) before any training starts.

    ``tokenizers`` (a resumed or evaluated run's) are used as they are; else each
    text column's vocabulary is built from the training rows. Streamed data
    (``data.stream``, :mod:`.streaming`) is checked in its one conversion pass,
    whose progress goes to ``progress(bytes_done, bytes_total, rows)``."""
    from bigmodel_cli.data import streaming

    mode = streaming.stream_mode(cfg, base_dir)
    if mode is not None:
        return streaming.load(cfg, base_dir, mode, with_test, classes, tokenizers, progress)
    d = cfg.data
    df = read_table(d.train, base_dir, "train", cfg=cfg)
    feats = features or feature_columns(df, cfg)
    if not feats:
        raise DataError(
            f"{df.attrs['source']} has no feature columns besides the target",
            hint="list them in data.features",
        )
    check_columns(df, feats, "feature")
    check_columns(df, [d.target], "target")
    columns = infer_column_types(df, feats, d.columns)
    encoded_cols = registry.encoded_columns(columns, feats)
    if encoded_cols and d.image_shape is not None:
        raise DataError(
            f"data.image_shape reshapes numeric columns, but {', '.join(encoded_cols)} "
            "hold text, categories or dates",
            hint="drop data.image_shape, or set data.columns to number for them",
        )
    check_shape(feats, cfg, df.attrs["source"])
    if cfg.task != "regression" and classes is None:
        classes = infer_classes(df[d.target].to_numpy(), cfg)
    held_out = None
    if isinstance(d.validation, float) and d.validation:
        tr, va = split_indices(len(df), float(d.validation), cfg.seed)
        if len(va) == 0 or len(tr) == 0:
            raise DataError(
                f"data.validation {d.validation} of {len(df)} rows leaves {len(tr)} to "
                f"train and {len(va)} to validate",
                hint="use a larger dataset or a different fraction",
            )
        held_out = (tr, va)
    if tokenizers is None:
        tokenizers = fit_tokenizers(
            df, held_out[0] if held_out else None, encoded_cols, cfg, base_dir, columns
        )

    def split(frame):
        return make_split(frame, cfg, feats, classes, columns=columns, tokenizers=tokenizers)

    validation = None
    if isinstance(d.validation, (str, list)):
        validation = split(read_table(d.validation, base_dir, "validation", cfg=cfg))
        train = split(df)
    elif held_out is not None:
        tr, va = held_out
        train = split(df.iloc[tr].copy())
        validation = split(df.iloc[va].copy())
        validation.source = f"{train.source} (held out {d.validation:.0%})"
        if len(train) == 0 or len(validation) == 0:
            raise DataError(
                f"data.validation {d.validation} leaves {len(train)} rows to train and "
                f"{len(validation)} to validate after removing rows with missing values"
            )
    else:
        train = split(df)
    test = None
    if with_test and d.test:
        test = split(read_table(d.test, base_dir, "test", cfg=cfg))
    dropped = [d for s in (train, validation, test) if s is not None for d in s.dropped]
    return Datasets(train, validation, test, feats, classes, columns, tokenizers, dropped)
