"""Streaming batch prediction: constant memory, large compiled batches.

Input is read in blocks (pyarrow's streaming CSV/JSON readers, Parquet row
groups); each block goes through one compiled inference function in large
batches and its predictions are written while the next block is read. The
output is written under a temporary name and renamed at the end, so a
failure or a kill never leaves a partial file under the final name.

Example::

    result = predict_file(model, spec, Path("big.csv"), Path("preds.csv"))
    result.rows
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import itertools
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from bigmodel_cli.data.sources import table_format
from bigmodel_cli.errors import DataError, PathError
from bigmodel_cli.model.builders import default_batch_size

# Bytes of input parsed per block. pyarrow's streaming readers read ahead a
# number of blocks, so memory grows with the block size: measured on a 5M-row
# CSV, 1 MB blocks keep the reader's peak flat at ~120 MB (8 MB: ~430 MB, growing
# with the file) and are no slower.
BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class PredictSpec:
    """What the run says about inputs and outputs, and what one command or request
    asked: immutable, so nothing a request or an input file learns reaches another
    (``dataclasses.replace`` makes the variant; :func:`open_blocks` returns the one
    for its input)."""

    features: list[str]
    task: str
    classes: list[Any] | None = None
    id_columns: list[str] = field(default_factory=list)
    keep_columns: list[str] = field(default_factory=list)
    probabilities: bool = False
    missing: str = "error"
    fill_value: float = 0.0
    notes: tuple[str, ...] = ()  # warnings for the user about this input
    # the run's column types (data.columns: column -> category | text | date_*; none: a number)
    column_types: dict[str, str] = field(default_factory=dict)
    tokenizers: dict[str, Any] | None = None  # set: feed ids (the ONNX core); None: raw strings
    rename: dict[str, str] = field(
        default_factory=dict
    )  # predict --rename: the input's column -> the model's
    # a value that is not a number (or a date) in such a column: error | missing
    on_bad_value: str = "error"
    line_of: Callable[[int], int] | None = field(
        default=None, repr=False
    )  # a CSV input's data row -> its line (error path)
    # binary: the probability above which a row is the positive class (train.threshold)
    threshold: float = 0.5
    conformal: Any = None  # model.conformal.Conformal: the run's scores (None: the run kept none)
    coverage: float | None = None  # predict --coverage: sets or intervals at this coverage
    set_method: str = "lac"  # --sets: lac | aps
    target: str | None = None  # eval: the target column, read as text beside the features
    # serve's JSON rows: the id values as sent, echoed back
    sent_ids: dict[str, list[Any]] | None = None

    @functools.cached_property
    def encoded_columns(self) -> list[str]:
        """Features with their own encoder (category, text, date): read as strings."""
        from bigmodel_cli.features import registry

        return registry.encoded_columns(self.column_types, self.features)

    @functools.cached_property
    def numeric(self) -> list[str]:
        from bigmodel_cli.features import registry

        return registry.columns_of(self.column_types, self.features, registry.NUMBER)

    @functools.cached_property
    def date_formats(self) -> dict[str, str]:
        """Date column -> date_iso | date_dmy | date_mdy."""
        from bigmodel_cli.features import registry

        dated = registry.columns_of(self.column_types, self.features, registry.DATE)
        return {c: self.column_types[c] for c in dated}


@dataclass
class PredictResult:
    rows: int
    seconds: float
    rows_per_s: float
    output: str
    input: str
    notes: list[str] = field(default_factory=list)
    engine: str = "tensorflow"


# ------------------------------------------------------------------ readers


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


def _check_input_columns(have: list[str], spec: PredictSpec, source: str) -> PredictSpec:
    """Features and --columns are required; a missing id column is dropped with a note
    (in the spec returned, for this input only)."""
    absent_ids = [c for c in spec.id_columns if c not in have and c not in spec.features]
    if absent_ids:
        note = f"{source} has no id column {', '.join(repr(c) for c in absent_ids)}; predictions are written without it"
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
            f"{source}: the target column '{spec.target}' is missing (eval scores the model against it)",
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
    spec = box["spec"] = _check_input_columns(
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
    spec = box["spec"] = _check_input_columns(
        _renamed(pf.schema_arrow.names, spec, source), spec, source
    )
    if position is not None:
        position.track_rows(pf.metadata.num_rows)
    back = {v: k for k, v in (spec.rename or {}).items()}
    for batch in pf.iter_batches(batch_size=65536, columns=[back.get(c, c) for c in _wanted(spec)]):
        yield _cast_features(_rename_batch(batch, spec), spec)


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
    spec = box["spec"] = _check_input_columns(
        _renamed(reader.schema.names, spec, source), spec, source
    )
    rows = 0
    for batch in _read_batches(
        reader, lambda at, e: DataError(f"{source}: cannot parse JSON lines after row {at}: {e}")
    ):
        yield _cast_features(_rename_batch(batch, spec).select(_wanted(spec)), spec, source, rows)
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


def _cast_features(batch, spec: PredictSpec, source: str = "input", first_row: int = 0):
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
                            f"{source}: column '{name}' is not numeric: row {first_row + i + 1} has {str(v)[:40]!r}"
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
                hint="save the file as UTF-8 (e.g. iconv -f GB18030 -t UTF-8); no output was written",
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


# ------------------------------------------------------------------ writers


class Writer:
    """Writes output blocks in order to a temporary file, renamed on close."""

    def __init__(self, output: str, force: bool):
        self.output = output
        self.tmp: str | None = None
        if output == "-":
            self.fmt, self.comp = "csv", None
            self.sink: Any = sys.stdout.buffer
        else:
            out = Path(output)
            if out.exists() and not force:
                raise PathError(
                    f"output {out} exists already",
                    hint="pass --force to overwrite it, or choose another path",
                )
            if not out.parent.is_dir():
                raise PathError(
                    f"output folder {out.parent} does not exist",
                    hint=f"create it first: mkdir -p {out.parent}",
                )
            self.fmt, self.comp = table_format(out)
            if self.fmt == "npz":
                raise PathError(f"{out}: predictions are written as csv, tsv, parquet or jsonl")
            import tempfile

            fd, self.tmp = tempfile.mkstemp(
                prefix=f".{out.name}.", suffix=".partial", dir=out.parent
            )
            os.close(fd)
            self.sink = None
        self._w: Any = None

    @property
    def empty(self) -> bool:
        """Nothing written yet (not even a header)."""
        return self._w is None

    def _open(self, schema: Any) -> None:
        import pyarrow as pa

        target = (
            self.sink if self.tmp is None else pa.output_stream(self.tmp, compression=self.comp)
        )
        self._stream = target
        if self.fmt in ("csv", "tsv"):
            import pyarrow.csv as pc

            delim = "\t" if self.fmt == "tsv" else ","
            plain = not any(ch in name for name in schema.names for ch in (delim, '"', "\n", "\r"))
            self._w = pc.CSVWriter(
                target,
                schema,
                write_options=pc.WriteOptions(
                    delimiter=delim,
                    quoting_style="needed",
                    quoting_header="none" if plain else "needed",
                ),
            )
        elif self.fmt == "parquet":
            import pyarrow.parquet as pq

            self._w = pq.ParquetWriter(target, schema)
        else:
            self._w = "jsonl"

    def write(self, table: Any) -> None:
        if self._w is None:
            self._open(table.schema)
        if self._w == "jsonl":
            import json

            names = table.schema.names
            cols = [table.column(n).to_pylist() for n in names]
            lines = "".join(
                json.dumps(dict(zip(names, vals)), allow_nan=False) + "\n" for vals in zip(*cols)
            )
            self._stream.write(lines.encode())
        else:
            self._w.write_table(table) if hasattr(self._w, "write_table") else self._w.write(table)

    def close(self, ok: bool) -> None:
        try:
            if self._w not in (None, "jsonl"):
                self._w.close()
            if self._w is not None and self.tmp is not None:
                self._stream.close()
            elif self._w is not None and self.tmp is None:
                self.sink.flush()
        finally:
            if self.tmp is not None:
                if ok:
                    if self._w is None:  # no rows: still write a valid empty file
                        Path(self.tmp).write_bytes(b"")
                    from bigmodel_cli.runs import plain_mode

                    plain_mode(Path(self.tmp))
                    os.replace(self.tmp, self.output)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(self.tmp)


# ---------------------------------------------------------------- inference


def make_onnx_infer(path: Path, threads: int | None = None):
    """An onnxruntime session as the inference function (no TensorFlow).
    ``threads``: intra-op threads, without spinning (serve: the server's own threads
    need the cores; a spinning pool took them under load); None: onnxruntime's default."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    if len(names) > 1 or names[0] != "features":  # several named inputs (text ids)
        return lambda x: sess.run(
            None, {n: x[n] for n in names} if isinstance(x, dict) else {names[0]: x}
        )[0]
    return lambda x: sess.run(None, {names[0]: x if not isinstance(x, dict) else x["features"]})[0]


