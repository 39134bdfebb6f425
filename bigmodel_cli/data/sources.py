"""Where rows come from: table formats, paths and shards, and the Split/Datasets a loader returns.

The bottom of ``data``: it imports nothing else of the package but ``config`` and ``errors``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.errors import DataError
from bigmodel_cli.features import registry


KERAS_SETS = ("keras:mnist", "keras:fashion_mnist")


TABLE_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".npz": "npz",
}


@dataclass
class Split:
    """Model inputs of one split. ``x`` is a float32 matrix (n, features) when
    every feature is numeric; with text columns it is a dict of the core
    model's inputs ("features": float32 numbers, "ids_<col>": int32 ids), and
    ``raw`` holds each text column's strings."""

    x: Any  # np.ndarray | dict[str, np.ndarray]
    y: np.ndarray  # (n,) int32 class index, or float32 target
    source: str
    raw: dict[str, np.ndarray] | None = None
    dropped: list[tuple[str, int]] = field(
        default_factory=list
    )  # (source, rows) left out for a missing target

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: np.ndarray, source: str | None = None) -> "Split":
        return Split(
            take_rows(self.x, idx),
            self.y[idx],
            source or self.source,
            take_rows(self.raw, idx) if self.raw is not None else None,
        )


def take_rows(x: Any, idx: Any) -> Any:
    """Rows of a matrix or of every array of a dict of inputs."""
    return {k: v[idx] for k, v in x.items()} if isinstance(x, dict) else x[idx]


@dataclass
class Datasets:
    train: Split
    validation: Split | None
    test: Split | None
    features: list[str]
    classes: list[Any] | None
    columns: dict[str, str] = field(
        default_factory=dict
    )  # feature -> number | category | text | date_*
    tokenizers: dict[str, Any] = field(default_factory=dict)  # text/category column -> its encoder
    dropped: list[tuple[str, int]] = field(
        default_factory=list
    )  # (source, rows) dropped for a missing target
    # when train/validation are streamed: what was prepared (blocks.describe)
    stream: dict[str, Any] | None = None
    # streamed classifiers: rows of each label (str) read
    label_counts: dict[str, int] | None = None

    def class_counts(self) -> "np.ndarray | None":
        """Training rows of each class, in class order (None: a regression, or unknown)."""
        if not self.classes:
            return None
        y = getattr(self.train, "y", None)
        if isinstance(y, np.ndarray) and y.size:
            return np.bincount(y.astype(np.int64).reshape(-1), minlength=len(self.classes))
        if self.label_counts:
            return np.array([self.label_counts.get(str(c), 0) for c in self.classes])
        return None

    @property
    def numeric(self) -> list[str]:
        return registry.columns_of(self.columns, self.features, registry.NUMBER)


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
        raise DataError(
            f"{path}: unknown file format '{Path(name).suffix or '(no extension)'}'",
            hint=f"use one of {known} (optionally .gz)",
        )
    return fmt, compression


DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
SNIFF_BYTES, SNIFF_LINES = 64 * 1024, 50


def sniff_delimiter(head: str, default: str = ",") -> str:
    """The delimiter of a delimited table, from its header and first rows: of
    , ; tab and |, the one that splits the header into the most columns with every
    row in the sample as wide as the header. ``default`` when none splits it."""
    import csv
    import io

    lines = head.splitlines()[:SNIFF_LINES]
    if len(lines) > 1 and not head.endswith(("\n", "\r")):
        lines = lines[:-1]  # the sample may cut the last line short
    best, best_width = default, 1
    for d in DELIMITERS:
        try:
            rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=d))
        except csv.Error:
            continue
        rows = [r for r in rows if r]
        if not rows or len(rows[0]) <= 1:
            continue
        width = len(rows[0])
        if all(len(r) == width for r in rows[1:]) and (
            width > best_width or (width == best_width and d == default)
        ):
            best, best_width = d, width
    return best


def file_delimiter(
    path: str | Path,
    fmt: str,
    compression: str | None,
    setting: str = "auto",
    head: bytes | None = None,
) -> str:
    """data.delimiter, or (auto) the sniffed one of this csv/tsv file."""
    if setting != "auto":
        return setting
    default = "\t" if fmt == "tsv" else ","
    if head is None:
        try:
            import pyarrow as pa

            with pa.input_stream(str(path), compression=compression) as f:
                head = f.read(SNIFF_BYTES)
        except (OSError, ValueError):
            return default
    return sniff_delimiter(head.decode("utf-8", errors="replace"), default)


def one_column_hint(columns: list[str]) -> str | None:
    """When a header read as a single column holds a delimiter: say so."""
    if len(columns) == 1:
        for d, name in DELIMITERS.items():
            if d in str(columns[0]):
                return (
                    f"the header was read as one column that holds '{d}' ({name}): set "
                    f"data.delimiter: '{d}' if the file is {name}-separated"
                )
    return None


