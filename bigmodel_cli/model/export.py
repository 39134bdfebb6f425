"""Export formats and their parity checks.

Each format is written by Keras's own exporter to a temporary name beside the
target, reloaded with its own runtime (onnxruntime, the TFLite interpreter,
``tf.saved_model.load``, Keras) and compared with the Keras model's outputs
on sample rows, then renamed into place.

Example::

    r = export_model(model, "onnx", Path("model.onnx"), sample_x)
    r.max_abs_diff   # e.g. 1.2e-07
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bigmodel_cli.errors import BigmodelError, PathError
from bigmodel_cli.runs import path_size

FORMATS = ("keras", "savedmodel", "onnx", "tflite")
SUFFIX = {"keras": ".keras", "savedmodel": "", "onnx": ".onnx", "tflite": ".tflite"}
PARITY_TOLERANCE = 1e-4


@dataclass
class ExportResult:
    format: str
    path: str
    size_bytes: int
    max_abs_diff: float
    rows_compared: int
    runtime: str
    parity_ok: bool
    inputs: list[str] | None = None  # ONNX: the graph's input names, in order
    # the encoders of the columns fed as ids (text), beside the file
    outside_graph: str | None = None


def default_path(run_dir: Path, fmt: str) -> Path:
    return run_dir / "export" / (f"model{SUFFIX[fmt]}" if fmt != "savedmodel" else "savedmodel")


def _write(model, fmt: str, tmp: Path) -> None:
    if fmt == "keras":
        model.save(tmp)
    elif fmt == "savedmodel":
        model.export(str(tmp), format="tf_saved_model", verbose=False)
    elif fmt == "onnx":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.export(str(tmp), format="onnx", verbose=False)
    elif fmt == "tflite":
        model.export(str(tmp), format="litert", verbose=False)


def keras_outputs(model, x) -> np.ndarray:
    """A Keras model's outputs on numbers, or on a dict holding raw strings.
    A few hundred rows are one eager call: ``predict`` would trace a function
    first (0.15 s of every run's end, measured)."""
    import tensorflow as tf

    if not isinstance(x, dict):
        if len(x) <= 4096:
            return np.asarray(model(tf.constant(np.asarray(x, np.float32)), training=False))
        return np.asarray(model.predict(x, verbose=0))

    return np.asarray(model({k: tf.constant(v) for k, v in x.items()}, training=False))


def _run_export(fmt: str, path: Path, x) -> tuple[np.ndarray, str]:
    """Outputs of the exported artefact, computed by its own runtime."""
    if fmt == "keras":
        import keras

        from bigmodel_cli.model.loading import register_layers
        from bigmodel_cli.features.backbone import import_if_needed

        register_layers()
        import_if_needed(path)
        m = keras.models.load_model(path, compile=False)
        return keras_outputs(m, x), f"keras {keras.__version__}"
    if fmt == "savedmodel":
        import tensorflow as tf

        import importlib.util

        if importlib.util.find_spec("tensorflow_text") is not None:
            # registers the ops a pretrained encoder's tokeniser uses
            import tensorflow_text  # noqa: F401
        loaded = tf.saved_model.load(str(path))
        feed = {k: tf.constant(v) for k, v in x.items()} if isinstance(x, dict) else tf.constant(x)
        return np.asarray(loaded.serve(feed)), f"tf.saved_model {tf.__version__}"
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = (
            {i.name: x[i.name] for i in sess.get_inputs()}
            if isinstance(x, dict)
            else {sess.get_inputs()[0].name: x}
        )
        return np.asarray(sess.run(None, feed)[0]), f"onnxruntime {ort.__version__}"
    interp, runtime = _tflite_interpreter(path)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], list(x.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    return np.asarray(interp.get_tensor(out["index"])), runtime


def _tflite_interpreter(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter(model_path=str(path)), "ai_edge_litert"
    except ImportError:
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_path=str(path)), f"tf.lite {tf.__version__}"


def model_sample(split, tokenizers: dict | None) -> tuple:
    """(inputs of the user's model, inputs of the ONNX core or None) for sample rows,
    both through the one road (:func:`features.road.encode_rows`) from the split's
    numbers and raw text."""
    if not tokenizers:
        x = split.x if not isinstance(split.x, dict) else split.x["features"]
        return x, None
    from bigmodel_cli.features import registry
    from bigmodel_cli.features.road import Layout, MatrixCells, encode_rows

    numbers = split.x.get("features") if isinstance(split.x, dict) else None
    types = {c: registry.kind_of_encoder(t).name for c, t in tokenizers.items()}
    numeric = [f"\x00{j}" for j in range(numbers.shape[1])] if numbers is not None else []
    cells = MatrixCells(numbers, numeric, split.raw)
    features = [*numeric, *tokenizers]
    x, _ = encode_rows(cells, Layout(features, types), on_bad="missing")
    core, _ = encode_rows(cells, Layout(features, types, tokenizers), on_bad="missing")
    return x, core


def _add_metadata(fmt: str, path: Path, metadata: dict) -> None:
    """What a consumer of the export needs beside its outputs (the task, the classes
    in output order, a binary model's positive class and decision threshold): ONNX
    metadata_props ``bigmodel.*``, a SavedModel's ``assets.extra/bigmodel.json``, a
    .keras or .tflite file's ``<name>.json`` beside it."""
    import json

    if fmt == "onnx":
        import onnx

        m = onnx.load(str(path))
        for k, v in metadata.items():
            m.metadata_props.add(key=f"bigmodel.{k}", value=json.dumps(v))
        onnx.save(m, str(path))
    elif fmt == "savedmodel":
        (path / "assets.extra").mkdir(exist_ok=True)
        (path / "assets.extra" / "bigmodel.json").write_text(json.dumps(metadata, indent=1))
    else:
        path.with_name(path.name + ".json").write_text(json.dumps(metadata, indent=1))


def export_model(
    model,
    fmt: str,
    output: Path,
    sample_x,
    force: bool = False,
    core_x: dict | None = None,
    tokenizers: dict | None = None,
    metadata: dict | None = None,
    raw: dict | None = None,
) -> ExportResult:
    """Write ``model`` as ``fmt`` and check it against Keras on ``sample_x``.

    A model with encoded columns (``core_x`` given: the sample's ids) exports to
    ONNX as its integer-id core, checked on ``core_x``. With ``raw`` (the number
    columns in matrix order, and the sample's raw category values) the graph takes
    raw columns instead (:mod:`bigmodel_cli.model.onnx_raw`), checked on the raw
    values; the encoders of what stays ids (text) go beside it
    (``<name>.encoders/``). TFLite cannot hold string ops."""
    output = _check_target(fmt, Path(output), force, core_x is not None)
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    tmp = work / (output.name if fmt != "savedmodel" else "savedmodel")
    try:
        x = (
            sample_x
            if isinstance(sample_x, dict)
            else np.ascontiguousarray(sample_x, dtype=np.float32)
        )
        # also marks the model as called (the ONNX exporter needs it)
        reference = keras_outputs(model, x)
        written, fed = model, x
        if core_x is not None and fmt == "onnx":
            from bigmodel_cli.model.inputs import core_of

            written, fed = core_of(model), core_x
            keras_outputs(written, core_x)
        _write(written, fmt, tmp)
        outside = tokenizers
        if raw is not None and core_x is not None and fmt == "onnx" and tokenizers:
            fed, outside = _raw_graph(tmp, raw, core_x, tokenizers)
        if metadata:
            _add_metadata(fmt, tmp, metadata)
        got, runtime = _run_export(fmt, tmp, fed)
        diff = (
            float(np.max(np.abs(got.reshape(reference.shape) - reference)))
            if reference.size
            else 0.0
        )
        _replace(tmp, output)
        side = tmp.with_name(tmp.name + ".json")
        if side.is_file():
            _replace(side, output.with_name(output.name + ".json"))
        sidecar = None
        if core_x is not None and fmt == "onnx" and outside:
            from bigmodel_cli.features.registry import save_tokenizers

            sidecar = output.with_suffix(".encoders")
            save_tokenizers(sidecar, outside)
    except Exception as e:
        from bigmodel_cli.errors import disk_full, is_disk_full

        if is_disk_full(e):
            done = (
                sum(f.stat().st_size for f in work.rglob("*") if f.is_file())
                if work.is_dir()
                else 0
            )
            raise disk_full(
                e, output, max(done, int(model.count_params()) * 4)
            ) from None  # at least the weights, as float32
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    scale = max(1.0, float(np.max(np.abs(reference)))) if reference.size else 1.0
    names = list(fed) if isinstance(fed, dict) else None
    return ExportResult(
        fmt,
        str(output),
        path_size(output),
        diff,
        len(reference),
        runtime,
        diff <= PARITY_TOLERANCE * scale,
        names if fmt == "onnx" else None,
        str(sidecar) if sidecar else None,
    )


def _check_target(fmt: str, output: Path, force: bool, encoded: bool) -> Path:
    """The export's path, once the format, the model and the path can make it."""
    if fmt not in FORMATS:
        raise BigmodelError(
            f"unknown export format '{fmt}'", hint=f"use one of: {', '.join(FORMATS)}"
        )
    if encoded and fmt == "tflite":
        raise BigmodelError(
            "a model with text or category columns cannot be exported to tflite: TFLite "
            "has no string operations to look them up with",
            hint="export savedmodel (raw strings in) or onnx (the integer-id core plus its "
            "vocabulary)",
        )
    if output.exists() and not force:
        raise PathError(
            f"{output} exists already",
            hint="pass --force to replace it, or choose another --output",
        )
    if fmt != "savedmodel" and output.suffix != SUFFIX[fmt]:
        raise PathError(
            f"a {fmt} export must end in '{SUFFIX[fmt]}', got {output.name}",
            hint=f"e.g. --output {output.with_suffix(SUFFIX[fmt])}",
        )
    return output


def _raw_graph(path: Path, raw: dict, core_x: dict, tokenizers: dict) -> tuple[dict, dict]:
    """Rewrite the ONNX core at ``path`` to take raw columns; (its feed for the
    sample rows, the encoders that stay outside the graph)."""
    import onnx

    from bigmodel_cli.features.text import ids_name
    from bigmodel_cli.model.onnx_raw import inside_graph, raw_feed, with_raw_inputs

    inside = inside_graph(tokenizers)
    outside = {c: t for c, t in tokenizers.items() if c not in inside}
    numeric = list(raw["numeric"]) if "features" in core_x else []
    m = with_raw_inputs(
        onnx.load(str(path)), numeric, tokenizers, {c: ids_name(c) for c in tokenizers}
    )
    onnx.save(m, str(path))
    ids = {ids_name(c): core_x[ids_name(c)] for c in outside}
    return raw_feed(numeric, inside, ids, core_x.get("features"), raw["values"]), outside


def _replace(src: Path, dst: Path) -> None:
    """Rename src onto dst; an existing dst (only with --force) goes last."""
    if not dst.exists():
        os.replace(src, dst)
        return
    old = dst.with_name(f".{dst.name}.old")
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)