def make_infer(model, n_features: int):
    import tensorflow as tf

    if isinstance(model.input, dict):  # raw text columns (and numbers): the model tokenises
        sig = {k: tf.TensorSpec([None, *v.shape[1:]], v.dtype) for k, v in model.input.items()}

        @tf.function(input_signature=[sig], reduce_retracing=True)
        def infer_dict(x):
            return model(x, training=False)

        return lambda x: infer_dict({k: tf.constant(v) for k, v in x.items()}).numpy()

    @tf.function(
        input_signature=[tf.TensorSpec([None, n_features], tf.float32)], reduce_retracing=True
    )
    def infer(x):
        return model(x, training=False)

    return lambda x: infer(tf.constant(x)).numpy()


def model_inputs(batch, spec: PredictSpec, first_row: int, source: str) -> Any:
    """A block's model inputs through the one road (:func:`features.road.encode_rows`):
    the feature matrix, or a dict of numbers plus each encoded column as ids
    (``spec.tokenizers``) or as raw strings; then data.missing (:func:`check_missing`)."""
    from bigmodel_cli.features.road import ArrowCells, Layout, Where, encode_rows

    layout = Layout(spec.features, spec.column_types, spec.tokenizers)
    where = Where(source, lambda i: _where_row(spec, first_row + i), BAD_VALUE_HINT)
    x, _ = encode_rows(ArrowCells(batch), layout, on_bad=spec.on_bad_value, where=where)
    if not isinstance(x, dict):
        return check_missing(x, spec.features, spec, first_row, source)
    if "features" in x:
        x["features"] = check_missing(x["features"], spec.numeric, spec, first_row, source)
    return x


