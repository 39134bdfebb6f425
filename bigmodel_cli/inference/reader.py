"""The one reader of table files for predict, eval, explain and serve.

CSV/TSV, Parquet and JSON Lines (local, remote or stdin) in blocks of rows, each row's
line number kept for errors; the input's columns checked against the run's.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import sys
from dataclasses import replace
from typing import Any, Callable, Iterator

from bigmodel_cli.data.sources import table_format
from bigmodel_cli.errors import DataError
from bigmodel_cli.inference.spec import PredictSpec

# Bytes of input parsed per block. pyarrow's streaming readers read ahead a
# number of blocks, so memory grows with the block size: measured on a 5M-row
# CSV, 1 MB blocks keep the reader's peak flat at ~120 MB (8 MB: ~430 MB, growing
# with the file) and are no slower.
BLOCK_BYTES = 1 << 20


def _in_format(path: str, fmt: str | None) -> tuple[str, str | None]:
    if path == "-":
        return fmt or "csv", None
    f, comp = table_format(path)
    return fmt or f, comp


def _header(stream_factory: Callable[[], Any], delimiter: str) -> list[str]:
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


def _renamed(names: list[str], spec: PredictSpec, source: str) -> list[str]:
    """The input's column names after ``predict --rename FROM=TO`` (spec.rename)."""
    rename = getattr(spec, "rename", None) or {}
    if not rename:
        return names
    for old, new in rename.items():
        if old not in names:
            raise DataError(
                f"--rename {old}={new}: {source} has no column '{old}'",
                hint=f"the input has columns: {', '.join(names[:12])}",
            )
        if new in names and new != old:
            raise DataError(
                f"--rename {old}={new}: {source} already has a column '{new}'",
                hint=f"rename that one too, or drop --rename {old}={new}",
            )
    return [rename.get(n, n) for n in names]


def check_rename(rename: dict[str, str], spec: PredictSpec) -> None:
    """Each --rename target must be a column the model reads (or an id or --columns one)."""
    known = list(dict.fromkeys(spec.features + spec.id_columns + spec.keep_columns))
    for old, new in rename.items():
        if new not in known:
            import difflib

            close = difflib.get_close_matches(new, known, n=1)
            raise DataError(
                f"--rename {old}={new}: the model reads no column '{new}'",
                hint=(f"did you mean '{close[0]}'? " if close else "")
                + f"it reads: {', '.join(known[:12])}",
            )


def _rename_batch(batch, spec: PredictSpec):
    rename = getattr(spec, "rename", None) or {}
    if not rename:
        return batch
    import pyarrow as pa

    return pa.RecordBatch.from_arrays(
        batch.columns, names=[rename.get(n, n) for n in batch.schema.names]
    )


def check_input_columns(have: list[str], spec: PredictSpec, source: str) -> PredictSpec:
    """Features and --columns are required; a missing id column is dropped with a note
    (in the spec returned, for this input only)."""
    absent_ids = [c for c in spec.id_columns if c not in have and c not in spec.features]
    if absent_ids:
        note = (
            f"{source} has no id column {', '.join(repr(c) for c in absent_ids)}; predictions "
            "are written without it"
        )
        spec = replace(
            spec,
            id_columns=[c for c in spec.id_columns if c not in absent_ids],
            notes=(*spec.notes, note),
        )
    needed = spec.features + spec.id_columns + spec.keep_columns
    missing = [c for c in needed if c not in have]
    if spec.target is not None and spec.target not in have and not missing:
        import difflib

        close = difflib.get_close_matches(spec.target, have, n=1)
        raise DataError(
            f"{source}: the target column '{spec.target}' is missing (eval scores the "
            "model against it)",
            hint=(f"did you mean '{close[0]}'? " if close else "")
            + "to predict without a target, use bigmodel predict",
        )
    if missing:
        import difflib

        kind = (
            "feature"
            if missing[0] in spec.features
            else "id"
            if missing[0] in spec.id_columns
            else "requested"
        )
        close = difflib.get_close_matches(missing[0], have, n=1)
        shown = ", ".join(have[:12]) + (f", ... ({len(have)} in all)" if len(have) > 12 else "")
        raise DataError(
            f"{source}: {kind} column '{missing[0]}' is missing"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            hint=(f"did you mean '{close[0]}'? " if close else "")
            + f"the input has columns: {shown}",
        )
    return spec


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


