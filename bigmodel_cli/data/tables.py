"""Datasets: files and ``keras:`` sets -> checked float32 arrays.

Everything that can be wrong with data is found here, before training
starts, and reported as a :class:`DataError` naming the file, the column
and the first bad line. Preprocessing that the model needs at prediction
time (scale, reshape, normalisation) lives in the model itself, so the
arrays here are the raw feature columns.

Example::

    ds = load_datasets(cfg, base_dir)
    ds.train.x.shape   # (rows, features), float32
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.errors import DataError
from bigmodel_cli.features import registry
from bigmodel_cli.features.registry import CATEGORY, DATE, NUMBER, TEXT
from bigmodel_cli.data.sources import (
    KERAS_SETS,
    Split,
    file_delimiter,
    read_error,
    resolve_path,
    shard_paths,
    table_format,
)
from bigmodel_cli.data.labels import encode_labels, missing_labels
from bigmodel_cli.data.reader import read_frame
from bigmodel_cli.data.sources import line_of_row


def read_table(
    spec: Any,
    base_dir: Path,
    role: str = "train",
    nrows: int | None = None,
    cfg: ExperimentConfig | None = None,
):
    """Read a table into a DataFrame (training-sized data); ``nrows`` reads only the first rows.

    ``spec`` may name shards (:func:`shard_paths`): they are read in order and
    joined; every shard must have the same columns. An image folder (one
    subfolder per class, ``cfg`` giving the image shape) reads as pixel columns."""
    import pandas as pd

    from bigmodel_cli.data.images import folder_frame, folder_of

    folder = folder_of(spec, base_dir)
    if folder is not None:
        if cfg is None:
            raise DataError(
                f"data.{role}: {folder.root} is an image folder; this command reads tables"
            )
        df = folder_frame(folder, cfg.data.image_shape, cfg.data.target, role)
        return df.head(nrows) if nrows else df
    shards = shard_paths(spec, base_dir, role)
    if shards is not None:
        return _read_shards(shards, base_dir, role, nrows, spec, cfg)
    if spec.startswith("keras:"):
        df = _keras_set(spec, role)
        return df.head(nrows) if nrows else df
    path = resolve_path(spec, base_dir)
    if not path.exists():
        raise DataError(
            f"data.{role}: file {path} does not exist",
            hint="check the path (relative paths are from the experiment folder)",
        )
    if path.is_dir():
        raise DataError(f"data.{role}: {path} is a folder, not a data file")
    fmt, compression = table_format(path)
    try:
        if path.stat().st_size == 0:
            raise DataError(
                f"{path} is empty", hint="the file needs a header line and at least one row"
            )
        if fmt in ("csv", "tsv", "parquet", "jsonl"):
            sep = (
                file_delimiter(
                    path, fmt, compression, cfg.data.delimiter if cfg is not None else "auto"
                )
                if fmt in ("csv", "tsv")
                else ","
            )
            df = read_frame(path, fmt, compression, sep, nrows)
        else:
            with np.load(path, allow_pickle=False) as z:
                if "x" not in z or "y" not in z:
                    raise DataError(
                        f"{path}: an .npz dataset needs arrays 'x' and 'y', it has "
                        f"{', '.join(z.files) or 'none'}"
                    )
                x = z["x"].reshape(len(z["x"]), -1)
                df = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
                df["y"] = z["y"]
    except (
        DataError,
        pd.errors.EmptyDataError,
        pd.errors.ParserError,
        UnicodeDecodeError,
        OSError,
        ValueError,
    ) as e:
        raise read_error(e, path, fmt) from None
    if nrows:
        df = df.head(nrows)
    if len(df) == 0:
        raise DataError(f"{path} has a header but no rows", hint="add data rows below the header")
    df.attrs["source"] = str(path)
    df.attrs["line_offset"] = 2 if fmt in ("csv", "tsv") else 1  # row 0 is on line 2 of a CSV
    return df


def _read_shards(
    paths: list[Path],
    base_dir: Path,
    role: str,
    nrows: int | None,
    spec: Any,
    cfg: ExperimentConfig | None = None,
):
    import pandas as pd

    frames, parts, start = [], [], 0
    for p in paths:
        df = read_table(str(p), base_dir, role, nrows=(nrows - start) if nrows else None, cfg=cfg)
        if frames and list(df.columns) != list(frames[0].columns):
            raise DataError(
                f"data.{role}: {p} has columns {list(df.columns)[:8]}, but {paths[0]} has "
                f"{list(frames[0].columns)[:8]}",
                hint="every shard needs the same header",
            )
        parts.append((df.attrs["source"], start, df.attrs["line_offset"]))
        frames.append(df)
        start += len(df)
        if nrows and start >= nrows:
            break
    out = pd.concat(frames, ignore_index=True)
    out.attrs["source"] = (
        f"{len(frames)} file{'s' if len(frames) > 1 else ''} of data.{role}"
        if len(frames) > 1
        else parts[0][0]
    )
    out.attrs["line_offset"] = parts[0][2]
    out.attrs["parts"] = parts
    return out


def _keras_set(spec: str, role: str):
    import pandas as pd

    if spec not in KERAS_SETS:
        raise DataError(f"unknown dataset '{spec}'", hint=f"known: {', '.join(KERAS_SETS)}")
    import keras

    loader = getattr(keras.datasets, spec.split(":", 1)[1])
    try:
        (xtr, ytr), (xte, yte) = loader.load_data()
    except Exception as e:  # no network, most often
        raise DataError(
            f"cannot download {spec}: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}",
            hint="this needs internet access once; or use the CSV data shipped with the template",
        ) from None
    x, y = (xte, yte) if role == "test" else (xtr, ytr)
    df = pd.DataFrame(x.reshape(len(x), -1), columns=[f"pixel{i}" for i in range(x[0].size)])
    df.insert(0, "label", y)
    df.attrs["source"] = spec + (":test" if role == "test" else ":train")
    df.attrs["line_offset"] = 0
    return df


def feature_columns(df, cfg: ExperimentConfig) -> list[str]:
    """The resolved feature list: explicit, or every column but target and ids."""
    d = cfg.data
    if d.features is not None:
        return list(d.features)
    skip = {d.target, *d.id_columns}
    if df.attrs.get("image_paths"):
        skip.add("path")  # an image folder's file names: not a feature
    return [c for c in df.columns if c not in skip]


def check_columns(df, needed: list[str], what: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        have = list(map(str, df.columns))
        shown = ", ".join(have[:12]) + (f", ... ({len(have)} in all)" if len(have) > 12 else "")
        close = _close(missing[0], have)
        from bigmodel_cli.data.sources import one_column_hint

        raise DataError(
            f"{df.attrs.get('source', 'data')}: {what} "
            f"column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing[:5])}{' ...' if len(missing) > 5 else ''} "
            "not found",
            hint=one_column_hint(have)
            or ((f"did you mean '{close}'? " if close else "") + f"the file has columns: {shown}"),
        )


def _close(word: str, options: list[str]) -> str | None:
    import difflib

    m = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return m[0] if m else None


def numeric_matrix(df, columns: list[str], lenient: bool = False) -> np.ndarray:
    """Columns -> float32 matrix through the one road (:func:`features.road.number_matrix`):
    a value that is not a number is the error every command gives, naming the column
    and line; ``lenient`` (data.missing: impute) reads it as missing instead."""
    from bigmodel_cli.features.road import FrameCells, number_matrix

    return number_matrix(
        FrameCells(df), columns, "missing" if lenient else "error", frame_where(df)
    )


def frame_where(df):
    """How the road's errors name a place in ``df``: its file, and the line of a row."""
    from bigmodel_cli.features.road import Where

    return Where(
        df.attrs.get("source", "data"),
        lambda i: line_of_row(df, i),
        "fix the value or drop the column from data.features; data.missing: impute reads "
        "such values as missing",
    )


