"""One road for a row (issue 37, item 2): raw cells -> the model's inputs.

Every reader hands its rows here as a :class:`Cells` block: training's tables
and streamed chunks (pandas), predict's, eval's, explain's and serve's blocks
(Arrow), export's sample rows. :func:`encode_rows` then

1. checks every cell through its column type (:meth:`ColumnType.check`): a value
   that is present but not of its type (``forty`` in a number column, ``31/02``
   in a date column) is either the one error below, the same words in every
   command, or (``on_bad="missing"``) a missing value the model imputes;
2. encodes each column through its type (:meth:`ColumnType.encode`) into what
   the model takes: one float32 matrix of the number columns (``features``) and
   one input per category, text or date column: its ids (``ids_<col>``, the
   ONNX core's input) or, for the Keras model that reads raw strings, the strings
   themselves (``raw_input_name``).

Where each road's policy differs it is a parameter, not a copy: what a missing
number does (``data.missing``) stays with the caller, since training drops rows
that predict must refuse. The error names the place through the caller's
``where`` (a CSV line, a row of a request), and the caller's ``hint``.

Example::

    x, raw = encode_rows(FrameCells(df), layout, where=Where("train.csv", line_of))
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from bigmodel_cli.errors import DataError
from bigmodel_cli.features import registry
from bigmodel_cli.features.registry import NUMBER
from bigmodel_cli.features.text import ids_name, raw_input_name

BAD_HINT = "fix the value (an empty cell is a missing value)"


class Cells(Protocol):
    """A block of raw rows, as any reader has them."""

    def __len__(self) -> int: ...

    def numbers(self, columns: list[str]) -> np.ndarray | None:
        """The columns as one float32 matrix where each is numeric already, else None."""

    def number_cells(self, column: str) -> np.ndarray:
        """One column's cells: numbers, or objects (text) where they need parsing."""

    def strings(self, column: str) -> list[Any]:
        """One column's cells as text, a missing cell the empty string."""


@dataclass(frozen=True)
class Layout:
    """What a run reads: its features in order, their type spellings and (where the
    caller feeds ids) the fitted encoder of every category, text or date column."""

    features: list[str]
    types: dict[str, str] = field(default_factory=dict)  # column -> spelling (none: number)
    encoders: dict[str, Any] | None = None  # None: raw strings (the Keras model's own layers)

    @functools.cached_property  # once per block layout, not per column read
    def numeric(self) -> list[str]:
        return registry.columns_of(self.types, self.features, NUMBER)

    @functools.cached_property
    def encoded(self) -> list[str]:
        return registry.encoded_columns(self.types, self.features)


@dataclass(frozen=True)
class Where:
    """How an error names a block's place: its source, a block row -> 'line 5'."""

    source: str
    row: Callable[[int], str] = lambda i: f"row {i + 1}"
    hint: str = BAD_HINT
    block: str = "block"  # what the rows came in: a file's block, an HTTP request


def bad_value_error(
    where: Where, column: str, kind: Any, spelling: str, cells: Any, bad: np.ndarray
) -> DataError:
    """The one error for a value that is not of its column's type."""
    i = int(np.flatnonzero(bad)[0])
    return DataError(
        f"{where.source}: {where.row(i)}, column '{column}' is not {kind.not_a(spelling)}: "
        f"{str(cells[i])[:40]!r} ({int(bad.sum())} such value(s) in this {where.block})",
        hint=where.hint,
    )


def _checked(cells: Any, column: str, spelling: str, on_bad: str, where: Where) -> Any:
    kind = registry.kind(spelling)
    parsed, bad = kind.check(cells, spelling)
    if bad is not None and bad.any() and on_bad != "missing":
        raise bad_value_error(where, column, kind, spelling, cells, bad)
    return parsed


def number_matrix(
    block: Cells, columns: list[str], on_bad: str = "error", where: Where | None = None
) -> np.ndarray:
    """The number columns as float32 [rows, columns]; a bad cell is the error, or NaN."""
    where = where or Where("input")
    if not columns:
        return np.zeros((len(block), 0), np.float32)
    fast = block.numbers(columns)
    if fast is not None:
        return fast
    out = np.empty((len(block), len(columns)), np.float32)
    for j, c in enumerate(columns):
        cells = block.number_cells(c)
        if cells.dtype == object:
            cells = _checked(cells, c, NUMBER.name, on_bad, where)
        out[:, j] = cells
    return out