BAD_VALUE_HINT = (
    "fix the value (an empty cell is a missing value); or pass --on-bad-value missing to "
    "treat such values as missing; no output was written"
)


def _rows(x: Any, start: int, stop: int) -> Any:
    if not isinstance(x, dict):
        return x[start:stop]
    from bigmodel_cli.features.text import trim_ids

    return {k: trim_ids(k, v[start:stop]) for k, v in x.items()}


def _where_row(spec: PredictSpec, row: int) -> str:
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


def check_missing(
    x: np.ndarray, features: list[str], spec: PredictSpec, first_row: int, source: str
) -> np.ndarray:
    """Missing or infinite values under data.missing: impute (the model fills them),
    fill (filled here) or drop/error (an error naming the row and feature)."""
    bad = ~np.isfinite(x)
    if bad.any() and spec.missing != "impute":  # impute: the model fills them
        if spec.missing == "fill":
            x = np.where(bad, np.float32(spec.fill_value), x)
        else:
            r, c = np.argwhere(bad)[0]
            raise DataError(
                f"{source}: row {first_row + int(r) + 1} has a missing or infinite value in feature '{features[int(c)]}' ({int(bad.any(axis=1).sum())} such row(s) in this block)",
                hint="fix the input, or train with data.missing: fill to fill missing values; no output was written",
            )
    return x


