"""The one reader of table files: CSV/TSV, Parquet and JSON Lines, read by pyarrow.

Every command reads a table through here. Training takes pandas frames
(:func:`read_frame` whole or its first rows, :func:`frame_chunks` in chunks when
streamed); predict, eval, explain and serve take Arrow blocks from
:mod:`bigmodel_cli.inference.reader`, which adds the run's column checks on top of
:func:`header`, :func:`open_stream` and :func:`read_batches`.

A CSV's cells are parsed as text first, then each column of a frame is typed by
:func:`typed_column` the way pandas' ``read_csv`` types it (integers, then floats,
then true/false, else strings; pandas' missing-value spellings are missing), so a
column is typed alike whether the whole file, its first rows or one chunk was read.
A date stays the text it was written as; the date feature parses it.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from bigmodel_cli.errors import DataError
from bigmodel_cli.features.category import NA_SPELLINGS  # pandas' own: reads agree with it

# Bytes of input parsed per block. pyarrow's streaming readers read ahead a
# number of blocks, so memory grows with the block size: measured on a 5M-row
# CSV, 1 MB blocks keep the reader's peak flat at ~120 MB (8 MB: ~430 MB, growing
# with the file) and are no slower.
BLOCK_BYTES = 1 << 20

TRUE, FALSE = ("True", "TRUE", "true"), ("False", "FALSE", "false")


class Position:
    """How far through its input a reader is, as a fraction (None: unknown).

    For files, the byte offset of the raw (still compressed) file; the reader
    reads ahead a few blocks, so it runs slightly ahead of the rows delivered."""

    def __init__(self) -> None:
        self._raw: Any = None
        self._size = 0
        self._rows_total = 0
        self.rows = 0

    def track_file(self, raw: Any, size: int) -> None:
        self._raw, self._size = raw, size

    def track_rows(self, total: int) -> None:
        self._rows_total = total

    def fraction(self) -> float | None:
        try:
            if self._raw is not None and self._size:
                return min(1.0, self._raw.tell() / self._size)
        except (OSError, ValueError):  # closed
            return None
        if self._rows_total:
            return min(1.0, self.rows / self._rows_total)
        return None

    def offset(self) -> int:
        """Bytes of the raw file read so far (0 when unknown)."""
        try:
            return int(self._raw.tell()) if self._raw is not None else 0
        except (OSError, ValueError):
            return self._size


def open_stream(path: str, comp: str | None, position: Position | None = None):
    """A file opened for reading by pyarrow, decompressed; the raw file's offset
    feeds ``position``. pyarrow has no xz codec, so xz is read by Python's lzma."""
    import pyarrow as pa

    raw = pa.OSFile(str(path))
    if position is not None:
        position.track_file(raw, os.path.getsize(path))
    if comp == "xz":
        import lzma

        return pa.PythonFile(lzma.open(raw), mode="r")
    return pa.CompressedInputStream(raw, comp) if comp else raw


def header(stream_factory: Callable[[], Any], delimiter: str) -> list[str]:
    """The header line, read in blocks (pyarrow streams have no readline)."""
    buf = b""
    with stream_factory() as s:
        while b"\n" not in buf and len(buf) < (16 << 20):
            chunk = s.read(65536)
            if not chunk:
                break
            buf += chunk
    line = buf.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r")
    if not line.strip():
        return []
    return next(csv.reader([line], delimiter=delimiter))


