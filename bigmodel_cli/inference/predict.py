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

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from bigmodel_cli.errors import DataError
from bigmodel_cli.inference.reader import Position, open_blocks, where_row
from bigmodel_cli.inference.spec import PredictResult, PredictSpec
from bigmodel_cli.inference.writer import Writer
from bigmodel_cli.model.builders import default_batch_size


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


BAD_VALUE_HINT = (
    "fix the value (an empty cell is a missing value); or pass --on-bad-value missing to "
    "treat such values as missing; no output was written"
)


@dataclass(frozen=True)
class Words:
    """How an input's errors are said to whoever sent it: what its rows came in, and what
    they can do about a bad or a missing value (the CLI's flags; serve says its own)."""

    block: str = "block"
    bad_value: str = BAD_VALUE_HINT
    missing: str = (
        "fix the input, or train with data.missing: fill to fill missing values; "
        "no output was written"
    )


CLI_WORDS = Words()


def model_inputs(
    batch, spec: PredictSpec, first_row: int, source: str, words: Words = CLI_WORDS
) -> Any:
    """A block's model inputs through the one road (:func:`features.road.encode_rows`):
    the feature matrix, or a dict of numbers plus each encoded column as ids
    (``spec.tokenizers``) or as raw strings; then data.missing (:func:`check_missing`)."""
    from bigmodel_cli.features.road import ArrowCells, Layout, Where, encode_rows

    layout = Layout(spec.features, spec.column_types, spec.tokenizers)
    where = Where(source, lambda i: where_row(spec, first_row + i), words.bad_value, words.block)
    x, _ = encode_rows(ArrowCells(batch), layout, on_bad=spec.on_bad_value, where=where)
    if not isinstance(x, dict):
        return check_missing(x, spec.features, spec, first_row, source, words)
    if "features" in x:
        x["features"] = check_missing(x["features"], spec.numeric, spec, first_row, source, words)
    return x


def row_slice(x: Any, start: int, stop: int) -> Any:
    if not isinstance(x, dict):
        return x[start:stop]
    from bigmodel_cli.features.text import trim_ids

    return {k: trim_ids(k, v[start:stop]) for k, v in x.items()}


def check_missing(
    x: np.ndarray,
    features: list[str],
    spec: PredictSpec,
    first_row: int,
    source: str,
    words: Words = CLI_WORDS,
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
                f"{source}: row {first_row + int(r) + 1} has a missing or infinite value "
                f"in feature '{features[int(c)]}' ({int(bad.any(axis=1).sum())} such "
                f"row(s) in this {words.block})",
                hint=words.missing,
            )
    return x


def decide(probs: np.ndarray, spec: PredictSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's outputs -> (float32 values for a regression, else class indices;
    each class's probability, None for a regression). predict's files and serve's
    answers both come from here, and both through :mod:`bigmodel_cli.model.decide`."""
    from bigmodel_cli.model import decide as D

    idx = D.labels(spec.task, probs, spec.threshold)
    return idx, (None if spec.task == "regression" else D.class_probabilities(spec.task, probs))


def output_table(batch, probs: np.ndarray, spec: PredictSpec):
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
        outs = [infer(row_slice(x, s, s + batch_size)) for s in range(0, n, batch_size)]
        yield (
            batch,
            (np.concatenate(outs) if outs else np.zeros((0, output_width(spec)), np.float32)),
        )
        rows += n
        if position is not None:
            position.rows = rows


def output_width(spec: PredictSpec) -> int:
    """How many numbers the model gives a row: one (a regression, a
    binary probability) or one per class."""
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
            table = output_table(batch, probs, spec)
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
                output_table(empty_block(spec), np.zeros((0, output_width(spec)), np.float32), spec)
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
            f"no space left writing {output_path} after {rows:,} rows ({human_size(free)} "
            f"free; the output needs more than the {human_size(done)} it reached); no "
            "output was written",
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

    from bigmodel_cli.features.image import decode

    t0 = time.perf_counter()
    writer = Writer(output_path, force)
    spec = replace(spec, id_columns=["path"], keep_columns=[])
    ok = False
    try:
        for s in range(0, len(paths), batch_size):
            chunk = paths[s : s + batch_size]
            probs = infer(decode(chunk, image_shape))
            batch = pa.RecordBatch.from_arrays([pa.array([str(p) for p in chunk])], names=["path"])
            writer.write(output_table(batch, probs, spec))
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