def encode_rows(
    block: Cells,
    layout: Layout,
    *,
    on_bad: str = "error",
    where: Where | None = None,
) -> tuple[Any, dict[str, list[Any]] | None]:
    """(the model's inputs, each encoded column's raw text or None): a float32 matrix
    where every feature is a number, else a dict (see the module)."""
    where = where or Where("input")
    encoded = layout.encoded
    if not encoded:
        return number_matrix(block, layout.features, on_bad, where), None
    x: dict[str, np.ndarray] = {}
    if layout.numeric:
        x["features"] = number_matrix(block, layout.numeric, on_bad, where)
    raw: dict[str, list[Any]] = {}
    for c in encoded:
        spelling = layout.types.get(c) or registry.TEXT.name
        raw[c] = texts = block.strings(c)
        parsed = _checked(texts, c, spelling, on_bad, where)
        if layout.encoders is None:
            x[raw_input_name(c)] = np.asarray(texts, dtype=object)
        else:
            x[ids_name(c)] = registry.kind(spelling).encode(layout.encoders[c], parsed)
    return x, raw


class FrameCells:
    """A pandas DataFrame as :class:`Cells`."""

    def __init__(self, df: Any):
        self.df = df

    def __len__(self) -> int:
        return len(self.df)

    def numbers(self, columns: list[str]) -> np.ndarray | None:
        import pandas as pd

        dtypes = self.df.dtypes  # one lookup, not a Series per column (784 pixels: 40 ms)
        if all(
            pd.api.types.is_numeric_dtype(dtypes[c]) or pd.api.types.is_bool_dtype(dtypes[c])
            for c in columns
        ):
            return self.df[columns].to_numpy(dtype=np.float32, na_value=np.nan)
        return None

    def number_cells(self, column: str) -> np.ndarray:
        import pandas as pd

        s = self.df[column]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            return s.to_numpy(dtype=np.float32, na_value=np.nan)
        return s.astype(object).where(s.notna(), None).to_numpy(dtype=object)

    def strings(self, column: str) -> list[Any]:
        s = self.df[column]
        return s.astype(object).where(s.notna(), "").map(str).tolist()


class ArrowCells:
    """A pyarrow RecordBatch (or Table) as :class:`Cells`."""

    def __init__(self, batch: Any):
        self.batch = batch

    def __len__(self) -> int:
        return self.batch.num_rows

    def numbers(self, columns: list[str]) -> np.ndarray | None:
        return None  # column by column: Arrow has no cheap many-column float view

    def number_cells(self, column: str) -> np.ndarray:
        col = self.batch.column(column)
        arr = col.to_numpy(zero_copy_only=False)
        if arr.dtype != object and (col.null_count or arr.dtype != np.float32):
            arr = arr.astype(np.float32)
        return arr

    def strings(self, column: str) -> list[Any]:
        return self.batch.column(column).fill_null("").to_pylist()


class MatrixCells:
    """Rows already read (a training split): the number columns as one matrix, each
    encoded column's raw text beside it; export's sample rows take the road this way."""

    def __init__(self, numbers: np.ndarray | None, numeric: list[str], texts: dict[str, Any]):
        self.matrix, self.numeric, self.texts = numbers, list(numeric), texts
        self.rows = len(numbers) if numbers is not None else len(next(iter(texts.values()), []))

    def __len__(self) -> int:
        return self.rows

    def numbers(self, columns: list[str]) -> np.ndarray | None:
        if self.matrix is None:
            return np.zeros((self.rows, 0), np.float32)
        idx = [self.numeric.index(c) for c in columns]
        return np.ascontiguousarray(self.matrix[:, idx], dtype=np.float32)

    def number_cells(self, column: str) -> np.ndarray:
        return self.matrix[:, self.numeric.index(column)].astype(np.float32)

    def strings(self, column: str) -> list[Any]:
        return [str(v) for v in self.texts[column]]