def _file_stream(path: str, comp: str | None, position: Position | None = None):
    """Open a file for streaming; the raw file's offset feeds ``position``."""
    import pyarrow as pa

    raw = pa.OSFile(path)
    if position is not None:
        position.track_file(raw, os.path.getsize(path))
    return pa.CompressedInputStream(raw, comp) if comp else raw


_END = object()


def open_blocks(
    path: str,
    spec: PredictSpec,
    fmt: str | None = None,
    position: Position | None = None,
    data: bytes | None = None,
) -> tuple[PredictSpec, Iterator[Any]]:
    """(the spec for this input, its pyarrow RecordBatches in file order). The header
    and columns are checked before it returns; the spec it gives knows the input's
    lines (for errors) and which id columns it has. ``data``: the input's bytes
    themselves (an HTTP request body; ``path`` names it)."""
    box: dict[str, PredictSpec] = {}
    blocks = _blocks(path, spec, fmt, position, data, box)
    first = next(blocks, _END)
    rest = blocks if first is _END else itertools.chain([first], blocks)
    return box["spec"], rest


def _wanted(spec: PredictSpec) -> list[str]:
    """The columns a reader keeps: features, ids, --columns and eval's target."""
    extra = [spec.target] if spec.target else []
    return list(dict.fromkeys(spec.features + spec.id_columns + spec.keep_columns + extra))


def _blocks(
    path: str,
    spec: PredictSpec,
    fmt: str | None,
    position: Position | None,
    data: bytes | None,
    box: dict[str, PredictSpec],
) -> Iterator[Any]:
    """One input's blocks by its format; ``box["spec"]`` gets the input's spec once its
    columns are checked (before the first block)."""
    if data is not None:
        fmt, comp = fmt or "csv", None
        source = path
    else:
        fmt, comp = _in_format(path, fmt)
        source = "stdin" if path == "-" else path
    if data is None and path != "-" and not os.path.exists(path):
        raise DataError(f"input file {path} does not exist")
    if fmt in ("csv", "tsv"):
        yield from _csv_blocks(path, spec, fmt, comp, source, position, data, box)
    elif fmt == "parquet":
        yield from _parquet_blocks(path, spec, source, position, box)
    elif fmt == "jsonl":
        yield from _jsonl_blocks(path, spec, comp, source, position, box)
    else:
        raise DataError(f"{source}: predict reads csv, tsv, parquet or jsonl, not {fmt}")