def column_names(names: list[str]) -> list[str]:
    """A header's names as pandas gives them: an empty one is ``Unnamed: i`` and a
    repeated one ``name.1``, ``name.2``..."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        n = n if n != "" else f"Unnamed: {i}"
        base, k = n, seen.get(n, 0)
        while n in seen:
            k += 1
            n = f"{base}.{k}"
        seen[base] = k
        seen[n] = seen.get(n, 0)
        out.append(n)
    return out


def read_batches(reader, on_error: Callable[[int, Exception], Exception]) -> Iterator[Any]:
    """Batches of a pyarrow streaming reader; a parse error becomes
    ``on_error(rows read before it, error)``."""
    import pyarrow as pa

    rows = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as e:
            raise on_error(rows, e) from None
        rows += batch.num_rows
        yield batch


# ------------------------------------------------------------------ frames for training


def read_frame(path: Path, fmt: str, comp: str | None, delimiter: str, nrows: int | None = None):
    """A table file as a pandas DataFrame (all of it, or its first ``nrows`` rows)."""
    import pandas as pd

    if nrows is None and fmt in ("csv", "tsv"):  # all of it: parsed on every core
        df = _frame(_csv_table(path, comp, delimiter), texts=True)
    else:
        chunks = frame_chunks(path, fmt, comp, delimiter, nrows or (1 << 62), limit=nrows)
        df, _ = next(chunks, (None, 0))
    if df is None:  # a header and no rows
        names = column_names(_csv_header(path, comp, delimiter)) if fmt in ("csv", "tsv") else []
        df = pd.DataFrame(columns=names)
    df.attrs["delimiter"] = delimiter
    return df


def frame_chunks(
    path: Path,
    fmt: str,
    comp: str | None,
    delimiter: str,
    chunk_rows: int,
    limit: int | None = None,
) -> Iterator[tuple[Any, int]]:
    """(DataFrame chunk of ``chunk_rows`` rows, bytes of the file read so far), each
    chunk's index being its rows' positions in the file; ``limit`` rows in all."""
    import pandas as pd

    if fmt == "parquet":
        batches = _parquet_batches(path, chunk_rows)
    elif fmt == "jsonl":
        batches = _jsonl_batches(path, comp)
    else:
        batches = _csv_batches(path, comp, delimiter)
    texts = fmt in ("csv", "tsv")  # cells read as text, typed here (Parquet, JSON: typed)
    start, pending, have, offset = 0, [], 0, 0
    for batch, offset in batches:
        pending.append(batch)
        have += batch.num_rows
        while have >= chunk_rows or (limit is not None and start + have >= limit):
            take = min(chunk_rows, limit - start) if limit is not None else chunk_rows
            chunk, pending, have = _split(pending, take)
            df = _frame(chunk, texts)
            df.index = pd.RangeIndex(start, start + len(df))
            start += len(df)
            yield df, offset
            if limit is not None and start >= limit:
                return
    if have:
        chunk, _, _ = _split(pending, have)
        df = _frame(chunk, texts)
        df.index = pd.RangeIndex(start, start + len(df))
        yield df, offset


def _split(batches: list[Any], rows: int) -> tuple[Any, list[Any], int]:
    """(the first ``rows`` rows of ``batches`` as one table, the rest, its row count)."""
    import pyarrow as pa

    table = pa.Table.from_batches(batches)
    head, rest = table.slice(0, rows), table.slice(rows)
    return head, rest.to_batches() if rest.num_rows else [], rest.num_rows


def _csv_header(path: Path, comp: str | None, delimiter: str) -> list[str]:
    return header(lambda: open_stream(str(path), comp), delimiter)


def _csv_options(path: Path, comp: str | None, delimiter: str):
    """(reopen the file, its header as written, pyarrow's options: every cell text)."""
    import pyarrow as pa
    import pyarrow.csv as pc

    factory = lambda: open_stream(str(path), comp)  # noqa: E731
    raw = header(factory, delimiter)
    if not raw:
        raise DataError(f"{path} has no header line", hint="the first line names the columns")
    names = column_names(raw)
    return (
        factory,
        raw,
        {
            "read_options": pc.ReadOptions(block_size=BLOCK_BYTES, column_names=names, skip_rows=1),
            "parse_options": pc.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            "convert_options": pc.ConvertOptions(
                column_types={n: pa.string() for n in names},
                null_values=list(NA_SPELLINGS),
                strings_can_be_null=True,
            ),
        },
    )


def _csv_table(path: Path, comp: str | None, delimiter: str):
    """A whole CSV as one Arrow table of strings (missing cells null)."""
    import pyarrow as pa
    import pyarrow.csv as pc

    factory, raw, options = _csv_options(path, comp, delimiter)
    try:
        with factory() as stream:
            return pc.read_csv(stream, **options)
    except pa.ArrowInvalid as e:
        raise locate(factory, delimiter, raw, [], 0, str(path), e) from None


def _csv_batches(path: Path, comp: str | None, delimiter: str):
    """(Arrow batch of a CSV's rows as strings, missing cells null; bytes read so far)."""
    import pyarrow as pa
    import pyarrow.csv as pc

    factory, raw, options = _csv_options(path, comp, delimiter)
    position = Position()
    try:
        reader = pc.open_csv(open_stream(str(path), comp, position), **options)
    except pa.ArrowInvalid as e:
        raise locate(factory, delimiter, raw, [], 0, str(path), e) from None
    for batch in read_batches(
        reader, lambda rows, e: locate(factory, delimiter, raw, [], rows, str(path), e)
    ):
        yield batch, position.offset()


def _jsonl_batches(path: Path, comp: str | None):
    import pyarrow as pa
    import pyarrow.json as pj

    position = Position()
    try:
        reader = pj.open_json(
            open_stream(str(path), comp, position),
            read_options=pj.ReadOptions(block_size=BLOCK_BYTES),
        )
    except pa.ArrowInvalid as e:
        raise DataError(f"{path}: cannot parse JSON lines: {e}") from None
    for batch in read_batches(
        reader, lambda at, e: DataError(f"{path}: cannot parse JSON lines after row {at}: {e}")
    ):
        yield batch, position.offset()


def _parquet_batches(path: Path, chunk_rows: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file: {e}") from None
    size, total, done = os.path.getsize(path), max(pf.metadata.num_rows, 1), 0
    for batch in pf.iter_batches(batch_size=min(chunk_rows, 1 << 20)):
        done += batch.num_rows
        yield batch, int(size * done / total)  # the share of the rows, in bytes


def _frame(table, texts: bool) -> Any:
    """Arrow rows -> a pandas DataFrame; ``texts``: the cells are a CSV's text, each
    column typed here as pandas would."""
    import pandas as pd
    import pyarrow as pa

    cols = {}
    for name, col in zip(table.column_names, table.columns):
        if texts:
            cols[name] = typed_column(col)
        elif pa.types.is_temporal(col.type):  # JSON's ISO strings: kept as text
            cols[name] = col.cast(pa.string()).to_pandas()
        else:
            cols[name] = col.to_pandas()
    return pd.DataFrame(cols)


def typed_column(col) -> Any:
    """Text cells -> a column typed as pandas.read_csv types one: integers (floats
    where a cell is missing), else floats, else true/false, else strings. Cells are
    trimmed for numbers, as pandas does; a hex spelling stays text. Numbers and
    true/false come as numpy arrays (a Series a column costs 80 us: 7,000 columns,
    half a second), strings as a pandas Series."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if col.null_count == len(col):
        return np.full(len(col), np.nan)
    number = _numbers(col)
    if number is None and (b" " in (t := _text(col)) or b"\t" in t):
        number = _numbers(pc.utf8_trim_whitespace(col))
    if number is not None:
        return number.to_numpy()
    values = pc.unique(col.drop_null()).to_pylist()
    if all(v in TRUE or v in FALSE for v in values):
        truth = pc.is_in(col, value_set=pa.array(list(TRUE))).to_numpy()
        if col.null_count == 0:
            return truth
        return np.where(col.is_valid().to_numpy(zero_copy_only=False), truth, np.nan).astype(object)
    return col.to_pandas()


def _text(col) -> bytes:
    """The cells' bytes, run together (a sliced column's whole buffer: a look at it
    may find what lies outside the slice)."""
    parts = []
    for chunk in col.chunks if hasattr(col, "chunks") else [col]:
        data = chunk.buffers()[2]
        if data is not None:
            parts.append(data.to_pybytes())
    return b"".join(parts)


def _cast(col, to) -> Any:
    import pyarrow as pa

    try:
        return col.cast(to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _numbers(col) -> Any:
    """The cells as int64 (all present and integers), else float64, else None.

    A failed cast costs ms on a long column (Arrow formats the error) and tens of us
    on any, so: the first cells are tried first, and a look at the bytes says
    whether integers can be: not with a point, an exponent, inf, or hex (pyarrow's
    integer cast reads 0x10 as 16, where pandas keeps the text; no float cast reads it).
    """
    import pyarrow as pa

    if _cast(col.slice(0, 64), pa.float64()) is None:
        return None
    text = _text(col)
    if not any(c in text for c in (b".", b"e", b"E", b"n", b"N", b"x", b"X")):
        ints = _cast(col, pa.int64())
        if ints is not None:
            return ints if ints.null_count == 0 else ints.cast(pa.float64())
    return _cast(col, pa.float64())


# ------------------------------------------------------------------ naming a bad line


def locate(
    factory,
    delim: str,
    names: list[str],
    numeric: list[str],
    start_row: int,
    source: str,
    err: Exception,
) -> DataError:
    """Re-scan (error path only) to name the exact line of a bad row; ``numeric``:
    the columns that must hold numbers."""
    feat_idx = {names.index(c): c for c in numeric}
    with factory() as s:
        text = io.TextIOWrapper(_Readable(s), encoding="utf-8", newline="")
        reader = csv.reader(text, delimiter=delim)
        try:
            return _scan(reader, start_row, names, feat_idx, source, err)
        except UnicodeDecodeError:
            return DataError(
                f"{source}: line {_first_non_utf8_line(factory)} is not UTF-8 text",
                hint="save the file as UTF-8 (e.g. iconv -f GB18030 -t UTF-8); no output was "
                "written",
            )


def _first_non_utf8_line(factory) -> int:
    """The 1-based number of the first line that is not valid UTF-8 (error path only)."""
    line, rest = 1, b""
    with factory() as s:
        while True:
            chunk = s.read(1 << 20)
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop() if chunk else b""
            for raw in lines:
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return line
                line += 1
            if not chunk:
                return line


def _scan(
    reader, start_row: int, names: list[str], feat_idx: dict[int, str], source: str, err: Exception
) -> DataError:
    """The first row from ``start_row`` on that is malformed or not numeric."""
    next(reader, None)
    for i, row in enumerate(reader):
        if i < start_row:
            continue
        line = reader.line_num
        if len(row) != len(names) and row:
            return DataError(
                f"{source}: line {line} has {len(row)} fields, the header has {len(names)}",
                hint="fix or remove that row; no output was written",
            )
        for j, name in feat_idx.items():
            v = row[j]
            try:
                float(v)
            except ValueError:
                if v.strip() == "":
                    continue  # empty = missing value, handled later
                return DataError(
                    f"{source}: column '{name}' is not numeric: line {line} has {v[:40]!r}",
                    hint="fix that value; no output was written",
                )
    msg = str(err).splitlines()[0]
    return DataError(
        f"{source}: cannot parse after data row {start_row}: {msg}", hint="no output was written"
    )


class _Readable(io.RawIOBase):
    """Adapt a pyarrow stream to io for csv.reader."""

    def __init__(self, s: Any):
        self.s = s

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.s.read(len(b))
        b[: len(data)] = data
        return len(data)


def line_finder(factory: Callable[[], Any], delim: str) -> Callable[[int], int]:
    """data row -> the line it starts on, by re-reading the CSV (quoted fields may span lines)."""

    def line_of(row: int) -> int:
        with factory() as s:
            reader = csv.reader(
                io.TextIOWrapper(_Readable(s), encoding="utf-8", newline=""), delimiter=delim
            )
            next(reader, None)
            start = reader.line_num + 1
            for i, _ in enumerate(reader):
                if i == row:
                    return start
                start = reader.line_num + 1
        return row + 2

    return line_of