def handle_missing(
    df,
    x: np.ndarray,
    y: np.ndarray | None,
    columns: list[str],
    cfg: ExperimentConfig,
    target_numeric: bool,
):
    """Apply data.missing to NaN/inf; returns (x, y, kept rows or None, rows left out
    for a missing target) with rows dropped."""
    bad_x = ~np.isfinite(x)
    rows_x = bad_x.any(axis=1)
    rows_y = (
        ~np.isfinite(y)
        if (y is not None and target_numeric)
        else (np.zeros(len(x), bool) if y is None else missing_labels(y))
    )
    bad_rows = rows_x | rows_y
    n_bad = int(bad_rows.sum())
    if n_bad == 0:
        return x, y, None, 0
    policy = cfg.data.missing
    if policy == "impute":  # the model fills numbers itself; only rows without a target go
        keep = ~rows_y
        if keep.all():
            return x, y, None, 0
        if not keep.any():
            raise DataError(
                f"{df.attrs.get('source', 'data')}: every row's target '{cfg.data.target}' "
                "is missing"
            )
        return x[keep], (y[keep] if y is not None else None), keep, int((~keep).sum())
    first = int(np.flatnonzero(bad_rows)[0])
    if rows_x[first] and columns:
        col = columns[int(np.flatnonzero(bad_x[first])[0])]
    else:
        col = cfg.data.target
    src = df.attrs.get("source", "data")
    if policy == "error":
        raise DataError(
            f"{src}: {n_bad} row(s) have missing or infinite values (first: "
            f"{line_of_row(df, first)}, column '{col}')",
            hint="set data.missing: impute (training median + a missing flag, inside the "
            "model), drop (skip those rows) or fill (use data.fill_value)",
        )
    if policy == "fill":
        x = np.where(np.isfinite(x), x, np.float32(cfg.data.fill_value)).astype(np.float32)
        keep = ~rows_y
    else:
        keep = ~bad_rows
    if not keep.any():
        raise DataError(f"{src}: every row has missing values; nothing is left to train on")
    return x[keep], (y[keep] if y is not None else None), keep, int(rows_y.sum())