def decide(probs: np.ndarray, spec: PredictSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's outputs -> (float32 values for a regression, else class indices;
    each class's probability, None for a regression). predict's files and serve's
    answers both come from here, and both through :mod:`bigmodel_cli.model.decide`."""
    from bigmodel_cli.model import decide as D

    idx = D.labels(spec.task, probs, spec.threshold)
    return idx, (None if spec.task == "regression" else D.class_probabilities(spec.task, probs))


def _output_table(batch, probs: np.ndarray, spec: PredictSpec):
    import pyarrow as pa

    arrays, names = [], []
    for c in spec.id_columns + [k for k in spec.keep_columns if k not in spec.id_columns]:
        arrays.append(batch.column(c))
        names.append(c)
    idx, full = decide(probs, spec)
    if full is None:
        arrays.append(pa.array(idx))
        names.append("prediction")
        if spec.coverage is not None:
            from bigmodel_cli.model.decide import intervals

            lower, upper = intervals(spec.conformal, idx, spec.coverage)
            arrays += [pa.array(lower.astype(np.float32)), pa.array(upper.astype(np.float32))]
            names += ["lower", "upper"]
        return pa.Table.from_arrays(arrays, names=names)
    classes = spec.classes or []
    arrays.append(pa.array(classes).take(pa.array(idx)))  # vectorised: no Python object per row
    names.append("prediction")
    if spec.coverage is not None:
        arrays.append(pa.array(prediction_sets(probs, spec), pa.string()))
        names.append("prediction_set")
    if spec.probabilities:
        for i, c in enumerate(classes):
            arrays.append(pa.array(full[:, i].astype(np.float32, copy=False)))
            names.append(f"prob_{c}")
    return pa.Table.from_arrays(arrays, names=names)


def prediction_sets(probs: np.ndarray, spec: PredictSpec, joined: bool = True) -> list[Any]:
    """Each row's conformal set at spec.coverage (its label always inside), likeliest
    first: labels joined by '|' (a file's column) or a list (a JSON answer)."""
    from bigmodel_cli.model import decide as D

    keep = D.sets(spec.conformal, spec.task, probs, spec.threshold, spec.coverage, spec.set_method)
    full = D.decision_probabilities(spec.task, probs, spec.threshold)
    order = np.argsort(-full, axis=1, kind="stable")
    labels = [str(c) for c in (spec.classes or [])]
    out = []
    for row, ranks in zip(keep, order, strict=True):
        chosen = [labels[i] for i in ranks if row[i]]
        out.append("|".join(chosen) if joined else chosen)
    return out


def iter_outputs(
    spec: PredictSpec,
    infer: Callable[[Any], np.ndarray],
    blocks: Iterator[Any],
    batch_size: int,
    source: str,
    position: Position | None = None,
) -> Iterator[tuple[Any, np.ndarray]]:
    """The one road from a table's blocks (:func:`open_blocks`) to the model's outputs:
    (block, outputs) in order. predict writes each block's answers; eval keeps the
    outputs and the target."""
    rows = 0
    for batch in blocks:
        x = model_inputs(batch, spec, rows, source)
        n = batch.num_rows
        outs = [infer(_rows(x, s, s + batch_size)) for s in range(0, n, batch_size)]
        yield (
            batch,
            (np.concatenate(outs) if outs else np.zeros((0, output_width(spec)), np.float32)),
        )
        rows += n
        if position is not None:
            position.rows = rows


def output_width(spec: PredictSpec) -> int:
    """How many numbers the model gives a row: one (a regression, a binary probability) or one per class."""
    return 1 if spec.task in ("regression", "binary") else len(spec.classes or [0])


def empty_block(spec: PredictSpec) -> Any:
    """A block of no rows with the columns predict reads (a header-only input's answer)."""
    import pyarrow as pa

    names = list(dict.fromkeys(spec.features + spec.id_columns + spec.keep_columns))
    return pa.RecordBatch.from_arrays(
        [pa.array([], pa.float32() if c in spec.numeric else pa.string()) for c in names],
        names=names,
    )


def predict_file(
    model,
    spec: PredictSpec,
    input_path: str,
    output_path: str,
    batch_size: int | None = None,
    force: bool = False,
    fmt: str | None = None,
    progress: Callable[[int, float, float | None], None] | None = None,
    infer: Callable[[np.ndarray], np.ndarray] | None = None,
) -> PredictResult:
    """Predict every row of one input; rows stay in order. An input with a header and
    no rows gives an output with a header and no rows."""
    t0 = time.perf_counter()
    infer = infer or make_infer(model, len(spec.features))
    bs = batch_size or default_batch_size(model)  # model may be None only when both are given
    writer = Writer(output_path, force)
    rows = 0
    ok = False
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bigmodel-writer")
    pending: Future | None = None
    try:
        position = Position()
        spec, blocks = open_blocks(
            input_path, spec, fmt, position
        )  # this input's spec: its lines, its id columns
        for batch, probs in iter_outputs(
            spec, infer, blocks, bs, "stdin" if input_path == "-" else input_path, position
        ):
            table = _output_table(batch, probs, spec)
            if pending is not None:
                pending.result()
            pending = pool.submit(writer.write, table)
            rows += batch.num_rows
            if progress:
                progress(rows, time.perf_counter() - t0, position.fraction())
        if pending is not None:
            pending.result()
        if writer.empty:  # a header and no rows: the answer's header and no rows
            writer.write(
                _output_table(
                    empty_block(spec), np.zeros((0, output_width(spec)), np.float32), spec
                )
            )
        ok = True
    except Exception as e:
        from bigmodel_cli.errors import DiskFull, human_size, is_disk_full

        if not is_disk_full(e):
            raise
        done = os.path.getsize(writer.tmp) if writer.tmp and os.path.exists(writer.tmp) else 0
        folder = Path(output_path).parent
        import shutil

        free = shutil.disk_usage(folder).free if folder.is_dir() else None
        # The reader runs ahead of the rows written, so the input's position would
        # understate what is left: the output so far is a floor, said as such.
        raise DiskFull(
            output_path,
            free,
            done,
            f"no space left writing {output_path} after {rows:,} rows ({human_size(free)} free; the output needs more than the {human_size(done)} it reached); no output was written",
            hint="free some space, or choose another --output",
        ) from None
    finally:
        pool.shutdown(wait=True)
        writer.close(ok)
    secs = time.perf_counter() - t0
    return PredictResult(
        rows=rows,
        seconds=secs,
        rows_per_s=rows / max(secs, 1e-9),
        output=output_path,
        input=input_path,
        notes=list(spec.notes),
    )


def predict_images(
    paths: list[Path],
    spec: PredictSpec,
    infer: Callable[[np.ndarray], np.ndarray],
    output_path: str,
    image_shape: list[int],
    batch_size: int = 256,
    force: bool = False,
) -> PredictResult:
    """Predict image files (decoded like the training folder); rows keep the files' order."""
    import pyarrow as pa

    from bigmodel_cli.data.images import decode

    t0 = time.perf_counter()
    writer = Writer(output_path, force)
    spec = replace(spec, id_columns=["path"], keep_columns=[])
    ok = False
    try:
        for s in range(0, len(paths), batch_size):
            chunk = paths[s : s + batch_size]
            probs = infer(decode(chunk, image_shape))
            batch = pa.RecordBatch.from_arrays([pa.array([str(p) for p in chunk])], names=["path"])
            writer.write(_output_table(batch, probs, spec))
        ok = True
    finally:
        writer.close(ok)
    secs = time.perf_counter() - t0
    return PredictResult(
        rows=len(paths),
        seconds=secs,
        rows_per_s=len(paths) / max(secs, 1e-9),
        output=output_path,
        input=f"{len(paths)} images",
        notes=[],
    )
