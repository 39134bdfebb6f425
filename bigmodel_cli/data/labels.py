"""The target's classes: found in the training rows (or taken from data.classes), a binary
target's positive class put last, and the labels encoded as class ids; rows without a label
counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.data.sources import (
    _key,
    line_of_row,
)
from bigmodel_cli.errors import DataError


def missing_labels(y: np.ndarray) -> np.ndarray:
    import pandas as pd

    return pd.isna(pd.Series(y)).to_numpy()


def infer_classes(
    y_raw: np.ndarray, cfg: ExperimentConfig, counts: list[int] | None = None
) -> list[Any]:
    """The class labels in output order: data.classes, else sorted. A binary task's
    positive class (the one its probability is for) goes last: data.positive_label,
    else the minority of ``y_raw`` (``counts``: how many rows each of its values has,
    when ``y_raw`` holds each value once)."""
    import pandas as pd

    if cfg.data.classes is not None:
        return positive_last(list(cfg.data.classes), cfg, None)
    series = pd.Series(
        y_raw if counts is None else np.repeat(np.asarray(y_raw, dtype=object), counts)
    )
    vals = series.dropna().unique().tolist()
    try:
        classes = sorted(vals)
    except TypeError:
        classes = sorted(vals, key=str)
    classes = [c.item() if hasattr(c, "item") else c for c in classes]
    classes = [int(c) if isinstance(c, float) and c.is_integer() else c for c in classes]
    if cfg.task == "binary" and len(classes) != 2:
        raise DataError(
            f"a binary task needs exactly 2 target values in '{cfg.data.target}', found "
            f"{len(classes)}: {classes[:10]}",
            hint="use task: classification for more classes",
        )
    if cfg.task == "classification" and len(classes) < 2:
        raise DataError(
            f"the target column '{cfg.data.target}' has only {len(classes)} distinct "
            "value(s); a classifier needs at least 2"
        )
    return positive_last(
        classes,
        cfg,
        series.dropna().map(_key).value_counts().to_dict() if cfg.task == "binary" else None,
    )


def positive_last(
    classes: list[Any], cfg: ExperimentConfig, counts: dict[Any, int] | None
) -> list[Any]:
    """A binary task's classes with the positive one last (see :func:`infer_classes`)."""
    if cfg.task != "binary" or len(classes) != 2:
        return classes
    pos = cfg.data.positive_label
    if pos is not None:
        match = [c for c in classes if _key(c) == _key(pos) or str(c) == str(pos)]
        if not match:
            raise DataError(
                f"data.positive_label '{pos}' is not a value of the target "
                f"'{cfg.data.target}': it holds {classes[0]!r} and {classes[1]!r}",
                hint=f"set data.positive_label to {classes[0]} or {classes[1]}",
            )
        return [c for c in classes if c is not match[0]] + match
    if counts and counts.get(_key(classes[1]), 0) > counts.get(_key(classes[0]), 0):
        return [classes[1], classes[0]]  # the minority is the positive class
    return classes


def encode_labels(df, y_raw: np.ndarray, classes: list[Any]) -> np.ndarray:
    """Map raw labels to class indices; names the first unknown label."""
    import pandas as pd

    index = {_key(c): i for i, c in enumerate(classes)}
    keys = pd.Series(y_raw).map(_key)
    codes = keys.map(index)
    bad = codes.isna() & keys.notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{df.attrs.get('source', 'data')}: label {y_raw[i]!r} on {line_of_row(df, i)} is "
            "not one of the model's classes",
            hint=f"classes are {classes[:20]}; {int(bad.sum())} row(s) have unknown labels",
        )
    out = codes.to_numpy(dtype=np.float64, na_value=np.nan)
    return out
