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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import ExperimentConfig
from .errors import DataError

KERAS_SETS = ("keras:mnist", "keras:fashion_mnist")
TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".npz": "npz"}


@dataclass
class Split:
    x: np.ndarray  # (n, features) float32
    y: np.ndarray  # (n,) int32 class index, or float32 target
    source: str

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class Datasets:
    train: Split
    validation: Split | None
    test: Split | None
    features: list[str]
    classes: list[Any] | None


def table_format(path: str | Path) -> tuple[str, str | None]:
    """(format, compression) from a file name; raises on an unknown one."""
    name = str(path).lower()
    compression = None
    for ext, comp in ((".gz", "gzip"), (".bz2", "bz2"), (".zst", "zstd"), (".xz", "xz")):
        if name.endswith(ext):
            compression, name = comp, name[: -len(ext)]
    fmt = TABLE_FORMATS.get(Path(name).suffix)
    if fmt is None:
        known = ", ".join(sorted(set(TABLE_FORMATS)))
        raise DataError(f"{path}: unknown file format '{Path(name).suffix or '(no extension)'}'", hint=f"use one of {known} (optionally .gz)")
    return fmt, compression


def resolve_path(spec: str, base_dir: Path) -> Path:
    p = Path(spec).expanduser()
    return p if p.is_absolute() else base_dir / p


def read_table(spec: str, base_dir: Path, role: str = "train", nrows: int | None = None):
    """Read a table into a DataFrame (training-sized data); ``nrows`` reads only the first rows."""
    import pandas as pd

    if spec.startswith("keras:"):
        df = _keras_set(spec, role)
        return df.head(nrows) if nrows else df
    path = resolve_path(spec, base_dir)
    if not path.exists():
        raise DataError(f"data.{role}: file {path} does not exist", hint="check the path (relative paths are from the experiment folder)")
    if path.is_dir():
        raise DataError(f"data.{role}: {path} is a folder, not a data file")
    fmt, compression = table_format(path)
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty", hint="the file needs a header line and at least one row")
        if fmt in ("csv", "tsv"):
            df = pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", compression=compression, low_memory=False, nrows=nrows)
        elif fmt == "parquet":
            df = pd.read_parquet(path)
        elif fmt == "jsonl":
            df = pd.read_json(path, lines=True, compression=compression)
        else:
            with np.load(path, allow_pickle=False) as z:
                if "x" not in z or "y" not in z:
                    raise DataError(f"{path}: an .npz dataset needs arrays 'x' and 'y', it has {', '.join(z.files) or 'none'}")
                x = z["x"].reshape(len(z["x"]), -1)
                df = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
                df["y"] = z["y"]
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty", hint="the file needs a header line and at least one row") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: cannot parse: {str(e).strip().splitlines()[-1]}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}): is it really a {fmt} file?") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read as {fmt}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    if nrows:
        df = df.head(nrows)
    if len(df) == 0:
        raise DataError(f"{path} has a header but no rows", hint="add data rows below the header")
    df.attrs["source"] = str(path)
    df.attrs["line_offset"] = 2 if fmt in ("csv", "tsv") else 1  # row 0 is on line 2 of a CSV
    return df


def _keras_set(spec: str, role: str):
    import pandas as pd

    if spec not in KERAS_SETS:
        raise DataError(f"unknown dataset '{spec}'", hint=f"known: {', '.join(KERAS_SETS)}")
    import keras

    loader = getattr(keras.datasets, spec.split(":", 1)[1])
    try:
        (xtr, ytr), (xte, yte) = loader.load_data()
    except Exception as e:  # no network, most often
        raise DataError(f"cannot download {spec}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", hint="this needs internet access once; or use the CSV data shipped with the template") from None
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
    return [c for c in df.columns if c not in skip]


def _where(df, row: int) -> str:
    off = df.attrs.get("line_offset", 1)
    return f"line {row + off}" if off == 2 else f"row {row + 1}"