def check_paths(cfg: Any, base_dir: Path) -> None:
    """data.train / validation / test that name a local file or folder which is not
    there: one line now, before TensorFlow is imported (seconds) to find out."""
    from bigmodel_cli.data import remote

    for role in ("train", "validation", "test"):
        spec = getattr(cfg.data, role, None)
        for item in spec if isinstance(spec, (list, tuple)) else [spec]:
            if (
                not isinstance(item, str)
                or item.startswith("keras:")
                or remote.is_url(item)
                or any(ch in item for ch in "*?[")
            ):
                continue
            path = Path(remote.local_path(item)).expanduser()
            path = path if path.is_absolute() else base_dir / path
            if not path.exists():
                raise DataError(
                    f"data.{role}: {path} does not exist",
                    hint="check the path (relative paths are from the experiment folder)",
                )


def resolve_path(spec: str, base_dir: Path) -> Path:
    """A data path: relative ones from the experiment folder; a URL (s3://, gs://,
    hf://, https://) is fetched into the local cache (data/remote.py)."""
    from bigmodel_cli.data import remote

    if remote.is_url(spec):
        return remote.fetch(spec)
    import os

    p = Path(remote.local_path(spec)).expanduser()
    return Path(
        os.path.normpath(p if p.is_absolute() else base_dir / p)
    )  # exp/so/../../data/x.csv -> data/x.csv in every message


def shard_paths(spec: Any, base_dir: Path, role: str) -> list[Path] | None:
    """The files of a sharded ``data.<role>``: a list, a glob, or a folder of
    table files (sorted by name); None for a single file or a keras: set."""
    import glob

    if isinstance(spec, (list, tuple)):
        if not spec:
            raise DataError(f"data.{role} is an empty list", hint="list one or more data files")
        out = []
        for item in spec:
            out += shard_paths(item, base_dir, role) or [resolve_path(str(item), base_dir)]
        return out
    spec = str(spec)
    if spec.startswith("keras:"):
        return None
    from bigmodel_cli.data import remote

    if remote.is_url(
        spec
    ):  # a glob or a folder (ending in /) of objects; one object is not sharded
        urls = remote.expand(spec, role, keep=_is_table)
        return [remote.fetch(u) for u in urls] if (len(urls) > 1 or urls[0] != spec) else None
    if any(ch in spec for ch in "*?["):
        pattern = str(resolve_path(spec, base_dir))
        found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not found:
            raise DataError(
                f"data.{role}: '{spec}' matches no file",
                hint="check the pattern (relative paths are from the experiment folder)",
            )
        return found
    path = resolve_path(spec, base_dir)
    if path.is_dir():
        found = sorted(
            p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and _is_table(p)
        )
        if not found:
            raise DataError(
                f"data.{role}: the folder {path} holds no csv, tsv, parquet or jsonl file"
            )
        return found
    return None


def _is_table(p: Path) -> bool:
    try:
        return table_format(p)[0] != "npz"
    except DataError:
        return False


def read_error(e: Exception, path: Path, fmt: str) -> Exception:
    """What went wrong reading a table file, as one DataError line (other errors unchanged)."""
    import pandas as pd

    if isinstance(e, DataError):
        return e
    if isinstance(e, pd.errors.EmptyDataError):
        return DataError(
            f"{path} is empty", hint="the file needs a header line and at least one row"
        )
    if isinstance(e, pd.errors.ParserError):
        return DataError(f"{path}: cannot parse: {str(e).strip().splitlines()[-1]}")
    if isinstance(e, UnicodeDecodeError):
        return DataError(f"{path}: not UTF-8 text (byte {e.start}): is it really a {fmt} file?")
    if isinstance(e, (OSError, ValueError)):
        return DataError(
            f"{path}: cannot read as {fmt}: "
            f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
        )
    return e


def _key(v: Any) -> str | None:
    import pandas as pd

    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        v = int(v)
    return str(v.item() if hasattr(v, "item") else v)


def line_of_row(df, row: int) -> str:
    """Where row ``row`` (a position in ``df``) is in its file; ``df`` may be a
    subset of the rows read (its index keeps their positions in the file)."""
    off = df.attrs.get("line_offset", 1)
    try:
        row = int(df.index[row])
    except (TypeError, ValueError, IndexError):
        pass
    parts = df.attrs.get("parts")
    if parts and len(parts) > 1:  # shards: name the file, and the line inside it
        source, start, off = max((p for p in parts if p[1] <= row), key=lambda p: p[1])
        return (
            f"{source} {'line' if off == 2 else 'row'} "
            f"{row - start + off if off == 2 else row - start + 1}"
        )
    return f"line {row + off}" if off == 2 else f"row {row + 1}"