# ------------------------------------------------- the run's inference copy

INFERENCE_ONNX = "inference.onnx"
INFERENCE_META = "inference.json"


def file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_inference_copy(
    model,
    model_path: Path,
    sample_x,
    batch_size: int,
    core_x: dict | None = None,
    model_sha256: str | None = None,
) -> ExportResult:
    """``inference.onnx`` beside ``model.keras``: predict runs it with onnxruntime
    and never imports TensorFlow. ``inference.json`` records the hash of the
    model.keras it was made from (``model_sha256``: taken before ``model`` was
    loaded), so a stale copy is never used."""
    from bigmodel_cli.runs import atomic_write_json

    run_dir = Path(model_path).parent
    digest = model_sha256 or file_sha256(model_path)
    r = export_model(model, "onnx", run_dir / INFERENCE_ONNX, sample_x, force=True, core_x=core_x)
    if not r.parity_ok:
        (run_dir / INFERENCE_ONNX).unlink(missing_ok=True)
        return r
    from bigmodel_cli.features.text import PREPROCESSING_DIR
    from bigmodel_cli.model.builders import decision_threshold

    from bigmodel_cli.model.conformal import CONFORMAL_FILE

    # what the ONNX core's inputs are made with (conformal.json works on its outputs)
    text_files = (
        sorted(p for p in (run_dir / PREPROCESSING_DIR).glob("*") if p.name != CONFORMAL_FILE)
        if core_x is not None
        else []
    )
    atomic_write_json(
        run_dir / INFERENCE_META,
        {
            "model_sha256": digest,
            "batch_size": batch_size,
            "text_sha256": {p.name: file_sha256(p) for p in text_files},
            "max_abs_diff": r.max_abs_diff,
            "rows_compared": r.rows_compared,
            "runtime": r.runtime,
            "threshold": decision_threshold(model),
        },
    )
    return r


def inference_copy(model_path: Path) -> tuple[Path, dict] | None:
    """The run's ONNX copy if it exists and was made from this very model.keras.
    Waits first for a background process still writing it (finish.py)."""
    import json

    from bigmodel_cli.runs import wait_for_inference_copy as wait

    run_dir = Path(model_path).parent
    wait(run_dir)
    onnx_path, meta_path = run_dir / INFERENCE_ONNX, run_dir / INFERENCE_META
    if not (onnx_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("model_sha256") != file_sha256(model_path):
        return None
    for name, digest in (meta.get("text_sha256") or {}).items():
        p = run_dir / "preprocessing" / name
        if not p.is_file() or file_sha256(p) != digest:
            return None  # the vocabulary beside the copy is not the one it was checked with
    return onnx_path, meta