def check_columns(df, needed: list[str], what: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        have = list(map(str, df.columns))
        shown = ", ".join(have[:12]) + (f", ... ({len(have)} in all)" if len(have) > 12 else "")
        close = _close(missing[0], have)
        raise DataError(
            f"{df.attrs.get('source', 'data')}: {what} column{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing[:5])}{' ...' if len(missing) > 5 else ''} not found",
            hint=(f"did you mean '{close}'? " if close else "") + f"the file has columns: {shown}",
        )


def _close(word: str, options: list[str]) -> str | None:
    import difflib

    m = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return m[0] if m else None


def numeric_matrix(df, columns: list[str]) -> np.ndarray:
    """Columns -> float32 matrix; names the column and line of a bad value."""
    import pandas as pd

    for c in columns:
        s = df[c]
        if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
            coerced = pd.to_numeric(s, errors="coerce")
            bad = coerced.isna() & s.notna()
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(
                    f"{df.attrs.get('source', 'data')}: column '{c}' is not numeric: {_where(df, i)} has {str(s.iloc[i])[:40]!r}",
                    hint=f"{int(bad.sum())} value(s) in '{c}' are not numbers; fix them or drop the column from data.features",
                )
    try:
        return df[columns].to_numpy(dtype=np.float32, na_value=np.nan)
    except (TypeError, ValueError) as e:
        raise DataError(f"{df.attrs.get('source', 'data')}: cannot convert features to numbers: {e}") from None


def handle_missing(df, x: np.ndarray, y: np.ndarray | None, columns: list[str], cfg: ExperimentConfig, target_numeric: bool):
    """Apply data.missing to NaN/inf; returns (x, y) possibly with rows dropped."""
    bad_x = ~np.isfinite(x)
    rows_x = bad_x.any(axis=1)
    rows_y = ~np.isfinite(y) if (y is not None and target_numeric) else (np.zeros(len(x), bool) if y is None else _missing_labels(y))
    bad_rows = rows_x | rows_y
    n_bad = int(bad_rows.sum())
    if n_bad == 0:
        return x, y
    policy = cfg.data.missing
    first = int(np.flatnonzero(bad_rows)[0])
    if rows_x[first]:
        col = columns[int(np.flatnonzero(bad_x[first])[0])]
    else:
        col = cfg.data.target
    src = df.attrs.get("source", "data")
    if policy == "error":
        raise DataError(
            f"{src}: {n_bad} row(s) have missing or infinite values (first: {_where(df, first)}, column '{col}')",
            hint="set data.missing: drop (skip those rows) or data.missing: fill (use data.fill_value)",
        )
    if policy == "fill":
        x = np.where(np.isfinite(x), x, np.float32(cfg.data.fill_value)).astype(np.float32)
        keep = ~rows_y
    else:
        keep = ~bad_rows
    if not keep.any():
        raise DataError(f"{src}: every row has missing values; nothing is left to train on")
    return x[keep], (y[keep] if y is not None else None)


def _missing_labels(y: np.ndarray) -> np.ndarray:
    import pandas as pd

    return pd.isna(pd.Series(y)).to_numpy()


def infer_classes(y_raw: np.ndarray, cfg: ExperimentConfig) -> list[Any]:
    import pandas as pd

    if cfg.data.classes is not None:
        return list(cfg.data.classes)
    vals = pd.Series(y_raw).dropna().unique().tolist()
    try:
        classes = sorted(vals)
    except TypeError:
        classes = sorted(vals, key=str)
    classes = [c.item() if hasattr(c, "item") else c for c in classes]
    classes = [int(c) if isinstance(c, float) and c.is_integer() else c for c in classes]
    if cfg.task == "binary" and len(classes) != 2:
        raise DataError(f"a binary task needs exactly 2 target values in '{cfg.data.target}', found {len(classes)}: {classes[:10]}", hint="use task: classification for more classes")
    if cfg.task == "classification" and len(classes) < 2:
        raise DataError(f"the target column '{cfg.data.target}' has only {len(classes)} distinct value(s); a classifier needs at least 2")
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
            f"{df.attrs.get('source', 'data')}: label {y_raw[i]!r} on {_where(df, i)} is not one of the model's classes",
            hint=f"classes are {classes[:20]}; {int(bad.sum())} row(s) have unknown labels",
        )
    out = codes.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _key(v: Any) -> str | None:
    import pandas as pd

    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        v = int(v)
    return str(v.item() if hasattr(v, "item") else v)


def make_split(df, cfg: ExperimentConfig, features: list[str], classes: list[Any] | None, with_target: bool = True) -> Split:
    check_columns(df, features, "feature")
    if with_target:
        check_columns(df, [cfg.data.target], "target")
    x = numeric_matrix(df, features)
    y = None
    numeric_target = cfg.task == "regression"
    if with_target:
        if numeric_target:
            y = numeric_matrix(df, [cfg.data.target])[:, 0]
        else:
            y = encode_labels(df, df[cfg.data.target].to_numpy(), classes or [])
            numeric_target = True  # NaN marks a missing label now
    x, y = handle_missing(df, x, y, features, cfg, numeric_target)
    if y is not None:
        y = y.astype(np.float32 if cfg.task == "regression" else np.int32)
    return Split(x, y if y is not None else np.zeros(len(x), np.float32), df.attrs.get("source", "data"))


def check_shape(features: list[str], cfg: ExperimentConfig, source: str) -> None:
    shape = cfg.data.image_shape
    if shape is not None and math.prod(shape) != len(features):
        raise DataError(f"data.image_shape {shape} holds {math.prod(shape)} values but {source} has {len(features)} feature columns", hint="fix data.image_shape or data.features")


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def load_datasets(cfg: ExperimentConfig, base_dir: Path, with_test: bool = False, classes: list[Any] | None = None, features: list[str] | None = None) -> Datasets:
    """Read and check train (+ validation, + test) before any training starts."""
    d = cfg.data
    df = read_table(d.train, base_dir, "train")
    feats = features or feature_columns(df, cfg)
    if not feats:
        raise DataError(f"{df.attrs['source']} has no feature columns besides the target", hint="list them in data.features")
    check_columns(df, [d.target], "target")
    check_shape(feats, cfg, df.attrs["source"])
    if cfg.task != "regression" and classes is None:
        classes = infer_classes(df[d.target].to_numpy(), cfg)
    validation = None
    if isinstance(d.validation, str):
        validation = make_split(read_table(d.validation, base_dir, "validation"), cfg, feats, classes)
        train = make_split(df, cfg, feats, classes)
    elif d.validation:
        full = make_split(df, cfg, feats, classes)
        tr, va = split_indices(len(full), float(d.validation), cfg.seed)
        if len(va) == 0 or len(tr) == 0:
            raise DataError(f"data.validation {d.validation} of {len(full)} rows leaves {len(tr)} to train and {len(va)} to validate", hint="use a larger dataset or a different fraction")
        train = Split(full.x[tr], full.y[tr], full.source)
        validation = Split(full.x[va], full.y[va], f"{full.source} (held out {d.validation:.0%})")
    else:
        train = make_split(df, cfg, feats, classes)
    test = None
    if with_test and d.test:
        test = make_split(read_table(d.test, base_dir, "test"), cfg, feats, classes)
    return Datasets(train, validation, test, feats, classes)