def _csv_blocks(
    path: str,
    spec: PredictSpec,
    fmt: str,
    comp: str | None,
    source: str,
    position: Position | None,
    data: bytes | None,
    box: dict[str, PredictSpec],
) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.csv as pc

    from bigmodel_cli.data.sources import SNIFF_BYTES, file_delimiter

    buffered = data is not None or path == "-"
    if buffered:
        raw = (
            data if data is not None else sys.stdin.buffer.read()
        )  # stdin cannot be reopened: buffer it once
        if not raw.strip():
            raise DataError(f"{source} is empty")
        factory = lambda: pa.BufferReader(raw)  # noqa: E731
        delim = file_delimiter(source, fmt, None, head=bytes(raw[:SNIFF_BYTES]))
    else:
        if os.path.getsize(path) == 0:
            raise DataError(f"{path} is empty")
        factory = lambda: pa.input_stream(path, compression=comp)  # noqa: E731
        delim = file_delimiter(path, fmt, comp)
    header = _header(factory, delim)
    if not header:
        raise DataError(f"{source} has no header line")
    renamed = _renamed(header, spec, source)
    if renamed != header:
        header, read_names = renamed, {"column_names": renamed, "skip_rows": 1}
    else:
        read_names = {}
    spec = box["spec"] = check_input_columns(
        header, replace(spec, line_of=_line_finder(factory, delim)), source
    )
    texts = (
        spec.id_columns
        + spec.keep_columns
        + spec.encoded_columns
        + ([spec.target] if spec.target else [])
    )
    types = {c: (pa.string() if spec.missing == "impute" else pa.float32()) for c in spec.numeric}
    types.update({c: pa.string() for c in texts if c not in spec.numeric})
    try:
        reader = pc.open_csv(
            factory() if buffered else _file_stream(path, comp, position),
            read_options=pc.ReadOptions(block_size=BLOCK_BYTES, **read_names),
            # Text may hold line breaks inside quotes (e-mails, posts); parsing them
            # costs speed, so only text models pay for it.
            parse_options=pc.ParseOptions(
                delimiter=delim, newlines_in_values=bool(spec.encoded_columns)
            ),
            convert_options=pc.ConvertOptions(
                column_types=types, include_columns=_wanted(spec), strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as e:
        raise _locate(factory, delim, header, spec, 0, source, e) from None
    yield from _read_batches(
        reader, lambda rows, e: _locate(factory, delim, header, spec, rows, source, e)
    )


def _parquet_blocks(
    path: str,
    spec: PredictSpec,
    source: str,
    position: Position | None,
    box: dict[str, PredictSpec],
) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path if path != "-" else pa.BufferReader(sys.stdin.buffer.read()))
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{source}: not a readable Parquet file: {e}") from None
    spec = box["spec"] = check_input_columns(
        _renamed(pf.schema_arrow.names, spec, source), spec, source
    )
    if position is not None:
        position.track_rows(pf.metadata.num_rows)
    back = {v: k for k, v in (spec.rename or {}).items()}
    for batch in pf.iter_batches(batch_size=65536, columns=[back.get(c, c) for c in _wanted(spec)]):
        yield cast_features(_rename_batch(batch, spec), spec)


def _jsonl_blocks(
    path: str,
    spec: PredictSpec,
    comp: str | None,
    source: str,
    position: Position | None,
    box: dict[str, PredictSpec],
) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.json as pj

    stream = (
        pa.BufferReader(sys.stdin.buffer.read())
        if path == "-"
        else _file_stream(path, comp, position)
    )
    try:
        reader = pj.open_json(stream, read_options=pj.ReadOptions(block_size=BLOCK_BYTES))
    except pa.ArrowInvalid as e:
        raise DataError(f"{source}: cannot parse JSON lines: {e}") from None
    spec = box["spec"] = check_input_columns(
        _renamed(reader.schema.names, spec, source), spec, source
    )
    rows = 0
    for batch in _read_batches(
        reader, lambda at, e: DataError(f"{source}: cannot parse JSON lines after row {at}: {e}")
    ):
        yield cast_features(_rename_batch(batch, spec).select(_wanted(spec)), spec, source, rows)
        rows += batch.num_rows


def _read_batches(reader, on_error: Callable[[int, Exception], Exception]) -> Iterator[Any]:
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


def cast_features(batch, spec: PredictSpec, source: str = "input", first_row: int = 0):
    import pyarrow as pa

    cols, names = [], []
    for name in batch.schema.names:
        col = batch.column(name)
        if name in spec.numeric and not pa.types.is_floating(col.type) and spec.missing != "impute":
            try:
                col = col.cast(pa.float32())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                values = col.to_pylist()
                for i, v in enumerate(values):
                    try:
                        float(v)
                    except (TypeError, ValueError):
                        raise DataError(
                            f"{source}: column '{name}' is not numeric: row "
                            f"{first_row + i + 1} has {str(v)[:40]!r}"
                        ) from None
                raise
        elif name not in spec.numeric and not pa.types.is_string(col.type):
            col = col.cast(pa.string())
        cols.append(col)
        names.append(name)
    return pa.RecordBatch.from_arrays(cols, names=names)


def _locate(
    factory,
    delim: str,
    header: list[str],
    spec: PredictSpec,
    start_row: int,
    source: str,
    err: Exception,
) -> DataError:
    """Re-scan (error path only) to name the exact line of a bad row."""
    feat_idx = {header.index(c): c for c in spec.numeric}
    with factory() as s:
        text = io.TextIOWrapper(_Readable(s), encoding="utf-8", newline="")
        reader = csv.reader(text, delimiter=delim)
        try:
            return _scan(reader, start_row, header, feat_idx, source, err)
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
    reader, start_row: int, header: list[str], feat_idx: dict[int, str], source: str, err: Exception
) -> DataError:
    """The first row from ``start_row`` on that is malformed or not numeric."""
    next(reader, None)
    for i, row in enumerate(reader):
        if i < start_row:
            continue
        line = reader.line_num
        if len(row) != len(header):
            return DataError(
                f"{source}: line {line} has {len(row)} fields, the header has {len(header)}",
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


def where_row(spec: PredictSpec, row: int) -> str:
    """A 0-based data row of the input, as the user finds it: a CSV line or a row number."""
    return f"line {spec.line_of(row)}" if spec.line_of is not None else f"row {row + 1}"


def _line_finder(factory: Callable[[], Any], delim: str) -> Callable[[int], int]:
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
