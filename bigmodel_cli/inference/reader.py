"""Table files for predict, eval, explain and serve: the one reader
(:mod:`bigmodel_cli.data.reader`) with the run's columns on top.

CSV/TSV, Parquet and JSON Lines (local, remote or stdin) in blocks of rows, each row's
line number kept for errors; the input's columns checked against the run's.
"""

from __future__ import annotations

import itertools
import os
import sys
from dataclasses import replace
from typing import Any, Iterator

from bigmodel_cli.data.reader import (
    BLOCK_BYTES,
    Position,
    header,
    line_finder,
    locate,
    open_stream,
    read_batches,
)
from bigmodel_cli.data.sources import table_format
from bigmodel_cli.errors import DataError
from bigmodel_cli.inference.spec import PredictSpec


def _in_format(path: str, fmt: str | None) -> tuple[str, str | None]:
    if path == "-":
        return fmt or "csv", None
    f, comp = table_format(path)
    return fmt or f, comp


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
        factory = lambda: open_stream(path, comp)  # noqa: E731
        delim = file_delimiter(path, fmt, comp)
    names = header(factory, delim)
    if not names:
        raise DataError(f"{source} has no header line")
    renamed = _renamed(names, spec, source)
    if renamed != names:
        names, read_names = renamed, {"column_names": renamed, "skip_rows": 1}
    else:
        read_names = {}
    spec = box["spec"] = check_input_columns(
        names, replace(spec, line_of=line_finder(factory, delim)), source
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
            factory() if buffered else open_stream(path, comp, position),
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
        raise locate(factory, delim, names, spec.numeric, 0, source, e) from None
    yield from read_batches(
        reader, lambda rows, e: locate(factory, delim, names, spec.numeric, rows, source, e)
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
        else open_stream(path, comp, position)
    )
    try:
        reader = pj.open_json(stream, read_options=pj.ReadOptions(block_size=BLOCK_BYTES))
    except pa.ArrowInvalid as e:
        raise DataError(f"{source}: cannot parse JSON lines: {e}") from None
    spec = box["spec"] = check_input_columns(
        _renamed(reader.schema.names, spec, source), spec, source
    )
    rows = 0
    for batch in read_batches(
        reader, lambda at, e: DataError(f"{source}: cannot parse JSON lines after row {at}: {e}")
    ):
        yield cast_features(_rename_batch(batch, spec).select(_wanted(spec)), spec, source, rows)
        rows += batch.num_rows


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


def where_row(spec: PredictSpec, row: int) -> str:
    """A 0-based data row of the input, as the user finds it: a CSV line or a row number."""
    return f"line {spec.line_of(row)}" if spec.line_of is not None else f"row {row + 1}"