def infer_column_types(df, features: list[str], given: dict[str, str] | None) -> dict[str, str]:
    """A type for every feature: as given in data.columns, else inferred
    (:func:`infer_type`, whose reason ``bigmodel init --data`` prints)."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(features))
    if unknown:
        raise DataError(
            f"data.columns names {', '.join(repr(c) for c in unknown)}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not a feature column of "
            f"{df.attrs.get('source', 'the data')}",
            hint=f"feature columns: {', '.join(features[:12])}",
        )
    return {c: given[c] if c in given else infer_type(df[c])[0] for c in features}


def infer_type(s) -> tuple[str, str]:
    """(number | category | text | date, why) for one column of a training table.

    - number: numeric or boolean dtype, or nearly all values parse as numbers
      (a stray 'n/a?' is then a bad value, not a sign of text);
    - category: strings with few distinct values, or short labels;
    - text: longer strings, most of them distinct (reviews, titles, e-mails)."""
    import pandas as pd

    from bigmodel_cli.features.date import looks_like_dates

    if pd.api.types.is_bool_dtype(s):
        return NUMBER.name, "true/false values"
    if pd.api.types.is_datetime64_any_dtype(s):
        return DATE.name, "timestamps"
    if pd.api.types.is_numeric_dtype(s):
        return NUMBER.name, "numbers"
    present = s.dropna()
    if len(present) == 0:
        return NUMBER.name, "no values"
    parsed = int(pd.to_numeric(present, errors="coerce").notna().sum())
    if parsed >= 0.95 * len(present):
        return NUMBER.name, f"{parsed / len(present):.0%} of the values are numbers"
    strings = present.astype(str)
    dated, how = looks_like_dates(strings.tolist())
    if dated:
        return DATE.name, how
    n_unique = int(strings.nunique())
    mean_len = float(strings.str.len().mean())
    mean_words = float(strings.str.split().str.len().mean())
    if n_unique <= 20 or (
        mean_words < 3 and mean_len <= 24 and n_unique <= max(50, 0.3 * len(present))
    ):
        return CATEGORY.name, f"{n_unique} distinct values"
    if (
        mean_words < 1.5 and mean_len <= 40 and n_unique < 0.95 * len(present)
    ):  # product codes, zip codes, cities: one token each, repeated
        return CATEGORY.name, f"{n_unique:,} distinct single-word values, repeated"
    return (
        TEXT.name,
        f"strings of {mean_len:.0f} characters on average, {n_unique / len(present):.0%} distinct",
    )


def text_strings(df, column: str) -> np.ndarray:
    """A text column as Python strings; a missing cell is the empty text."""
    from bigmodel_cli.features.road import FrameCells

    return np.asarray(FrameCells(df).strings(column), dtype=object)


def encode_inputs(
    df,
    features: list[str],
    columns: dict[str, str],
    tokenizers: dict[str, Any],
    lenient: bool = False,
) -> tuple[Any, dict[str, np.ndarray] | None]:
    """(model inputs, raw text columns) through the one road
    (:func:`features.road.encode_rows`): a float32 matrix when every feature is a
    number, else the dict the core model takes (see :class:`Split`)."""
    from bigmodel_cli.features.road import FrameCells, Layout, encode_rows

    layout = Layout(features, columns, tokenizers)
    on_bad = "missing" if lenient else "error"
    x, raw = encode_rows(FrameCells(df), layout, on_bad=on_bad, where=frame_where(df))
    if raw is None:
        return x, None
    return x, {c: np.asarray(v, dtype=object) for c, v in raw.items()}


def make_split(
    df,
    cfg: ExperimentConfig,
    features: list[str],
    classes: list[Any] | None,
    with_target: bool = True,
    columns: dict[str, str] | None = None,
    tokenizers: dict[str, Any] | None = None,
) -> Split:
    check_columns(df, features, "feature")
    if with_target:
        check_columns(df, [cfg.data.target], "target")
    columns = columns if columns is not None else (cfg.data.columns or {})
    x, raw = encode_inputs(
        df, features, columns, tokenizers or {}, lenient=cfg.data.missing == "impute"
    )
    numbers = x.get("features") if isinstance(x, dict) else x
    numeric = registry.columns_of(columns, features, NUMBER)
    y = None
    numeric_target = cfg.task == "regression"
    if with_target:
        if numeric_target:
            y = numeric_matrix(df, [cfg.data.target])[:, 0]
        else:
            y = encode_labels(df, df[cfg.data.target].to_numpy(), classes or [])
            numeric_target = True  # NaN marks a missing label now
    if numbers is None:
        numbers = np.zeros((len(df), 0), np.float32)
    dated = (
        registry.columns_of(columns, features, DATE)
        if cfg.data.missing in ("error", "drop")
        else []
    )
    # a missing or unreadable date follows data.missing too (impute and fill: a flag in the model)
    if dated:
        from bigmodel_cli.features.text import ids_name

        width = numbers.shape[1]
        parts = np.concatenate([numbers] + [x[ids_name(c)][:, :1] for c in dated], axis=1)
        parts, y, keep, no_target = handle_missing(
            df, parts, y, numeric + dated, cfg, numeric_target
        )
        numbers = parts[:, :width]
    else:
        numbers, y, keep, no_target = handle_missing(df, numbers, y, numeric, cfg, numeric_target)
    if isinstance(x, dict):
        if "features" in x:
            x["features"] = numbers
        if keep is not None:
            x = {k: (v if k == "features" else v[keep]) for k, v in x.items()}
            raw = {k: v[keep] for k, v in (raw or {}).items()}
    else:
        x = numbers
    if y is not None:
        y = y.astype(np.float32 if cfg.task == "regression" else np.int32)
    source = df.attrs.get("source", "data")
    return Split(
        x,
        y if y is not None else np.zeros(len(numbers), np.float32),
        source,
        raw,
        [(source, no_target)] if no_target else [],
    )


def check_shape(features: list[str], cfg: ExperimentConfig, source: str) -> None:
    shape = cfg.data.image_shape
    if shape is not None and math.prod(shape) != len(features):
        raise DataError(
            f"data.image_shape {shape} holds {math.prod(shape)} values but {source} has "
            f"{len(features)} feature columns",
            hint="fix data.image_shape or data.features",
        )


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def fit_tokenizers(
    df,
    rows: np.ndarray | None,
    encoded_cols: list[str],
    cfg: ExperimentConfig,
    base_dir: Path = Path("."),
    columns: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One encoder per encoded column (category, text, date: ``encoded_cols``), fitted
    on the training rows only, by its kind's ``fit`` (:mod:`bigmodel_cli.features.registry`)."""
    columns = columns if columns is not None else {}
    out: dict[str, Any] = {}
    texts = registry.columns_of(columns, encoded_cols, TEXT)
    if cfg.model.backbone and texts:
        out.update(backbone_tokenizers(cfg, texts, base_dir))
    for c in [c for c in encoded_cols if c not in out]:
        k = registry.kind(columns.get(c, TEXT.name))
        values = text_strings(df, c)  # as every command reads the column: its text
        values = values[rows] if rows is not None else values
        try:
            enc = k.fit(values, c, columns.get(c, k.name), cfg)
        except DataError as e:
            raise DataError(f"{df.attrs.get('source', 'data')}: {e.message}", hint=e.hint) from None
        columns[c] = k.resolved(enc, columns.get(c, k.name))  # a date: the format it read
        out[c] = enc
    return out


def backbone_tokenizers(
    cfg: ExperimentConfig, text_cols: list[str], base_dir: Path
) -> dict[str, Any]:
    """The pretrained encoder's own WordPiece vocabulary for every text column
    (``data.text.max_tokens`` is the sequence length, [CLS] and [SEP] included)."""
    from bigmodel_cli.features import backbone as pretrained
    from bigmodel_cli.features.wordpiece import WordPiece

    pretrained.require_extra()
    folder = pretrained.resolve_backbone(cfg.model.backbone or "", base_dir)
    vocab, lowercase = pretrained.read_vocabulary(folder)
    try:
        length = (
            cfg.data.text.max_tokens if cfg.data.text.max_tokens != "auto" else 256
        )  # a pretrained encoder's sequence: fixed, not per corpus
        return {
            c: WordPiece(vocab, max(length, 3), lowercase=lowercase, strip_accents=True)
            for c in text_cols
        }
    except ValueError as e:
        raise DataError(f"model.backbone {folder}: {e}") from None
